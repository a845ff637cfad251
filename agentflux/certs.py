"""A throw-away certificate authority and a server certificate for a local TLS listener.

Made with the ``openssl`` command line (no Python crypto dependency). The local broker's
SASL_SSL listener and the security tests use it; production clusters bring their own PKI and
clients point ``KAFKA_SSL_CAFILE`` at its CA.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from agentflux.config import ConfigError


@dataclass(frozen=True)
class TestPki:
    """PEM files: the CA's certificate (what clients trust) and a server key + certificate."""

    __test__ = False  # not a pytest test class despite the name

    ca_cert: Path
    ca_key: Path
    server_cert: Path  # the server certificate followed by the CA certificate (the chain)
    server_key: Path  # unencrypted PKCS#8, readable by the owner only


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if not exe:
        raise ConfigError("openssl not found: install it (Debian: apt-get install openssl) to "
                          "make test certificates")
    proc = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {proc.stderr.strip()[-1000:]}")


def make_ca(directory: Path, name: str = "agentflux test CA", days: int = 2) -> tuple[Path, Path]:
    """A self-signed CA in ``directory``; returns (certificate, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{_slug(name)}.pem", directory / f"{_slug(name)}.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", str(days),
             "-keyout", key.name, "-out", cert.name, "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash", cwd=directory)
    key.chmod(0o600)
    return cert, key


def make_test_pki(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
                  days: int = 2) -> TestPki:
    """A CA and a server certificate for ``hosts`` (IP addresses or DNS names), signed by it."""
    ca_cert, ca_key = make_ca(directory, days=days)
    san = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}"
                   for h in hosts)
    (directory / "server.ext").write_text(
        f"basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={san}\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
             "server.csr", "-subj", f"/CN={hosts[0]}", cwd=directory)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", ca_cert.name, "-CAkey", ca_key.name,
             "-CAcreateserial", "-sha256", "-days", str(days), "-extfile", "server.ext",
             "-out", "server-only.pem", cwd=directory)
    chain = directory / "server.pem"
    chain.write_text((directory / "server-only.pem").read_text() + ca_cert.read_text())
    key = directory / "server.key"
    key.chmod(0o600)
    return TestPki(ca_cert=ca_cert, ca_key=ca_key, server_cert=chain, server_key=key)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")

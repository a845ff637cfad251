"""Preflight: can we reach the configured Kafka cluster with these credentials? One line if not.

aiokafka clients hide why a connection failed behind ``KafkaConnectionError("Unable to
bootstrap from [...]")`` (the cause only goes to a log), and Faust retries for minutes. So the
CLI connects once, directly, to each bootstrap server before it starts a worker or an emitter,
and turns the first failure into a :class:`~agentflux.config.ConfigError` that names the problem
and the setting that fixes it: an untrusted certificate (``KAFKA_SSL_CAFILE``), a failed
authentication (``KAFKA_SASL_USERNAME`` / ``KAFKA_SASL_PASSWORD``), a wrong security protocol,
or nothing listening. Messages never contain the password.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

from agentflux.config import ConfigError, Settings

DEFAULT_TIMEOUT_S = 10.0


_LOCAL = "or unset it and run `agentflux up` for a local broker"


def _servers(settings: Settings) -> list[tuple[str, int]]:
    out = []
    for item in (settings.bootstrap_servers or "").split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        host = host.strip("[]")
        if "://" in item or "/" in item or not sep or not host or not port.isdigit() \
                or not 0 < int(port) < 65536:
            raise ConfigError(f"KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers!r}: "
                              f"{item!r} is not host:port (no scheme), e.g. "
                              f"KAFKA_BOOTSTRAP_SERVERS=localhost:9092; {_LOCAL}")
        out.append((host, int(port)))
    if not out:
        raise ConfigError("no Kafka broker configured: run `agentflux up` for a local one, or "
                          "set KAFKA_BOOTSTRAP_SERVERS=host:port")
    return out


def explain(settings: Settings, address: str, exc: BaseException,
            timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """One line saying why connecting to ``address`` with ``settings`` failed, and the fix."""
    text = " ".join(_explain(settings, address, exc, timeout_s).split())
    if settings.sasl_password:  # whatever a library put into its message: never the password
        text = text.replace(settings.sasl_password.get_secret_value(), "**********")
    return text


def _explain(settings: Settings, address: str, exc: BaseException, timeout_s: float) -> str:
    from aiokafka import errors

    proto = settings.security_protocol
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = getattr(exc, "verify_message", None) or "verification failed"
        where = (f"the CA in KAFKA_SSL_CAFILE={settings.ssl_cafile}" if settings.ssl_cafile
                 else "the system's CAs")
        return (f"the TLS certificate of the Kafka broker at {address} is not trusted ({reason}) "
                f"by {where}: set KAFKA_SSL_CAFILE to the PEM file of the CA that signed it")
    if isinstance(exc, (errors.SaslAuthenticationFailed, errors.AuthenticationFailedError)):
        return (f"Kafka authentication failed for user {settings.sasl_username!r} "
                f"({settings.sasl_mechanism}) at {address}: check KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD")
    if isinstance(exc, (errors.UnsupportedSaslMechanismError,
                        errors.AuthenticationMethodNotSupported)):
        return (f"the Kafka broker at {address} does not accept SASL mechanism "
                f"{settings.sasl_mechanism}: set KAFKA_SASL_MECHANISM to one it enables")
    if isinstance(exc, (ConnectionResetError, ssl.SSLEOFError)) and proto in ("SSL", "SASL_SSL"):
        return (f"the Kafka broker at {address} closed the connection during the TLS handshake: "
                f"is it a TLS listener? check KAFKA_SECURITY_PROTOCOL (now {proto}) and "
                "KAFKA_BOOTSTRAP_SERVERS")
    if isinstance(exc, ssl.SSLError):
        return (f"TLS handshake with the Kafka broker at {address} failed "
                f"({getattr(exc, 'reason', None) or type(exc).__name__}): is it a TLS listener? "
                f"check KAFKA_SECURITY_PROTOCOL (now {proto})")
    if isinstance(exc, ConnectionRefusedError):
        return (f"cannot connect to Kafka at {address} (KAFKA_BOOTSTRAP_SERVERS): connection "
                f"refused; is the broker up? set KAFKA_BOOTSTRAP_SERVERS to one that is, "
                f"{_LOCAL}")
    if isinstance(exc, socket.gaierror):
        return (f"cannot resolve the host of the Kafka broker address {address} "
                f"(KAFKA_BOOTSTRAP_SERVERS): {exc.strerror or exc}; set KAFKA_BOOTSTRAP_SERVERS "
                f"to a reachable host:port, {_LOCAL}")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return (f"the Kafka broker at {address} did not answer within {timeout_s:g}s "
                f"(security protocol {proto}): check KAFKA_BOOTSTRAP_SERVERS and "
                f"KAFKA_SECURITY_PROTOCOL, {_LOCAL}")
    if isinstance(exc, errors.KafkaConnectionError):
        hint = (" (does it expect TLS or SASL? check KAFKA_SECURITY_PROTOCOL)"
                if proto == "PLAINTEXT" else f" (security protocol {proto})")
        return f"the Kafka broker at {address} closed the connection{hint}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return (f"cannot connect to Kafka at {address} ({type(exc).__name__}{': ' + text if text else ''}): "
            "check KAFKA_BOOTSTRAP_SERVERS and KAFKA_SECURITY_PROTOCOL")


async def probe(settings: Settings, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Connect (TLS handshake, SASL authentication, API versions) to the bootstrap servers.

    Returns as soon as one accepts; raises ConfigError explaining the first failure otherwise.
    """
    from aiokafka.conn import create_conn

    kw: dict[str, Any] = settings.kafka_client_kwargs()
    first: str | None = None
    for host, port in _servers(settings):
        address = f"{host}:{port}"
        try:
            conn = await asyncio.wait_for(create_conn(
                host, port, client_id="agentflux-preflight",
                request_timeout_ms=int(timeout_s * 1000),
                ssl_context=kw.get("ssl_context"), security_protocol=kw["security_protocol"],
                sasl_mechanism=kw.get("sasl_mechanism"),
                sasl_plain_username=kw.get("sasl_plain_username"),
                sasl_plain_password=kw.get("sasl_plain_password")), timeout_s)
        except Exception as exc:  # every failure becomes the one line a user sees
            first = first or explain(settings, address, exc, timeout_s)
            continue
        conn.close()
        return
    raise ConfigError(first)


def check_broker(settings: Settings, timeout_s: float = DEFAULT_TIMEOUT_S) -> Settings:
    """:func:`probe` from synchronous code (the CLI); returns ``settings`` when it passes."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(probe(settings, timeout_s))
        return settings
    raise RuntimeError("check_broker() is for synchronous callers; await probe() on a loop")


async def diagnose(settings: Settings, exc: BaseException,
                   timeout_s: float = DEFAULT_TIMEOUT_S) -> BaseException:
    """A ConfigError explaining ``exc`` (a client's failure to start), else ``exc`` itself.

    aiokafka's ``KafkaConnectionError("Unable to bootstrap ...")`` does not say why; probing
    once more finds out. Anything else is returned unchanged.
    """
    from aiokafka.errors import KafkaConnectionError

    if not isinstance(exc, (KafkaConnectionError, OSError)) or not settings.bootstrap_servers:
        return exc
    try:
        await probe(settings, timeout_s)
    except ConfigError as explained:
        return explained
    except Exception:  # the probe itself broke: the original error is the better report
        return exc
    return exc

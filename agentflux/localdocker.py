"""A local Docker Engine API: Debian's podman serving it on a unix socket (no Docker engine here).

``PodmanService`` writes a ``containers.conf`` (runc, which works on this cgroup layout where crun
does not; explicit ulimits), runs ``podman system service`` on a socket in its work folder, and
``ensure_image`` makes a tiny image from busybox-static with ``podman import`` (no registry is
reachable). The ``docker`` SDK talks to it like to any Docker engine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from agentflux.config import ConfigError

IMAGE = "localhost/agentflux-busybox:latest"
_CONF = """[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
"""


def require_podman() -> str:
    podman = shutil.which("podman")
    if not podman or not shutil.which("runc"):
        raise ConfigError("podman and runc are needed for the Docker API here (Debian: apt-get "
                          "install podman runc busybox-static), or set DOCKER_HOST to an engine")
    return podman


@dataclass
class PodmanService:
    work_dir: Path
    proc: subprocess.Popen | None = None
    env: dict = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.work_dir / "podman.sock"

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout_s: float = 30.0) -> "PodmanService":
        podman = require_podman()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        conf = self.work_dir / "containers.conf"
        conf.write_text(_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        log = open(self.work_dir / "podman-service.log", "ab")
        self.proc = subprocess.Popen([podman, "system", "service", "--time=0", self.base_url],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout_s
        import docker
        while True:
            if self.proc.poll() is not None:
                raise ConfigError(f"podman system service exited with {self.proc.returncode}; see "
                                  f"{self.work_dir / 'podman-service.log'}")
            if self.socket.exists():
                try:
                    docker.DockerClient(base_url=self.base_url).ping()
                    break
                except Exception:
                    pass
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"podman's Docker API did not answer on {self.socket} in {timeout_s}s")
            time.sleep(0.05)  # waiting for the socket to answer, bounded by the deadline
        return self

    def ensure_image(self, image: str = IMAGE) -> str:
        """Import a busybox-static rootfs as ``image`` unless it exists already."""
        podman = require_podman()
        if subprocess.run([podman, "image", "exists", image], env=self.env).returncode == 0:
            return image
        busybox = shutil.which("busybox")
        if not busybox:
            raise ConfigError("busybox not found: apt-get install busybox-static")
        tar_path = self.work_dir / "rootfs.tar"
        with tarfile.open(tar_path, "w") as tar:
            tar.add(busybox, arcname="bin/busybox")
            for name in ("sh", "sleep", "cat", "echo", "true"):
                info = tarfile.TarInfo(f"bin/{name}")
                info.type = tarfile.SYMTYPE
                info.linkname = "busybox"
                tar.addfile(info)
        out = subprocess.run([podman, "import", str(tar_path), image], env=self.env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise ConfigError(f"podman import failed: {out.stderr.strip()}")
        return image

    def client(self):
        import docker
        return docker.DockerClient(base_url=self.base_url)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

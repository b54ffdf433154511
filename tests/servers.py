"""Real cache servers for the remote-cache tests: nginx (WebDAV, the Bazel
HTTP cache protocol) and BuildGrid (REAPI). Each listens on 127.0.0.1 on a
free port, runs from its own temporary prefix, and is stopped by the PID
this module started."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited ({proc.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not listen on 127.0.0.1:{port}:\n{log.read_text(errors='replace')[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server this module started (by its PID)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


class Nginx:
    """nginx with ``dav_methods PUT; create_full_put_path on;`` serving *root*."""

    def __init__(self, prefix: Path, *, token: str | None = None, tls: tuple[Path, Path] | None = None) -> None:
        self.prefix = prefix
        self.data = prefix / "data"
        self.port = free_port()
        self.token = token
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/cache"

    def start(self) -> Nginx:
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(exe):
            pytest.fail("nginx is not installed: run scripts/setup.sh (Debian package nginx)")
        for d in (self.data / "cache", self.prefix / "tmp", self.prefix / "logs"):
            d.mkdir(parents=True, exist_ok=True)
        auth = f'if ($http_authorization != "Bearer {self.token}") {{ return 401; }}' if self.token else ""
        listen = f"127.0.0.1:{self.port}" + (" ssl" if self.tls else "")
        tls = f"ssl_certificate {self.tls[0]}; ssl_certificate_key {self.tls[1]};" if self.tls else ""
        tmp = self.prefix / "tmp"
        (self.prefix / "nginx.conf").write_text(f"""
daemon off;
master_process off;
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/logs/error.log warn;
events {{ worker_connections 128; }}
http {{
  access_log {self.prefix}/logs/access.log;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  client_max_body_size 0;
  server {{
    listen {listen};
    {tls}
    root {self.data};
    location /cache/ {{
      {auth}
      dav_methods PUT DELETE;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
    }}
  }}
}}
""")
        log = self.prefix / "logs" / "stderr.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([exe, "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf"),
                                          "-e", str(self.prefix / "logs" / "error.log")],
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _wait_listening(self.port, self.proc, log, "nginx")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def blobs(self) -> list[Path]:
        return sorted(p for p in (self.data / "cache" / "cas").glob("*") if p.is_file())


class BuildGrid:
    """BuildGrid's ``bgd server start`` with an in-memory CAS, ByteStream and
    an action cache that accepts updates, instance *instance*."""

    def __init__(self, prefix: Path, instance: str = "hermetic", tls: tuple[Path, Path] | None = None) -> None:
        self.prefix = prefix
        self.port = free_port()
        self.instance = instance
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'grpcs' if self.tls else 'grpc'}://127.0.0.1:{self.port}"

    def start(self) -> BuildGrid:
        bgd = REPO / ".venv-buildgrid" / "bin" / "bgd"
        if not bgd.exists():
            pytest.fail("BuildGrid is not installed: run scripts/setup.sh (it makes .venv-buildgrid)")
        self.prefix.mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "buildgrid.yml"
        conf.write_text(f"""
server:
  - !channel
    address: "127.0.0.1:{self.port}"
{self._channel_security()}
storages:
  - !lru-storage &cas
    size: 1024M
caches:
  - !lru-action-cache &ac
    storage: *cas
    max-cached-refs: 100000
    allow-updates: true
    cache-failed-actions: false
instances:
  - name: {self.instance}
    services:
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
      - !action-cache
        cache: *ac
""")
        log = self.prefix / "bgd.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([str(bgd), "server", "start", str(conf)], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env={"PATH": f"{bgd.parent}:/usr/bin:/bin", "HOME": str(self.prefix)})
        _wait_listening(self.port, self.proc, log, "BuildGrid")
        return self

    def _channel_security(self) -> str:
        if not self.tls:
            return "    insecure-mode: true"
        cert, key = self.tls
        return (f"    insecure-mode: false\n    credentials:\n      tls-server-key: {key}\n"
                f"      tls-server-cert: {cert}")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


@contextlib.contextmanager
def running(server: Nginx | BuildGrid) -> Iterator[Nginx | BuildGrid]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def python() -> str:
    return sys.executable

"""``pip:`` URLs fetch a pinned file from the indexes pip is configured with,
through the simple repository API, and run nothing of the package."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import tarfile
import threading
from pathlib import Path

import pytest

from conftest import hermetic_cli
from hermetic.testing import write_workspace

SETUP_PY = """
import pathlib
pathlib.Path({marker!r}).write_text("the package's code ran")
from setuptools import setup
setup(name="hostile", version="1.0")
"""


def _sdist(marker: Path, requires: str = "'setuptools'") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, text in {"hostile-1.0/setup.py": SETUP_PY.format(marker=str(marker)),
                           "hostile-1.0/PKG-INFO": "Metadata-Version: 2.1\nName: hostile\nVersion: 1.0\n",
                           "hostile-1.0/pyproject.toml": f"[build-system]\nrequires = [{requires}]\n"
                                                         "build-backend = 'setuptools.build_meta'\n"}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _Index(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the handler's API
        type(self).seen.append(self.path)
        body = self.files.get(self.path.split("?")[0])
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if self.path.endswith("/") else "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.linux
def test_a_pip_sdist_fetch_runs_no_code_and_asks_only_for_the_file(tmp_path):
    marker = tmp_path / "RAN"
    sdist = _sdist(marker)
    sha = hashlib.sha256(sdist).hexdigest()
    _Index.files = {
        "/simple/hostile/": f'<html><body><a href="../../files/hostile-1.0.tar.gz#sha256={sha}">'
                            f"hostile-1.0.tar.gz</a></body></html>".encode(),
        "/files/hostile-1.0.tar.gz": sdist,
    }
    _Index.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ws = write_workspace(tmp_path / "ws", {"BUILD.toml": f"""
[workspace]

[sdist]
rule = "archive"
filename = "hostile-1.0.tar.gz"
sha256 = "{sha}"
urls = ["pip:hostile==1.0/hostile-1.0.tar.gz"]
strip_prefix = "hostile-1.0"
"""})
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": "",
               "PIP_INDEX_URL": f"http://127.0.0.1:{server.server_port}/simple"}
        hermetic_cli("--cache-dir", str(tmp_path / "c"), "build", "//:sdist", cwd=ws, env=env)
        assert (ws / "hermetic-out" / "sdist" / "src" / "setup.py").is_file()
        assert not marker.exists(), "fetching the sdist ran its setup.py"
        assert _Index.seen == ["/simple/hostile/", "/files/hostile-1.0.tar.gz"]

        # a pin the index contradicts is refused before any download
        _Index.seen = []
        bad = "0" * 64
        (ws / "BUILD.toml").write_text((ws / "BUILD.toml").read_text().replace(sha, bad))
        proc = hermetic_cli("--cache-dir", str(tmp_path / "c2"), "build", "//:sdist", cwd=ws, env=env, check=False)
        assert proc.returncode == 1, proc.stderr
        assert f"lists hostile-1.0.tar.gz with sha256 {sha}, not the pinned {bad}" in proc.stderr
        assert _Index.seen == ["/simple/hostile/"]
        assert not marker.exists()
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.linux
def test_hermetic_pin_pins_an_sdist_from_the_index_without_running_it(tmp_path):
    marker = tmp_path / "RAN"
    sdist = _sdist(marker, requires="")  # no build requirements: nothing else to resolve on this fake index
    sha = hashlib.sha256(sdist).hexdigest()
    _Index.files = {
        "/simple/hostile/": (f'<html><body><a href="../../files/hostile-0.9.tar.gz">hostile-0.9.tar.gz</a>'
                             f'<a href="../../files/hostile-1.0.tar.gz#sha256={sha}">hostile-1.0.tar.gz</a>'
                             f'<a href="../../files/hostile-1.0-py3-none-any.whl">wheel</a></body></html>').encode(),
        "/files/hostile-1.0.tar.gz": sdist,
    }
    _Index.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ws = write_workspace(tmp_path / "ws", {"BUILD.toml": "[workspace]\n"})
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": "",
               "PIP_INDEX_URL": f"http://127.0.0.1:{server.server_port}/simple"}
        hermetic_cli("pin", "--sdist", "hostile>=1", cwd=ws, env=env)
        text = (ws / "pins" / "BUILD.toml").read_text()
        assert f'''["hostile-sdist"]
rule = "archive"
filename = "hostile-1.0.tar.gz"
sha256 = "{sha}"
size = {len(sdist)}
urls = ["pip:hostile==1.0/hostile-1.0.tar.gz"]
strip_prefix = "hostile-1.0"
''' in text
        assert not marker.exists(), "pinning the sdist ran its setup.py"
        assert _Index.seen == ["/simple/hostile/", "/files/hostile-1.0.tar.gz"]
        hermetic_cli("pin", "--sdist", "hostile>=1", cwd=ws, env=env)
        assert (ws / "pins" / "BUILD.toml").read_text() == text  # the same input, the same file
        hermetic_cli("--cache-dir", str(tmp_path / "c"), "build", "//pins:hostile-sdist", cwd=ws, env=env)
        assert not marker.exists()
        # an index that serves other bytes than its listing says is refused, and nothing is written
        _Index.files["/files/hostile-1.0.tar.gz"] = sdist + b"tampered"
        (ws / "pins" / "BUILD.toml").unlink()
        proc = hermetic_cli("pin", "--sdist", "hostile==1.0", cwd=ws, env=env, check=False)
        assert proc.returncode != 0 and f"the index says sha256 {sha}" in proc.stderr
        assert not (ws / "pins" / "BUILD.toml").exists()
    finally:
        server.shutdown()
        server.server_close()

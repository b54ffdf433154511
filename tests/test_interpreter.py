"""Hermetic interpreters: CPython built from its pinned, signature-checked
source in the sandbox, with zlib, libffi and OpenSSL built by other rules
and linked in statically; relocatable; rebuilt bit for bit by `verify`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import hermetic_cli

pytestmark = [pytest.mark.integration, pytest.mark.linux, pytest.mark.network, pytest.mark.bwrap]

TARGET = "//recipes/python:cpython-3.13"
TREE = "hermetic-out/linux-x86_64-manylinux2014/recipes/python/cpython-3.13/python"


CHECK = ("import sys, ssl, zlib, ctypes, hashlib, sysconfig\n"
         "print(sys.version_info[:3]); print(ssl.OPENSSL_VERSION)\n"
         "print(zlib.ZLIB_RUNTIME_VERSION); print(hashlib.sha256(b'abc').hexdigest()[:8])\n"
         "print(ctypes.CDLL(None).abs(-7)); print(sys.prefix)\n"
         "print(sysconfig.get_config_var('CC'))\n")


def test_the_interpreter_has_ssl_zlib_ctypes_hashlib_and_moves(cpython, tmp_path):
    tree = cpython / TREE
    # moved somewhere else entirely: it finds its stdlib from where it is
    moved = tmp_path / "elsewhere" / "py"
    shutil.copytree(tree, moved, symlinks=True)
    out = subprocess.run([moved / "bin" / "python3.13", "-I", "-c", CHECK], capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin"}).stdout.splitlines()
    assert out[:5] == ["(3, 13, 5)", "OpenSSL 3.5.7 9 Jun 2026", "1.3.1", "ba7816bf", "7"]
    assert out[5] == str(moved)
    assert "/hermetic/" not in out[6] or out[6].startswith("cc")  # no sandbox path: the wrapper's bare name
    # statically linked: the C library and friends are all it needs
    needed = subprocess.run(["readelf", "-d", str(moved / "bin" / "python3.13")], capture_output=True,
                            text=True, check=True).stdout
    libs = {ln.split("[")[1].split("]")[0] for ln in needed.splitlines() if "(NEEDED)" in ln}
    assert libs <= {"libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "libutil.so.1", "librt.so.1",
                    "ld-linux-x86-64.so.2"}, libs
    for so in (moved / "lib" / "python3.13" / "lib-dynload").glob("_ssl*.so"):
        dyn = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True, check=True).stdout
        assert "libssl" not in dyn and "libcrypto" not in dyn
    # no directory of the build in the executable (its own docstrings name /tmp and /usr/local; its
    # PREFIX is the fixed /opt/hermetic/python)
    exe = (moved / "bin" / "python3.13").read_bytes()
    for place in ("/hermetic/in/", "/hermetic/work/", "/hermetic/out/", str(cpython), str(Path.home()) + "/",
                  sys.prefix + "/", "/build/"):
        assert place.encode() not in exe, place
    assert b"/opt/hermetic/python" in exe


def test_the_interpreter_is_reproducible(cpython):
    # the interpreter and the two libraries built for it; its OpenSSL is the flagship's, which
    # test_flagship's verify rebuilds (--no-deps: the rebuild stops at the named targets)
    # (--platform: zlib and libffi as the interpreter uses them, not as the host's own)
    proc = hermetic_cli("--cache-dir", str(cpython.parent / "cache"), "verify", "--no-deps", "--platform",
                        "linux-x86_64-manylinux2014", TARGET, "//recipes/python:zlib", "//recipes/python:libffi",
                        cwd=cpython, check=False)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "reproducible" in proc.stdout
    for mnemonic in ("CPythonBuild", "ConfigureMake"):
        assert mnemonic in proc.stderr, mnemonic
    assert "OpenSSLBuild" not in proc.stderr.split("rebuilding")[-1]
    assert "[start]" not in proc.stderr.split("rebuilding")[0]  # the first build: everything from the cache

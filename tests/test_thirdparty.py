"""Existing packages from their sdists (issue 8): PyNaCl 1.6.2 against a
hermetically built libsodium, its own test suite, reproducibility; the host's
headers invisible to a hermetic build; the README's bring-your-own-package
guide, run as written in an empty workspace."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import HOST_PY, REPO, build_counts, copy_workspace, hermetic_cli, machine_paths_in

pytestmark = [pytest.mark.integration, pytest.mark.linux, pytest.mark.network, pytest.mark.bwrap]

PYNACL = "linux-x86_64-manylinux2014/thirdparty/pynacl"


@pytest.fixture(scope="module")
def pynacl(warm_store: Path) -> Path:
    """A workspace that built and tested PyNaCl (one cold libsodium build,
    on top of the warm store, shared by the tests here)."""
    shared = warm_store.parent
    with open(shared / ".lock-pynacl", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ws = shared / "ws-pynacl"
        if not (shared / ".done-pynacl").exists():
            shutil.rmtree(ws, ignore_errors=True)
            copy_workspace(ws)
            proc = hermetic_cli("--cache-dir", str(warm_store), "build", "//thirdparty/pynacl:test",
                                "//thirdparty/pynacl:wheel", cwd=ws)
            (shared / "build-pynacl.log").write_text(proc.stdout + proc.stderr)
            (shared / ".done-pynacl").write_text("ok")
    return ws


def test_pynacl_builds_against_hermetic_libsodium_and_passes_its_own_tests(pynacl):
    out = pynacl / "hermetic-out" / PYNACL
    (wheel,) = (out / "wheel" / "dist").glob("*.whl")
    # glibc 2.16 is the newest symbol version it needs (the legacy alias covers 2.17+ systems)
    assert wheel.name == f"pynacl-1.6.2-{HOST_PY}-{HOST_PY}-manylinux_2_16_x86_64.manylinux2014_x86_64.whl"
    facts = json.loads((out / "wheel" / "wheel.json").read_text())
    assert facts["built_as"] == f"pynacl-1.6.2-{HOST_PY}-{HOST_PY}-linux_x86_64.whl"  # what setuptools called it
    (ext,) = facts["extensions"].values()
    assert not [n for n in ext["needed"] if "sodium" in n]  # libsodium is linked in, not needed
    assert ext["needed"] == ["libc.so.6"]
    assert ext["exports"] == ["PyInit__sodium"]  # libsodium's symbols stayed local
    audit = subprocess.run([sys.executable, "-m", "auditwheel", "show", str(wheel)], capture_output=True,
                           text=True, check=True).stdout
    assert 'consistent with the following platform tag: "manylinux_2_17_x86_64"' in " ".join(audit.split())
    report = (out / "test" / "test-report.txt").read_text().splitlines()
    m = re.fullmatch(r"(\d+) passed, (\d+) skipped", report[-1])
    assert m and int(m.group(1)) > 4000, report[-1]
    assert "tests/test_box.py::test_box_encryption[" in "\n".join(report)
    # the report's totals are the ones on pytest's own summary line, which `hermetic log` shows
    log = hermetic_cli("--cache-dir", str(pynacl.parent / "cache"), "log", "//thirdparty/pynacl:test",
                       cwd=pynacl).stdout
    summary = re.findall(r"^=+ (\d+ passed(?:, \d+ \w+)*) in [\d.]+s", log, re.M)
    assert summary and summary[-1] == report[-1], (summary, report[-1])
    assert f"test report: {report[-1]}" in log
    with zipfile.ZipFile(wheel) as zf:
        so = zf.read(next(n for n in zf.namelist() if n.endswith(".so")))
    assert not machine_paths_in(so)  # optimized (no UBSan file names), no -I/-L of the sandbox or host


def test_pynacl_is_reproducible(pynacl, warm_store):
    proc = hermetic_cli("--cache-dir", str(warm_store), "verify", "//thirdparty/pynacl:wheel", cwd=pynacl,
                        check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "reproducible" in proc.stdout and "ConfigureMake" in proc.stderr and "Pep517Build" in proc.stderr


LEAK_C = r"""
#include <Python.h>
#include <openssl/crypto.h>
static PyObject *version(PyObject *self, PyObject *args) { return PyLong_FromUnsignedLong(OpenSSL_version_num()); }
static PyMethodDef methods[] = {{"version", version, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "leak", NULL, -1, methods};
PyMODINIT_FUNC PyInit_leak(void) { return PyModule_Create(&mod); }
"""


def _sdist(dest: Path) -> tuple[str, int]:
    """A tiny sdist whose extension uses the host's OpenSSL headers."""
    files = {
        "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n',
        "setup.py": "from setuptools import setup, Extension\n"
                    "setup(name='leak', version='1.0', ext_modules=[Extension('leak', ['leak.c'], "
                    "libraries=['crypto'])])\n",
        "leak.c": LEAK_C,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"leak-1.0/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    dest.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest(), len(buf.getvalue())


@pytest.mark.needs_host_openssl
def test_host_openssl_headers_are_invisible_to_a_hermetic_build(tmp_path, warm_store):
    ws = copy_workspace(tmp_path / "ws")
    sha, size = _sdist(tmp_path / "leak-1.0.tar.gz")
    (ws / "leak").mkdir()
    (ws / "leak" / "BUILD.toml").write_text(f"""
[sdist]
rule = "archive"
filename = "leak-1.0.tar.gz"
sha256 = "{sha}"
urls = ["file://{tmp_path / 'leak-1.0.tar.gz'}"]
strip_prefix = "leak-1.0"

[hermetic]
rule = "pep517_wheel"
platform = "linux-x86_64-manylinux2014"
sdist = ":sdist"
build_requires = ["//thirdparty/python:setuptools"]
inspect_requires = ["//recipes/python:lief"]

[on-purpose]
rule = "pep517_wheel"
sdist = ":sdist"
build_requires = ["//thirdparty/python:setuptools"]
inspect_requires = ["//recipes/python:lief"]
system_libraries = ["crypto"]

[host-compiler]
rule = "pep517_wheel"
sdist = ":sdist"
build_requires = ["//thirdparty/python:setuptools"]
""")
    proc = hermetic_cli("--cache-dir", str(warm_store), "build", "//leak:hermetic", cwd=ws, check=False)
    assert proc.returncode == 1
    assert "'openssl/crypto.h' file not found" in proc.stderr  # the host has it; the build cannot see it
    # asking for a hermetic build with the host's compiler is refused before anything runs
    proc = hermetic_cli("--cache-dir", str(warm_store), "build", "//leak:host-compiler", cwd=ws, check=False)
    assert proc.returncode == 3 and "is the host's own compiler" in proc.stderr and "hint:" in proc.stderr
    # on purpose: built against the host's libcrypto, and marked so in the key and the output
    proc = hermetic_cli("--cache-dir", str(warm_store), "build", "//leak:on-purpose", cwd=ws)
    out = ws / "hermetic-out" / "leak" / "on-purpose"
    (wheel,) = (out / "dist").glob("*.whl")
    assert wheel.name == f"leak-1.0-{HOST_PY}-{HOST_PY}-linux_x86_64.whl"  # needs libcrypto.so.3: no manylinux tag
    assert "built against the host's crypto" in (out / "NON-HERMETIC").read_text()
    acts = json.loads(hermetic_cli("--cache-dir", str(warm_store), "aquery", "//leak:on-purpose", "--output",
                                   "json", "--mnemonic", "Pep517Build", cwd=ws).stdout)
    assert acts[0]["env"]["HERMETIC_NON_HERMETIC"] == "built against the host's crypto"
    stmt = json.loads((out / f"{wheel.name}.provenance.json").read_text())
    assert list(stmt["predicate"]["buildDefinition"]["internalParameters"]["non_hermetic"].values()) == [
        "built against the host's crypto"]


def _guide_build_toml() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- guide: BUILD.toml -->\n```toml\n(.*?)```\n<!-- /guide -->", text, re.S)
    assert m, "the README's guide block is missing"
    return m.group(1)


def test_the_guides_build_toml_builds_another_package(tmp_path, warm_store):
    ws = tmp_path / "mine"
    ws.mkdir()
    (ws / "BUILD.toml").write_text(_guide_build_toml())
    proc = hermetic_cli("--cache-dir", str(warm_store), "build", "//:wheel", cwd=ws)
    (wheel,) = (ws / "hermetic-out" / "linux-x86_64-manylinux2014" / "wheel" / "dist").glob("*.whl")
    assert wheel.name == \
        f"argon2_cffi_bindings-21.2.0-{HOST_PY}-abi3-manylinux_2_14_x86_64.manylinux2014_x86_64.whl"
    assert str(wheel.relative_to(ws)) in proc.stdout
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    got = hermetic_cli("--cache-dir", str(warm_store), "build", "//:cffi", "-o", str(tmp_path / "o"), cwd=ws)
    cffi = got.stdout.split(": ", 1)[1].strip()  # the pinned cffi wheel, through the same workspace
    subprocess.run([venv / "bin" / "pip", "install", "-q", "--no-deps", "--no-index", str(wheel), cffi],
                   check=True)
    out = subprocess.run([venv / "bin" / "python", "-c", (
        "from _argon2_cffi_bindings import ffi, lib\n"
        "h = ffi.new('uint8_t[]', 32)\n"
        "rc = lib.argon2_hash(2, 1 << 10, 1, b'password', 8, b'somesalt', 8, h, 32, ffi.NULL, 0, lib.Argon2_id,"
        " 0x13)\n"
        "print(rc, bytes(h).hex())")], capture_output=True, text=True, check=True, cwd=tmp_path).stdout.split()
    # the same Argon2id hash as an independent implementation's (OpenSSL's, through cryptography)
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    expected = Argon2id(salt=b"somesalt", length=32, iterations=2, lanes=1, memory_cost=1024).derive(b"password")
    assert out == ["0", expected.hex()]
    again = hermetic_cli("--cache-dir", str(warm_store), "build", "//:wheel", cwd=ws)
    assert build_counts(again.stderr)[1] == 0

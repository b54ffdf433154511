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
import shlex
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


def _guide_block(name: str, lang: str) -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(rf"<!-- guide: {re.escape(name)} -->\n```{lang}\n(.*?)```\n<!-- /guide -->", text, re.S)
    assert m, f"the README's guide block {name!r} is missing"
    return m.group(1)


def test_the_guide_builds_a_package_against_openssl_111_from_an_empty_directory(tmp_path, warm_store):
    """The README's walk-through, verbatim: its BUILD.toml, the key beside
    it, its one `hermetic pin` command, then the wheel (against an OpenSSL
    1.1.1w this workspace builds from its signed source)."""
    ws = tmp_path / "mine"
    ws.mkdir()
    (ws / "BUILD.toml").write_text(_guide_block("BUILD.toml", "toml"))
    shutil.copy(REPO / "recipes" / "openssl" / "openssl-1.1.1-release-key.asc", ws)
    pin = shlex.split(_guide_block("pin", "sh").replace("\\\n", " "))
    assert pin[0] == "hermetic"
    hermetic_cli(*pin[1:], cwd=ws)
    pins = (ws / "pins" / "BUILD.toml").read_text()
    assert '["cryptography-sdist"]' in pins and 'urls = ["pip:cryptography==3.3.2/cryptography-3.3.2.tar.gz"]' in pins
    proc = hermetic_cli("--cache-dir", str(warm_store), "build", "//:wheel", cwd=ws)
    (wheel,) = (ws / "hermetic-out" / "linux-x86_64-manylinux2014" / "wheel" / "dist").glob("*.whl")
    assert wheel.name == "cryptography-3.3.2-cp36-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    assert str(wheel.relative_to(ws)) in proc.stdout
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    got = hermetic_cli("--cache-dir", str(warm_store), "build", "//pins:cffi", "//pins:pycparser", "//pins:six",
                       "-o", str(tmp_path / "o"), cwd=ws)
    wheels = [ln.split(": ", 1)[1].strip() for ln in got.stdout.splitlines() if ln.strip().endswith(".whl")]
    subprocess.run([venv / "bin" / "pip", "install", "-q", "--no-deps", "--no-index", str(wheel), *wheels],
                   check=True)
    out = subprocess.run([venv / "bin" / "python", "-c", (
        "from cryptography.hazmat.backends.openssl import backend\n"
        "from cryptography.hazmat.primitives import hashes\n"
        "h = hashes.Hash(hashes.SHA256(), backend)\nh.update(b'abc')\n"
        "print(backend.openssl_version_text()); print(h.finalize().hex())")],
        capture_output=True, text=True, check=True, cwd=tmp_path).stdout.splitlines()
    assert out == ["OpenSSL 1.1.1w  11 Sep 2023", hashlib.sha256(b"abc").hexdigest()]
    again = hermetic_cli("--cache-dir", str(warm_store), "build", "//:wheel", cwd=ws)
    assert build_counts(again.stderr)[1] == 0


def _tarball(dest: Path, top: str, files: dict[str, str]) -> tuple[str, int]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    dest.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest(), len(buf.getvalue())


def test_a_failing_upstream_suite_fails_the_build_and_shows_its_report(tmp_path, warm_store):
    ws = copy_workspace(tmp_path / "ws")
    sha, _ = _tarball(tmp_path / "adder-1.0.tar.gz", "adder-1.0", {
        "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
                          '[project]\nname = "adder"\nversion = "1.0"\n',
        "setup.py": "from setuptools import Extension, setup\n"
                    "setup(py_modules=['adder'], ext_modules=[Extension('_adder', ['_adder.c'])])\n",
        "_adder.c": "#include <Python.h>\nstatic struct PyModuleDef m = {PyModuleDef_HEAD_INIT, \"_adder\"};\n"
                    "PyMODINIT_FUNC PyInit__adder(void) { return PyModule_Create(&m); }\n",
        "adder.py": "import _adder  # noqa\n\n\ndef add(a, b):\n    return a - b  # the bug the suite finds\n",
        "tests/test_adder.py": "from adder import add\n\n\ndef test_zero():\n    assert add(1, 0) == 1\n\n\n"
                               "def test_two():\n    assert add(1, 1) == 2, 'adder is off by ' + str(2 - add(1, 1))\n",
    })
    (ws / "adder").mkdir()
    (ws / "adder" / "BUILD.toml").write_text(f"""
[sdist]
rule = "archive"
filename = "adder-1.0.tar.gz"
sha256 = "{sha}"
urls = ["file://{tmp_path / 'adder-1.0.tar.gz'}"]
strip_prefix = "adder-1.0"

[wheel]
rule = "pep517_wheel"
platform = "linux-x86_64-manylinux2014"
sdist = ":sdist"
build_requires = ["//thirdparty/python:setuptools"]
inspect_requires = ["//recipes/python:lief"]

[test]
rule = "pep517_test"
platform = "linux-x86_64-manylinux2014"
wheel = ":wheel"
tests = ":sdist"
deps = ["//thirdparty/python:pytest", "//thirdparty/python:pluggy", "//thirdparty/python:iniconfig",
        "//thirdparty/python:packaging", "//thirdparty/python:pygments"]
""")
    proc = hermetic_cli("--cache-dir", str(warm_store), "build", "//adder:test", cwd=ws, check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    err = proc.stderr
    assert "Pep517Test //adder:test" in err and "failed" in err, err[-4000:]
    # the failing test's own output, then the report's totals, are in the build's output
    assert "tests/test_adder.py::test_two" in err and "adder is off by 2" in err
    assert "test report: 1 failed, 1 passed (pytest exit code 1)" in err
    # and the whole pytest output stays in the store for `hermetic log`
    log = hermetic_cli("--cache-dir", str(warm_store), "log", "//adder:test", "--mnemonic", "Test$", cwd=ws).stdout
    assert "FAILED" in log and re.search(r"^=+ 1 failed, 1 passed in [\d.]+s", log, re.M), log[-2000:]

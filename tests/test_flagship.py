"""The real thing, end to end: `hermetic build //wheel:linux-x86_64`.

The suite pays for one cold OpenSSL build (the ``warm_store`` fixture, shared
by every xdist worker); each test here starts from a fresh copy of the
workspace and uses that store."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import FLAGSHIP, copy_workspace, hermetic_cli

pytestmark = [pytest.mark.integration, pytest.mark.linux]


def _counts(stderr: str) -> tuple[int, int]:
    m = re.search(r"(\d+) actions: (\d+) executed, (\d+) from cache", stderr)
    assert m, stderr
    return int(m.group(2)), int(m.group(3))


def _executed(stderr: str) -> list[str]:
    return sorted(m.group(1) for m in re.finditer(r"\] done +(\S+) ", stderr))


def test_wheel_installs_and_works(tmp_path, warm_store):
    ws = copy_workspace(tmp_path / "ws")
    proc = hermetic_cli("--cache-dir", str(warm_store), "build", FLAGSHIP, cwd=ws)
    wheel_line = [ln for ln in proc.stdout.splitlines() if ln.endswith(".whl")]
    assert wheel_line, proc.stdout
    wheel = ws / wheel_line[0].split(": ", 1)[1]
    assert wheel.name == f"hermetic_openssl-0.1.0-cp{sys.version_info[0]}{sys.version_info[1]}-" \
                         f"cp{sys.version_info[0]}{sys.version_info[1]}-linux_x86_64.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert names == sorted(names[:-4]) + names[-4:]  # sorted, dist-info last
        assert all(i.date_time == (2026, 1, 1, 0, 0, 0) for i in zf.infolist())
        record = zf.read("hermetic_openssl-0.1.0.dist-info/RECORD").decode()
        assert all(re.search(r",sha256=[\w-]+,\d+$", ln) for ln in record.splitlines()[:-1])

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    cffi = _cffi_wheel(ws, warm_store, tmp_path)
    subprocess.run([venv / "bin" / "pip", "install", "-q", "--no-deps", "--no-index", str(wheel), str(cffi)],
                   check=True)
    out = subprocess.run([venv / "bin" / "python", "-c",
                          "import hermetic_openssl as h, hermetic_openssl._binding as b;"
                          "print(h.openssl_version()); print(b.__file__); print(h.sha256(b'abc').hex())"],
                         cwd=tmp_path, check=True, capture_output=True, text=True).stdout.splitlines()
    assert out[0].startswith("OpenSSL 3.5.")
    assert out[2] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    so = out[1]
    exported = subprocess.run(["nm", "-D", "--defined-only", so], capture_output=True, text=True,
                              check=True).stdout.split()
    assert [s for s in exported if not re.fullmatch(r"[0-9a-f]+|T", s)] == ["PyInit__binding"]
    ldd = subprocess.run(["ldd", so], capture_output=True, text=True, check=True).stdout
    assert "libssl" not in ldd and "libcrypto" not in ldd
    # the vector tests ran in a fresh venv inside the sandbox during the build
    report = (wheel.parent / "test-report.txt").read_text()
    assert "tests passed" in report and "test_case_15" in report


def _cffi_wheel(ws: Path, store: Path, tmp_path: Path) -> Path:
    """The pinned cffi wheel, built (fetched) through hermetic itself."""
    proc = hermetic_cli("--cache-dir", str(store), "build", "//recipes/python:cffi", "-o", str(tmp_path / "o"),
                        cwd=ws)
    return Path(proc.stdout.split(": ", 1)[1].strip())


def test_noop_and_restore_from_store(tmp_path, warm_store):
    ws = copy_workspace(tmp_path / "ws")
    first = hermetic_cli("--cache-dir", str(warm_store), "build", FLAGSHIP, cwd=ws)
    assert _counts(first.stderr) == (0, 15)
    again = hermetic_cli("--cache-dir", str(warm_store), "build", FLAGSHIP, cwd=ws)
    assert _counts(again.stderr) == (0, 15)
    wheel = next((ws / "hermetic-out").rglob("*.whl"))
    digest = wheel.read_bytes()
    shutil.rmtree(ws / "hermetic-out")
    restored = hermetic_cli("--cache-dir", str(warm_store), "build", FLAGSHIP, cwd=ws)
    assert _counts(restored.stderr) == (0, 15)
    assert wheel.read_bytes() == digest


def test_binding_change_rebuilds_only_the_binding(tmp_path, warm_store):
    ws = copy_workspace(tmp_path / "ws")
    store = tmp_path / "store"
    shutil.copytree(warm_store, store)  # this test adds results; keep the shared store as it was
    src = ws / "recipes" / "pyossl" / "binding.c"
    src.write_text(src.read_text().replace("static int hx_random(", "/* changed */\nstatic int hx_random(", 1))
    proc = hermetic_cli("--cache-dir", str(store), "build", FLAGSHIP, cwd=ws)
    assert _executed(proc.stderr) == ["CcCompile", "CcLink", "CffiGenerate", "CheckSymbols", "PyWheel",
                                      "PyWheelTest"]
    assert _counts(proc.stderr) == (6, 9)
    assert "OpenSSLBuild" not in proc.stderr


def test_cache_stats_and_graph(tmp_path, warm_store):
    ws = copy_workspace(tmp_path / "ws")
    hermetic_cli("--cache-dir", str(warm_store), "build", FLAGSHIP, cwd=ws)
    stats = hermetic_cli("--cache-dir", str(warm_store), "cache", "stats", cwd=ws).stdout
    assert "action results:" in stats and "0 executed" in stats
    graph = json.loads(hermetic_cli("graph", FLAGSHIP, "--format", "json", cwd=ws).stdout)
    assert {a["mnemonic"] for a in graph["actions"]} >= {"Fetch", "OpenSSLBuild", "CcLink", "PyWheelTest"}

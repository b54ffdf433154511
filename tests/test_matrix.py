"""The wheel matrix: one third-party cffi package (cmarkgfm, from its pinned
sdist) built and tested once per hermetic interpreter (CPython 3.9, 3.11 and
3.13, each built from pinned source by //recipes/python), with the summary
table a build of the matrix writes. The interpreters are built once on the
suite's warm store (3.13 is shared with test_interpreter.py)."""

from __future__ import annotations

import fcntl
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from conftest import build_counts, copy_workspace, hermetic_cli

pytestmark = [pytest.mark.integration, pytest.mark.linux, pytest.mark.network, pytest.mark.bwrap]

TARGET = "//thirdparty/cmarkgfm:wheels"
OUT = "hermetic-out/linux-x86_64-manylinux2014/thirdparty/cmarkgfm/wheels"
CELLS = {"cp39": "3.9.2", "cp311": "3.11.2", "cp313": "3.13.5"}


@pytest.fixture(scope="module")
def matrix(warm_store: Path, cpython: Path) -> tuple[Path, str]:
    # after the 3.13 interpreter is in the warm store (the cpython fixture): built once for both
    shared = warm_store.parent
    with open(shared / ".lock-matrix", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ws = shared / "ws-matrix"
        log = shared / "matrix.log"
        if not (shared / ".done-matrix").exists():
            shutil.rmtree(ws, ignore_errors=True)
            copy_workspace(ws)
            proc = hermetic_cli("--cache-dir", str(warm_store), "build", TARGET, cwd=ws)
            log.write_text(proc.stderr)
            (shared / ".done-matrix").write_text("ok")
    return ws, log.read_text()


def _rows(table: str) -> dict[str, list[str]]:
    rows = {}
    for line in table.splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cols) == 8 and cols[0] in CELLS:
            rows[cols[0]] = cols
    return rows


def test_one_wheel_per_interpreter_tagged_for_it_and_tested_on_it(matrix):
    ws, log = matrix
    out = ws / OUT
    rows = _rows(log)  # the table the build printed
    assert sorted(rows) == sorted(CELLS)
    # ... and wrote beside the cells (a later cached build of the same cells rewrites its last columns)
    written = _rows((out / "summary.md").read_text())
    assert {t: r[:6] for t, r in written.items()} == {t: r[:6] for t, r in rows.items()}
    for tag, version in CELLS.items():
        _cell, python, wheel, wtag, size, tests, secs, cache = rows[tag]
        assert python == version
        files = sorted((out / tag / "dist").glob("*.whl"))
        assert [f.name for f in files] == [wheel]
        # the full C API of that interpreter: its own tag (the glibc it needs is what it linked:
        # 2.14 here, inside manylinux2014), and a module built for its ABI
        assert re.fullmatch(rf"{tag}-{tag}-manylinux_2_1[0-7]_x86_64\.manylinux2014_x86_64", wtag), wtag
        assert size == f"{files[0].stat().st_size / 1024:.0f} KiB"
        whl = zipfile.ZipFile(files[0])
        # cffi names the module for the stable ABI (as upstream's wheels do) while the backend tags the
        # wheel for the interpreter that built it: each cell's module is its own build
        assert "cmarkgfm/_cmark.abi3.so" in whl.namelist()
        meta = whl.read("cmarkgfm-2025.10.22.dist-info/WHEEL").decode()
        assert f"Tag: {tag}-{tag}-manylinux" in meta, meta
        report = (out / tag / "test-report.txt").read_text().splitlines()
        assert report[-1] == tests and re.fullmatch(r"\d+ passed", tests), tests
        assert sum(1 for ln in report if ln.endswith(" PASSED")) == int(tests.split()[0])
        # built by the fixture in a fresh suite; cached when the store already had these cells
        assert cache in ("built", "cached") and (cache == "built") == (float(secs.removesuffix("s")) > 0)


def test_a_second_build_is_all_cached_and_says_so(matrix):
    ws, _ = matrix
    cache = ws.parent / "cache"
    proc = hermetic_cli("--cache-dir", str(cache), "build", TARGET, cwd=ws)
    total, executed, cached, _ = build_counts(proc.stderr)
    assert executed == 0 and cached == total > 0
    rows = _rows((ws / OUT / "summary.md").read_text())
    assert sorted(rows) == sorted(CELLS) and {r[7] for r in rows.values()} == {"cached"}
    assert rows == _rows(proc.stderr)

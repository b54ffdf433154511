"""pep517_test's report comes from pytest's own results: its totals are the
ones on pytest's summary line, with and without xdist, whatever the test
IDs look like and wherever a skip is raised; a failing suite still writes
its report and prints its failures."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "recipes" / "wheel"))
import wheeltest  # noqa: E402

SUITE = {
    "test_sub.py": '''
import unittest


class Sub(unittest.TestCase):
    def test_parts(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertLess(i, 3)
''',
    "test_ids.py": '''
import pytest

@pytest.mark.parametrize("word", ["with space", "tab\\there", "x::y", "ünïcode"], ids=lambda w: w)
def test_odd_ids(word):
    assert word

@pytest.mark.xfail(reason="known", strict=False)
def test_xfail():
    assert False

@pytest.mark.xfail(reason="fixed since", strict=False)
def test_xpass():
    pass

@pytest.mark.skip(reason="not here")
def test_skipped():
    pass

def test_deselected_by_k():
    pass
''',
    "test_module_skip.py": '''
import pytest
pytest.skip("the whole module, at collection", allow_module_level=True)

def test_never():
    pass
''',
    "test_many.py": '''
import pytest

@pytest.mark.parametrize("i", range(40))
def test_many(i):
    assert i >= 0
''',
}

FAILING = {"test_fails.py": '''
def test_ok():
    pass

def test_broken():
    assert 1 + 1 == 3, "arithmetic is off"
'''}


def _run(tmp_path: Path, files: dict[str, str], xdist: bool, capsys) -> tuple[str, str, int]:
    src = tmp_path / "src" / "tests"
    src.mkdir(parents=True)
    for name, text in files.items():
        (src / name).write_text(text)
    work = tmp_path / "work"
    work.mkdir()
    args = argparse.Namespace(report=str(tmp_path / "report.txt"), tests_dir=str(tmp_path / "src"),
                              tests_subdir="tests", pytest_arg=["-k", "not deselected"],
                              pytest_plugin=str(REPO / "recipes" / "wheel" / "pytest_report.py"), xdist=xdist)
    old = dict(os.environ)
    os.environ.update(WORK=str(work), HERMETIC_JOBS="2")
    code = 0
    try:
        wheeltest.run_pytest([sys.executable], args, str(work))
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        os.environ.clear()
        os.environ.update(old)
    out = capsys.readouterr().out
    return (tmp_path / "report.txt").read_text(), out, code


def _pytest_summary(out: str) -> dict[str, int]:
    """The counts on pytest's own last summary line ("== 3 passed, 1 skipped in 0.1s ==")."""
    line = [ln for ln in out.splitlines() if re.match(r"^=+ .* in [\d.]+s", ln)][-1]
    return {word.rstrip("s") if word in ("errors",) else word: int(n)
            for n, word in re.findall(r"(\d+) ([a-z][a-z ]*[a-z])", line.split(" in ")[0])}


def _report_summary(report: str) -> dict[str, int]:
    return {word.rstrip("s") if word in ("errors",) else word: int(n)
            for n, word in re.findall(r"(\d+) ([a-z][a-z ]*[a-z])", report.splitlines()[-1])}


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_report_totals_are_pytests(tmp_path, capsys, xdist):
    report, out, code = _run(tmp_path, SUITE, xdist, capsys)
    assert code == 0, out
    summary = _pytest_summary(out)
    assert _report_summary(report) == summary
    expected = {"passed": 45, "skipped": 2, "deselected": 1, "xfailed": 1, "xpassed": 1}
    if int(pytest.__version__.split(".")[0]) >= 9:  # pytest 9 counts unittest's subTest()s on the line
        expected["subtests passed"] = 3
    if xdist:  # xdist's workers deselect; its controller's summary line does not count them
        del expected["deselected"]
    assert summary == expected
    assert "tests/test_ids.py::test_odd_ids[with space] PASSED" in report
    assert "tests/test_module_skip.py SKIPPED" in report  # a skip raised at collection
    if xdist:
        assert "2 workers" in out or "gw1" in out
    assert f"test report: {report.splitlines()[-1]}" in out


def test_a_failing_suite_still_reports(tmp_path, capsys):
    report, out, code = _run(tmp_path, FAILING, False, capsys)
    assert code == 1
    assert report.splitlines()[-1] == "1 failed, 1 passed" == ", ".join(
        f"{n} {w}" for w, n in _pytest_summary(out).items())
    assert "tests/test_fails.py::test_broken FAILED" in report
    tail = out[out.rindex("---- tests/test_fails.py::test_broken"):]
    assert "arithmetic is off" in tail and "test report: 1 failed, 1 passed (pytest exit code 1)" in tail


def _wheel(path: Path, name: str, version: str, requires: list[str]) -> Path:
    import zipfile

    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}-{version}.dist-info/METADATA", meta)
    return path


def test_missing_requirements_are_named_before_anything_runs(tmp_path):
    import subprocess

    pkg = _wheel(tmp_path / "pkg-1.0-py3-none-any.whl", "pkg", "1.0",
                 ["attrs>=23", "six; python_version < '3'", "rich[jupyter]; extra == 'fancy'",
                  "Typing_Extensions>=4"])
    old_attrs = _wheel(tmp_path / "attrs-22.1-py3-none-any.whl", "attrs", "22.1", [])
    te = _wheel(tmp_path / "typing_extensions-4.12-py3-none-any.whl", "typing_extensions", "4.12", [])
    proc = subprocess.run([sys.executable, "-c", wheeltest.REQUIRES_CHECK, str(pkg), str(old_attrs), str(te)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "pkg requires attrs>=23: the pinned attrs is 22.1" in proc.stdout
    assert "six" not in proc.stdout and "rich" not in proc.stdout  # markers false for this interpreter
    assert "typing" not in proc.stdout.lower().split("requirements not met")[1]  # names are canonicalized
    good = _wheel(tmp_path / "attrs-24.2-py3-none-any.whl", "attrs", "24.2", [])
    proc = subprocess.run([sys.executable, "-c", wheeltest.REQUIRES_CHECK, str(pkg), str(good), str(te)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout

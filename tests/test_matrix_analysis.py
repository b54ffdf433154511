"""wheel_matrix, analysed only (nothing built): the cells it declares for a
limited-API package, and its errors."""

from __future__ import annotations

import pytest
from conftest import copy_workspace, hermetic_cli

pytestmark = [pytest.mark.linux]

CELL = '''
[abi3]
rule = "wheel_matrix"
platform = "linux-x86_64-manylinux2014"
sdist = "//thirdparty/cmarkgfm/pins:cmarkgfm-sdist"
pythons = [{pythons}]
limited_api = "3.11"
build_requires = ["//thirdparty/cmarkgfm/pins:cffi", "//thirdparty/cmarkgfm/pins:pycparser",
                  "//thirdparty/cmarkgfm/pins:setuptools"]
inspect_requires = ["//recipes/python:lief"]
tests = "//thirdparty/cmarkgfm/pins:cmarkgfm-sdist"
test_deps = ["//thirdparty/cmarkgfm/pins:cffi", "//thirdparty/cmarkgfm/pins:pycparser",
             "//thirdparty/cmarkgfm/pins:pytest", "//thirdparty/cmarkgfm/pins:pluggy",
             "//thirdparty/cmarkgfm/pins:iniconfig", "//thirdparty/cmarkgfm/pins:packaging",
             "//thirdparty/cmarkgfm/pins:pygments"]
'''
PYTHONS = '"//recipes/python:cpython-3.9", "//recipes/python:cpython-3.11", "//recipes/python:cpython-3.13"'


@pytest.fixture
def ws(tmp_path):
    return copy_workspace(tmp_path / "ws")


def _add(ws, pythons):
    build = ws / "thirdparty" / "cmarkgfm" / "BUILD.toml"
    build.write_text(build.read_text() + CELL.format(pythons=pythons))


def test_a_limited_api_package_is_built_once_and_tested_on_every_allowed_interpreter(ws, tmp_path):
    _add(ws, PYTHONS)
    out = hermetic_cli("--cache-dir", str(tmp_path / "cache"), "aquery", "//thirdparty/cmarkgfm:abi3", cwd=ws).stdout
    mine = sorted(ln.split()[1] for ln in out.splitlines()
                  if ln.startswith("action ") and "//thirdparty/cmarkgfm:abi3" in ln)
    # one build, on the oldest interpreter limited_api allows (3.11: 3.9 is below it), tested on each
    assert [m for m in mine if m.startswith("Pep517")] == ["Pep517Build[abi3-cp311]", "Pep517Test[cp311]",
                                                          "Pep517Test[cp313]"]
    assert not any("cp39" in m for m in mine), mine


def test_an_interpreter_for_another_platform_is_named(ws, tmp_path):
    _add(ws, '"//recipes/python:cpython-3.13-aarch64"')
    proc = hermetic_cli("--cache-dir", str(tmp_path / "cache"), "aquery", "//thirdparty/cmarkgfm:abi3", cwd=ws,
                        check=False)
    assert proc.returncode != 0
    assert "thirdparty/cmarkgfm/BUILD.toml" in proc.stderr
    assert "//recipes/python:cpython-3.13-aarch64 is CPython 3.13.5 for linux-aarch64" in proc.stderr, proc.stderr

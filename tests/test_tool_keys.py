"""A rule's helper scripts ("tool files") are keyed by their content and
their path inside the plugin's Python package, not by where hermetic is
installed: a teammate running a checkout (the recipes inside the workspace)
and one with hermetic installed from a wheel (the recipes in site-packages)
get the same action keys, so each finds the other's results in a shared
store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import build_counts, copy_workspace
from hermetic._analysis import _package_path

FLAGSHIP = "//wheel:linux-x86_64"


def test_a_tool_file_is_named_by_its_path_in_its_package(tmp_path):
    for root in (tmp_path / "checkout", tmp_path / "site-packages"):
        (root / "recipes" / "wheel").mkdir(parents=True)
        (root / "recipes" / "__init__.py").write_text("")
        (root / "recipes" / "wheel" / "__init__.py").write_text("")
        (root / "recipes" / "wheel" / "mkwheel.py").write_text("")
        assert _package_path(root / "recipes" / "wheel" / "mkwheel.py") == "recipes/wheel/mkwheel.py"
    (tmp_path / "loose").mkdir()
    assert _package_path(tmp_path / "loose" / "x.py") == "loose/x.py"  # not in a package: its directory


def _venv(path: Path) -> tuple[Path, Path]:
    """A new virtual environment that sees this suite's dependencies through
    a .pth file after its own site-packages (the editable install's own .pth
    file is not processed there, so hermetic is not importable from it)."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    site = next((path / "lib").glob("python3*/site-packages"))
    suite = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (site / "zz-suite-dependencies.pth").write_text(suite + "\n")
    return path / "bin" / "python", site


def _where(python: Path, cwd: Path, *args: str) -> str:
    code = "import sys, recipes.wheel; print(recipes.wheel.__file__)"
    return subprocess.run([python, *args, "-c", code], capture_output=True, text=True, check=True,
                          cwd=cwd).stdout.strip()


@pytest.mark.integration
@pytest.mark.linux
@pytest.mark.network
@pytest.mark.bwrap
def test_a_checkout_and_an_installed_wheel_share_every_action(tmp_path, warm_store):
    """The warm store was built by this suite's hermetic (an editable install:
    the recipes in this repository, outside the workspace copy). A checkout
    whose recipes are inside the workspace, and hermetic installed from its
    own wheel into a new virtual environment, find every action cached."""
    ws = copy_workspace(tmp_path / "ws")
    # the checkout: `python -m hermetic` run in it imports hermetic, its recipes and plugins from it
    python, _ = _venv(tmp_path / "checkout-venv")
    assert _where(python, ws).startswith(str(ws))
    aq = subprocess.run([python, "-m", "hermetic", "--cache-dir", str(warm_store), "aquery", FLAGSHIP, "--output",
                         "json"], cwd=ws, capture_output=True, text=True, check=True)
    tools = {i["path"] for a in json.loads(aq.stdout) for i in a["inputs"] if i["path"].startswith("tool/")}
    assert "tool/recipes/wheel/mkwheel.py" in tools and not any("/src/" in t for t in tools), tools
    proc = subprocess.run([python, "-m", "hermetic", "--cache-dir", str(warm_store), "build", FLAGSHIP], cwd=ws,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert build_counts(proc.stderr)[1] == 0, proc.stderr

    # installed: a wheel of hermetic in a new virtual environment; its dependencies are this suite's
    # (a .pth file after the venv's own site-packages: hermetic, its recipes and plugins are the wheel's)
    dist, src = tmp_path / "dist", copy_workspace(tmp_path / "src")  # pip builds in the tree it is given
    made = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                           "-w", str(dist), str(src)], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert made.returncode == 0, made.stderr[-3000:]
    (wheel,) = dist.glob("hermetic-*.whl")
    python, site = _venv(tmp_path / "venv")
    pip = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                          "--disable-pip-version-check", str(wheel)], capture_output=True, text=True, check=False)
    assert pip.returncode == 0, pip.stderr[-3000:]
    assert _where(python, tmp_path).startswith(str(site))
    run = subprocess.run([python.parent / "hermetic", "--cache-dir", str(warm_store), "build", FLAGSHIP], cwd=ws,
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert build_counts(run.stderr)[1] == 0, run.stderr

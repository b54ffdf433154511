"""`hermetic pin`: pip's resolver, pinned python_wheel targets the workspace
loads, the same file for the same input, --upgrade moving one pin."""

from __future__ import annotations

import tomllib

import pytest

from conftest import hermetic_cli
from hermetic.testing import write_workspace

pytestmark = [pytest.mark.network, pytest.mark.linux]


def _pins(ws):
    data = tomllib.loads((ws / "pins" / "BUILD.toml").read_text())
    return {name: (t["version"], tuple(t["wheels"])) for name, t in data.items()}


def test_pin_is_reproducible_and_upgrade_moves_one_pin(tmp_path):
    ws = write_workspace(tmp_path / "ws", {"BUILD.toml": "[workspace]\n"})
    args = ["pin", "pluggy<1.6", "iniconfig<2.2", "--test", "pytest==8.3.5", "--python", "3.11",
            "--platform", "manylinux2014_x86_64"]
    hermetic_cli(*args, cwd=ws)
    first = (ws / "pins" / "BUILD.toml").read_bytes()
    hermetic_cli(*args, cwd=ws)
    assert (ws / "pins" / "BUILD.toml").read_bytes() == first  # same input, same file
    pins = _pins(ws)
    assert pins["pluggy"][0].startswith("1.5") and pins["iniconfig"][0].startswith("2.1")
    assert pins["pytest"][0] == "8.3.5"
    text = first.decode()
    assert '# deps for test: ["//pins:iniconfig", "//pins:packaging", "//pins:pluggy"' in text
    for versions, wheels in pins.values():
        assert all(len(w.split(" sha256:")[1]) == 64 for w in wheels)

    # loosen both, move one: pluggy moves, iniconfig and everything else stay
    hermetic_cli("pin", "pluggy", "iniconfig", "--test", "pytest==8.3.5", "--python", "3.11", "--platform",
                 "manylinux2014_x86_64", "--upgrade", "pluggy", cwd=ws)
    after = _pins(ws)
    assert after["pluggy"][0] != pins["pluggy"][0]
    assert {k: v for k, v in after.items() if k != "pluggy"} == {k: v for k, v in pins.items() if k != "pluggy"}

    # the pins are targets the workspace builds (fetched by file name, checked by sha256)
    (ws / "BUILD.toml").write_text("[workspace]\n")
    proc = hermetic_cli("--cache-dir", str(tmp_path / "c"), "build", "//pins:iniconfig", cwd=ws)
    assert "iniconfig-2.1" in proc.stdout


def test_pin_refuses_what_pip_cannot_resolve(tmp_path):
    ws = write_workspace(tmp_path / "ws", {"BUILD.toml": "[workspace]\n"})
    proc = hermetic_cli("pin", "pytest==0.0.0.dev0-does-not-exist", "--python", "3.11", cwd=ws, check=False)
    assert proc.returncode == 3, proc.stderr
    assert "pip could not resolve" in proc.stderr and not (ws / "pins" / "BUILD.toml").exists()

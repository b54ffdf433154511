"""Golden files pin the action-key encoding: any change to what goes into a
key shows up as a reviewed diff of tests/cachekeys/*.expected."""

import json
from pathlib import Path

import pytest

from hermetic._execution import Entry, action_key
from hermetic.model import Action, Artifact, Label, Platform, Toolchain

GOLDEN = Path(__file__).parent / "cachekeys"

TC = Toolchain("cc", {"cc": "/usr/bin/gcc"}, {"sha256:gcc": "ab" * 32, "version:cc": "gcc 12.2.0"})
OWNER = Label("pkg", "t")
INPUTS = {"src/pkg/a.c": Entry("11" * 32, 10), "out/pkg/dep/include": Entry("22" * 32, 99, tree=True)}

CASES = {
    "run": Action("run", OWNER, "CcCompile", [Artifact("src/pkg/a.c"), Artifact("out/pkg/dep/include", True)],
                  [Artifact("out/pkg/t/a.o", owner=OWNER)],
                  {"argv": ["/usr/bin/gcc", "-c", {"in": "src/pkg/a.c"}, "-o", {"out": "a.o"}], "env": {}},
                  [TC], 1, Platform("linux", "x86_64", "glibc")),
    "fetch": Action("fetch", OWNER, "Fetch", [], [Artifact("out/pkg/t/x.tar.gz", owner=OWNER)],
                    {"sha256": "33" * 32, "urls": ["https://example.invalid/x.tar.gz"], "mirrors": [],
                     "size": None, "name": "x.tar.gz"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_key_encoding_is_pinned(name):
    action = CASES[name]
    inputs = INPUTS if action.kind == "run" else {}
    key, material = action_key(action, inputs, {"name": "bwrap", "enforces": ["no-network"]} if
                               action.kind == "run" else None, 1767225600 if action.kind == "run" else None)
    got = json.dumps({"key": key, "material": material}, indent=1, sort_keys=True) + "\n"
    expected = (GOLDEN / f"{name}.expected").read_text()
    assert got == expected, f"action key encoding changed; if intended, update {name}.expected"


def test_key_ignores_mnemonic_and_changes_with_inputs():
    a = CASES["run"]
    prof = {"name": "bwrap"}
    k1, _ = action_key(a, INPUTS, prof, 0)
    import attrs

    k2, _ = action_key(attrs.evolve(a, mnemonic="Other"), INPUTS, prof, 0)
    k3, _ = action_key(a, {**INPUTS, "src/pkg/a.c": Entry("12" * 32, 10)}, prof, 0)
    k4, _ = action_key(a, INPUTS, {"name": "none"}, 0)
    k5, _ = action_key(a, INPUTS, prof, 1)
    assert k1 == k2
    assert len({k1, k3, k4, k5}) == 4

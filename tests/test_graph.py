"""Graph analyses on networkx (the critical path, cycle reports, the query
language) and graphlib on the no-op path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hermetic._graph import ActionGraph, critical_path
from hermetic._session import Session
from hermetic.errors import CycleError
from hermetic.model import Action, Artifact, Label
from hermetic.testing import write_workspace


def _action(name: str, reads: list[str]) -> Action:
    return Action(kind="write", owner=Label.parse(f"//:{name}"), mnemonic="W",
                  inputs=tuple(Artifact(f"out/{r}/f") for r in reads), outputs=(Artifact(f"out/{name}/f"),),
                  params={"content": name})


@pytest.mark.parametrize(("seconds", "expected", "total"), [
    pytest.param({"a": 1, "b": 5, "c": 2, "d": 1}, ["a", "b", "d"], 7.0, id="through-b"),
    pytest.param({"a": 1, "b": 1, "c": 9, "d": 1}, ["a", "c", "d"], 11.0, id="through-c"),
    pytest.param({"a": 0, "b": 0, "c": 0, "d": 0, "e": 3}, ["e"], 3.0, id="lone-action"),
])
def test_critical_path_is_the_longest_chain_of_durations(seconds, expected, total):
    acts = [_action("a", []), _action("b", ["a"]), _action("c", ["a"]), _action("d", ["b", "c"]),
            _action("e", [])]
    graph = ActionGraph(acts)
    order = graph.closure([o for a in acts for o in a.outputs])
    ids = {a.owner.name: a.id for a in acts}
    path, got = critical_path(order, graph.deps, {ids[n]: float(s) for n, s in seconds.items()})
    assert [a.owner.name for a in path] == expected
    assert got == total


def test_a_cycle_error_names_the_whole_cycle(tmp_path):
    ws = write_workspace(tmp_path / "ws", {"BUILD.toml": """
        [workspace]
        [a]
        rule = "filegroup"
        srcs = [":b"]
        [b]
        rule = "filegroup"
        srcs = [":c"]
        [c]
        rule = "filegroup"
        srcs = [":a"]
        [d]
        rule = "filegroup"
        srcs = [":a"]
    """})
    s = Session(ws, cache_dir=tmp_path / "cache")
    with pytest.raises(CycleError) as err:
        s.analyze(s.parse_labels(["//:d"]))
    assert str(err.value) == "dependency cycle: //:a -> //:b -> //:c -> //:a"
    assert err.value.reason == "cycle"


CHAIN = """
    [workspace]
    [slow]
    rule = "genrule"
    srcs = ["a.txt"]
    outs = ["slow.txt"]
    cmd = "sleep 0.6; cat $SRCS > $OUT/slow.txt"
    [fast]
    rule = "genrule"
    srcs = ["a.txt"]
    outs = ["fast.txt"]
    cmd = "cat $SRCS > $OUT/fast.txt"
    [top]
    rule = "genrule"
    srcs = [":slow", ":fast"]
    outs = ["top.txt"]
    cmd = "cat $SRCS > $OUT/top.txt"
"""


def _hermetic(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hermetic", "--cache-dir", str(ws.parent / "cache"), *args],
                          cwd=ws, capture_output=True, text=True, check=False)


def test_why_critical_path_after_a_build_and_networkx_stays_off_the_no_op_path(tmp_path):
    ws = write_workspace(tmp_path / "ws", {"BUILD.toml": CHAIN, "a.txt": "a\n"})
    built = _hermetic(ws, "build", "//:top", "--sandbox", "none", "--explain")
    assert built.returncode == 0, built.stderr
    assert "critical path: 2 actions" in built.stdout
    proc = _hermetic(ws, "why", "//:top", "--critical-path", "--json")
    assert proc.returncode == 0, proc.stderr
    cp = json.loads(proc.stdout)
    assert [a["action"] for a in cp["actions"]] == ["Genrule //:slow", "Genrule //:top"]
    assert cp["actions"][0]["seconds"] >= 0.6  # the sleep, measured
    assert cp["seconds"] == pytest.approx(sum(a["seconds"] for a in cp["actions"]), abs=0.002)
    # a no-op build orders actions with graphlib: networkx is never imported
    probe = ("import sys; from hermetic import cli; code = cli.main(['--cache-dir', sys.argv[1], 'build', "
             "'//:top', '--sandbox', 'none']); print(code, 'networkx' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe, str(ws.parent / "cache")], cwd=ws, capture_output=True,
                          text=True, check=False, env={**os.environ})
    assert done.stdout.split()[-2:] == ["0", "False"], done.stderr

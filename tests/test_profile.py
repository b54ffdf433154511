"""`hermetic build --profile FILE` writes a Chrome trace (one row per slot,
each action's phases inside its span); `hermetic profile FILE` reads it back:
the time by phase, the critical path, an SVG timeline."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import hermetic_cli
from hermetic.testing import write_workspace

pytestmark = [pytest.mark.linux, pytest.mark.bwrap]

BUILD = """
[workspace]
source_date_epoch = 1767225600

["//:slow"]
rule = "genrule"
srcs = ["hello.txt"]
outs = ["slow.txt"]
cmd = "sleep 1.2; tr a-z A-Z < $SRCS > $OUT/slow.txt"

["//:quick"]
rule = "genrule"
srcs = ["hello.txt"]
outs = ["quick.txt"]
cmd = "rev < $SRCS > $OUT/quick.txt"

["//:both"]
rule = "genrule"
srcs = [":slow", ":quick"]
outs = ["both.txt"]
cmd = "cat $SRCS > $OUT/both.txt"
"""


def _build(tmp_path: Path, name: str) -> tuple[Path, dict]:
    ws = tmp_path / "ws"
    if not ws.exists():
        write_workspace(ws, {"BUILD.toml": BUILD, "hello.txt": "hello\n"})
    trace = tmp_path / f"{name}.json"
    hermetic_cli("--cache-dir", str(tmp_path / "cache"), "build", "//:both", "--profile", str(trace), cwd=ws)
    return trace, json.loads(trace.read_text())


def test_the_trace_has_a_span_per_action_with_its_phases_inside(tmp_path):
    _, data = _build(tmp_path, "cold")
    events = data["traceEvents"]
    actions = [e for e in events if e.get("cat") == "action"]
    assert sorted(e["args"]["id"] for e in actions) == ["//:both#Genrule", "//:quick#Genrule", "//:slow#Genrule"]
    assert {e["args"]["outcome"] for e in actions} == {"executed"}
    rows = {e["tid"] for e in events if e.get("name") == "thread_name"}
    assert {e["tid"] for e in actions} <= rows
    slow = next(e for e in actions if e["args"]["id"] == "//:slow#Genrule")
    assert slow["dur"] >= 1_200_000  # microseconds: at least its sleep
    both = next(e for e in actions if e["args"]["id"] == "//:both#Genrule")
    assert sorted(both["args"]["deps"]) == ["//:quick#Genrule", "//:slow#Genrule"]
    phases = [e for e in events if e.get("cat") == "phase"]
    assert {"key", "cache lookup", "stage inputs", "sandbox", "hash outputs"} <= {p["name"] for p in phases}
    for p in phases:  # every phase lies inside an action's span on its row
        assert any(a["tid"] == p["tid"] and a["ts"] <= p["ts"] and p["ts"] + p["dur"] <= a["ts"] + a["dur"]
                   for a in actions), p
    sandbox = [p for p in phases if p["name"] == "sandbox" and p["tid"] == slow["tid"]
               and slow["ts"] <= p["ts"] <= slow["ts"] + slow["dur"]]
    assert sandbox and sandbox[0]["dur"] >= 1_200_000


def test_profile_names_the_critical_path_and_draws_it(tmp_path):
    trace, _ = _build(tmp_path, "cold")
    text = hermetic_cli("profile", str(trace), cwd=tmp_path).stdout
    path = text.split("critical path")[1].split("the ")[0]
    assert "//:slow" in path and "//:both" in path and "//:quick" not in path, text
    assert "time by phase" in text and "sandbox" in text
    svg = tmp_path / "timeline.svg"
    hermetic_cli("profile", str(trace), "--format", "svg", "-o", str(svg), cwd=tmp_path)
    root = ET.parse(svg).getroot()
    titles = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}title")]
    for name in ("//:slow", "//:quick", "//:both"):
        assert any(t.startswith(f"Genrule {name}:") for t in titles), titles
    # a cached rebuild: every action served by the store, and it says so
    _, again = _build(tmp_path, "warm")
    assert {e["args"]["outcome"] for e in again["traceEvents"] if e.get("cat") == "action"} == {"cache"}


def test_a_file_that_is_not_a_trace_is_refused_by_name(tmp_path):
    bad = tmp_path / "events.jsonl"
    bad.write_text('{"not": "a trace"}\n')
    proc = hermetic_cli("profile", str(bad), cwd=tmp_path, check=False)
    assert proc.returncode != 0 and str(bad) in proc.stderr and "--profile" in proc.stderr

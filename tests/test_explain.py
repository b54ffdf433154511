"""Knowing why it rebuilt and watching it build (issue 7): `hermetic why`,
`build --explain`, the progress display, the event log, query/aquery and
graph pictures, on small genrule workspaces."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import build_counts
from hermetic import cli
from hermetic._history import compare, describe
from hermetic.testing import write_workspace

CHAIN = """
    [workspace]
    [gen]
    rule = "genrule"
    srcs = ["a.c"]
    outs = ["a.o"]
    env_inherit = ["GREETING"]
    cmd = "cat $SRCS > $OUT/a.o; echo ${GREETING:-none} >> $OUT/a.o"
    [link]
    rule = "genrule"
    srcs = [":gen"]
    outs = ["a.so"]
    cmd = "cat $SRCS > $OUT/a.so"
    [other]
    rule = "genrule"
    srcs = ["b.c"]
    outs = ["b.o"]
    cmd = "cat $SRCS > $OUT/b.o"
    [all]
    rule = "filegroup"
    srcs = [":link", ":other"]
"""


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return write_workspace(tmp_path / "ws", {"BUILD.toml": CHAIN, "a.c": "int a;\n", "b.c": "int b;\n"})


def run(ws: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command, as a user runs it (not on a terminal)."""
    full = {k: v for k, v in os.environ.items() if k != "GREETING"} | (env or {})
    return subprocess.run([sys.executable, "-m", "hermetic", "--cache-dir", str(ws.parent / "cache"), *args],
                          cwd=ws, capture_output=True, text=True, env=full, check=False)


def why(ws: Path, target: str = "//:all") -> dict[str, dict]:
    proc = run(ws, "why", target, "--json")
    assert proc.returncode == 0, proc.stderr
    return {a["id"]: a for a in json.loads(proc.stdout)["actions"]}


def ran(report: dict[str, dict]) -> set[str]:
    return {i for i, a in report.items() if a["outcome"] == "executed"}


def test_why_names_the_edited_file_for_exactly_the_actions_that_reran(ws):
    assert run(ws, "build", "//:all", "--sandbox", "none").returncode == 0
    (ws / "a.c").write_text("int a2;\n")
    proc = run(ws, "build", "//:all", "--sandbox", "none")
    executed = set(re.findall(r"done +Genrule (//:\w+)", proc.stderr))
    assert executed == {"//:gen", "//:link"}
    report = why(ws)
    assert ran(report) == {"//:gen#Genrule", "//:link#Genrule"}
    direct = report["//:gen#Genrule"]["reasons"]
    assert [(r["type"], r["path"]) for r in direct] == [("input", "src/a.c")]
    assert direct[0]["old"]["hash"] != direct[0]["new"]["hash"]
    link = report["//:link#Genrule"]["reasons"]
    assert link[0]["path"] == "out/gen/a.o" and link[0]["producer"] == "Genrule //:gen"
    assert [c["path"] for c in link[0]["because"]] == ["src/a.c"]  # traced back to the edit
    text = run(ws, "why", "//:all").stdout
    assert "ran Genrule //:link" in text and "<- source file a.c changed: sha256" in text
    assert "Genrule //:other" not in text


def test_why_names_an_environment_variable(ws):
    assert run(ws, "build", "//:all", "--sandbox", "none", env={"GREETING": "hello"}).returncode == 0
    proc = run(ws, "build", "--explain", "//:all", "--sandbox", "none", env={"GREETING": "bye"})
    assert "because: environment variable GREETING changed: 'hello' -> 'bye'" in proc.stderr
    report = why(ws)
    assert ran(report) == {"//:gen#Genrule", "//:link#Genrule"}
    assert report["//:gen#Genrule"]["reasons"] == [{"type": "env", "name": "GREETING", "old": "hello",
                                                     "new": "bye"}]
    assert report["//:link#Genrule"]["reasons"][0]["because"] == report["//:gen#Genrule"]["reasons"]


def test_why_after_nothing_changed_says_everything_was_cached(ws):
    run(ws, "build", "//:all", "--sandbox", "none")
    run(ws, "build", "//:all", "--sandbox", "none")
    out = run(ws, "why", "//:all").stdout
    assert "everything was cached: all 3 actions came from the cache in their last build" in out
    assert not ran(why(ws))


def test_why_before_the_first_build_and_after_an_edit_not_yet_built(ws):
    assert "never built: Genrule //:gen" in run(ws, "why", "//:all").stdout
    run(ws, "build", "//:all", "--sandbox", "none")
    (ws / "b.c").write_text("int b2;\n")
    out = run(ws, "why", "//:all").stdout
    assert "edited since the last build" in out and "source file b.c changed" in out


def test_why_when_the_result_was_evicted(ws):
    run(ws, "build", "//:all", "--sandbox", "none")
    shutil.rmtree(ws.parent / "cache" / "ac")
    run(ws, "build", "//:all", "--sandbox", "none")
    reasons = {r["type"] for a in why(ws).values() for r in a["reasons"]}
    assert reasons == {"not-cached"}


def test_compare_names_arguments_toolchains_and_sandbox():
    old = {"inputs": {}, "params": {"argv": ["cc", "-O2"], "env": {}},
           "toolchains": {"cc": {"fingerprint": "a" * 64, "identity": {"gcc": "12.2"}, "tools": {}}},
           "sandbox": {"name": "bwrap", "version": "0.8.0"}, "platform": "linux-x86_64"}
    new = {"inputs": {}, "params": {"argv": ["cc", "-O3"], "env": {}},
           "toolchains": {"cc": {"fingerprint": "b" * 64, "identity": {"gcc": "12.3"}, "tools": {}}},
           "sandbox": {"name": "bwrap", "version": "0.9.0"}, "platform": "linux-x86_64"}
    lines = [describe(c) for c in compare(old, new)]
    assert lines == ["command line changed: argument 1: '-O2' -> '-O3'",
                     "toolchain cc changed identity (aaaaaaaaaaaa -> bbbbbbbbbbbb): identity gcc: '12.2' -> '12.3'",
                     "sandbox profile changed: version: '0.8.0' -> '0.9.0'"]


# -- progress and the event log --------------------------------------------------


def test_plain_lines_under_ci_and_an_event_log_that_sums(ws, tmp_path):
    log = tmp_path / "events.jsonl"
    run(ws, "build", "//:all", "--sandbox", "none")
    (ws / "a.c").write_text("int a3;\n")
    proc = run(ws, "build", "//:all", "--sandbox", "none", "--event-log", str(log), env={"CI": "true"})
    assert "\x1b[" not in proc.stderr  # no terminal control codes
    assert re.search(r"^\[\d/3\] done   Genrule //:gen \(\d+\.\ds\)$", proc.stderr, re.M)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "build-started" and kinds[-1] == "build-finished"
    finished = [e for e in events if e["event"] == "action-finished"]
    end = events[-1]
    assert len(finished) == end["total"] == 3
    assert sum(e["status"] == "executed" for e in finished) == end["executed"] == 2
    assert sum(e["cache"] == "hit" for e in finished) == end["cached"] == 1
    started = [e for e in events if e["event"] == "action-started"]
    assert {e["action"] for e in started} == {e["action"] for e in finished if e["status"] == "executed"}
    assert all(e["key"] and len(e["key"]) == 64 and e["bytes"] > 0 for e in finished)
    assert build_counts(proc.stderr) == (3, 2, 1, 0)


def test_live_display_on_a_terminal(ws):
    """Under a pseudo-terminal the live panel shows the running action and
    done/total; finished actions scroll above it."""
    import pty

    (ws / "BUILD.toml").write_text((ws / "BUILD.toml").read_text().replace(
        'cmd = "cat $SRCS > $OUT/b.o"', 'cmd = "sleep 2; cat $SRCS > $OUT/b.o"'))
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"TERM": "xterm-256color", "COLUMNS": "120"}
    proc = subprocess.Popen([sys.executable, "-m", "hermetic", "--cache-dir", str(ws.parent / "cache"), "build",
                             "//:all", "--sandbox", "none"], cwd=ws, stdin=follower, stdout=follower,
                            stderr=follower, env=env, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=60) == 0
    os.close(leader)
    screen = b"".join(chunks).decode(errors="replace")
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert "\x1b[" in screen  # a terminal display, not plain lines
    assert re.search(r"hermetic \[\d/3\] \d executed, \d cached, 1 running", plain)
    assert re.search(r"Genrule\s+//:other\s+\d+s", plain)  # the running action, its mnemonic and elapsed
    assert "done   Genrule //:gen" in plain and build_counts(plain)[:2] == (3, 3)


# -- query, aquery, graph -----------------------------------------------------------


def q(ws: Path, *args: str) -> list[str]:
    proc = run(ws, "query", *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("\n")[:-1]


def test_query_language(ws):
    assert q(ws, "deps(//:all)") == ["//:all", "//:gen", "//:link", "//:other"]
    assert q(ws, "deps(//:all, 1)") == ["//:all", "//:link", "//:other"]
    assert q(ws, "rdeps(//..., //:gen)") == ["//:all", "//:gen", "//:link"]
    assert q(ws, "rdeps(//:gen) - //:gen") == ["//:all", "//:link"]
    assert q(ws, "somepath(//:all, //:gen)") == ["//:all", "//:link", "//:gen"]
    assert q(ws, "somepath(//:other, //:gen)") == []
    assert q(ws, "allpaths(//:all, //:gen)") == ["//:all", "//:gen", "//:link"]
    assert q(ws, "kind(filegroup, //...)") == ["//:all"]
    assert q(ws, "kind('^gen', deps(//:all)) ^ filter(o, //...)") == ["//:other"]
    assert q(ws, "attr(outs, 'a\\.so', //...)") == ["//:link"]
    assert q(ws, "--output", "label_kind", "//:gen + //:all") == ["filegroup rule //:all", "genrule rule //:gen"]
    assert q(ws, "deps", "//:link") == ["//:gen"]  # the older spelling


@pytest.mark.parametrize("expr,message,hint", [
    ("deps(//:gne)", 'at column 6: no target "//:gne"', 'did you mean "//:gen"?'),
    ("dpes(//:all)", "unknown function 'dpes'", 'did you mean "deps"?'),
    ("deps(//:all", "unexpected end", "grammar"),
    ("deps(//:all, x)", "depth must be a number", "grammar"),
])
def test_query_errors(ws, expr, message, hint):
    proc = run(ws, "query", expr)
    assert proc.returncode == cli.ExitCode.BAD_INPUT
    assert proc.stderr.startswith("error[bad-query]: ") and message in proc.stderr
    assert re.search(r"^hint: .*" + re.escape(hint), proc.stderr, re.M) and "Traceback" not in proc.stderr


def test_aquery_shows_commands_env_inputs_and_keys(ws):
    run(ws, "build", "//:all", "--sandbox", "none", env={"GREETING": "hi"})
    acts = json.loads(run(ws, "aquery", "//:link", "--output", "json", "--sandbox", "none",
                          env={"GREETING": "hi"}).stdout)
    assert [a["id"] for a in acts] == ["//:gen#Genrule", "//:link#Genrule"]
    gen, link = acts
    assert gen["env"] == {"GREETING": "hi"} and gen["status"] == "cached" and len(gen["key"]) == 64
    assert gen["command"].startswith("/bin/sh -c ") and "$OUT/a.o" in gen["command"]
    assert gen["inputs"][0]["path"] == "src/a.c" and len(gen["inputs"][0]["hash"]) == 64
    assert link["key"] == why(ws)["//:link#Genrule"]["key"]  # the key the build used
    # a changed variable: gen would run, and link's key cannot be known before it does
    text = run(ws, "aquery", "//:link", "--sandbox", "none", env={"GREETING": "other"}).stdout
    assert "not in the cache: the next build runs it" in text
    assert "key:        not known yet: it depends on outputs of Genrule //:gen" in text
    assert "env:        GREETING=other" in text


@pytest.mark.skipif(shutil.which("dot") is None and not os.environ.get("CI"),
                    reason="needs Graphviz (scripts/setup.sh installs it; under CI a missing dot fails)")
def test_graph_pictures_coloured_by_the_last_build(ws, tmp_path):
    run(ws, "build", "//:all", "--sandbox", "none")
    (ws / "b.c").write_text("int b4;\n")
    run(ws, "build", "//:all", "--sandbox", "none")
    dot = run(ws, "graph", "//:all").stdout
    assert re.search(r'"//:other#Genrule" \[.*fillcolor="#f4a259"', dot)  # executed
    assert re.search(r'"//:gen#Genrule" \[.*fillcolor="#a6cee3"', dot)  # from the cache
    svg = tmp_path / "g.svg"
    assert run(ws, "graph", "//:all", "--format", "svg", "-o", str(svg)).returncode == 0
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "//:other" in text and "#f4a259" in text
    png = tmp_path / "t.png"
    assert run(ws, "graph", "--targets", "//:all", "--format", "png", "-o", str(png)).returncode == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(run(ws, "graph", "//:all", "--format", "json").stdout)
    assert {a["id"]: a["last_build"] for a in data["actions"]} == {
        "//:gen#Genrule": "cached", "//:link#Genrule": "cached", "//:other#Genrule": "executed"}


# -- errors ------------------------------------------------------------------------------


def test_errors_have_a_reason_a_place_and_a_hint_and_no_traceback(ws):
    (ws / "BUILD.toml").write_text(CHAIN + '\n[bad]\nrule = "genrule"\nsrcs = [":gne"]\nouts = ["x"]\n'
                                   'cmd = "true"\nmnemnic = "X"\n')
    proc = run(ws, "build", "//:bad")
    assert proc.returncode == cli.ExitCode.BAD_INPUT
    err = proc.stderr
    assert 'error[missing-dependency]: BUILD.toml:25: unknown dependency "//:gne"' in err
    assert 'hint: did you mean "//:gen"?' in err
    assert 'error[unknown-attribute]: BUILD.toml:28: target //:bad: rule "genrule" has no attribute "mnemnic"' in err
    assert 'hint: did you mean "mnemonic"?' in err
    assert "Traceback" not in err
    debug = run(ws, "--debug", "build", "//:bad").stderr
    assert "Traceback" in debug  # --debug shows where it was raised


def test_a_failed_action_names_the_action_and_why_it_ran(ws):
    run(ws, "build", "//:all", "--sandbox", "none")
    (ws / "BUILD.toml").write_text(CHAIN.replace('cmd = "cat $SRCS > $OUT/a.so"', 'cmd = "exit 3"'))
    proc = run(ws, "build", "//:all", "--sandbox", "none")
    assert proc.returncode == cli.ExitCode.BUILD_FAILED
    assert "error[build-failed]" in proc.stderr and "action Genrule //:link failed: exit code 3" in proc.stderr
    assert "hint: " in proc.stderr and "Traceback" not in proc.stderr
    text = run(ws, "why", "//:all").stdout
    assert "FAILED Genrule //:link" in text and "command line changed" in text


def test_an_internal_error_is_reported_as_a_bug_without_a_traceback(monkeypatch, capsys, ws):
    def boom(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli, "_query", boom)
    cache = ws.parent / "crash-cache"
    assert cli.main(["-C", str(ws), "--cache-dir", str(cache), "query", "//..."]) == 70
    err = capsys.readouterr().err
    assert err.startswith("error[internal]: ZeroDivisionError: division by zero at test_explain.py:")
    assert "Traceback" not in err and "rerun with --debug" in err
    # the whole traceback is one file away, under the cache the command used, named in the message
    saved = [p for p in (cache / "crash").iterdir()]
    assert len(saved) == 1 and str(saved[0]) in err
    text = saved[0].read_text()
    assert "Traceback" in text and "ZeroDivisionError: division by zero" in text and "in boom" in text


def test_gc_keeps_only_the_ingredients_why_still_needs(ws):
    keys = []
    for text in ("int a1;\n", "int a2;\n", "int a3;\n"):
        (ws / "a.c").write_text(text)
        run(ws, "build", "//:all", "--sandbox", "none")
        keys.append(why(ws)["//:gen#Genrule"]["key"])
    from hermetic._history import History

    def explained() -> list[bool]:
        h = History(ws.parent / "cache")
        return [h.ingredients_of(k) is not None for k in keys]

    assert explained() == [True, True, True]
    assert run(ws, "cache", "gc", "--max-size", "0").returncode == 0
    assert explained() == [False, True, True]
    assert why(ws)["//:gen#Genrule"]["reasons"][0]["path"] == "src/a.c"  # still explained


def test_reasons_are_a_closed_set_each_with_a_hint_and_each_used():
    """Statically: every reason code written at a raise site in hermetic, its
    recipes and plugins is a member of errors.Reason; every member has a kind
    and a hint, and is raised somewhere (the table has no dead entries)."""
    import ast

    from hermetic import errors

    root = Path(__file__).resolve().parent.parent
    used: set[str] = set()
    for cls in vars(errors).values():  # class defaults count as raised where the class is raised
        if isinstance(cls, type) and issubclass(cls, errors.HermeticError):
            used.add(cls.DEFAULT_REASON.value)
    unknown = []
    for f in [*root.glob("hermetic/*.py"), *root.glob("recipes/**/*.py"), *root.glob("plugins/*.py")]:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "reason" and isinstance(node.value, ast.Constant):
                used.add(node.value.value)
                if node.value.value not in {r.value for r in errors.Reason}:
                    unknown.append(f"{f.relative_to(root)}:{node.value.lineno}: reason={node.value.value!r}")
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Reason":
                used.add(errors.Reason[node.attr].value)
    assert unknown == []
    assert set(errors.REASONS) == set(errors.Reason)
    assert all(hint.strip() for _, hint in errors.REASONS.values())
    assert sorted({r.value for r in errors.Reason} - used) == []


def test_an_unknown_reason_is_refused_at_the_raise_site():
    from hermetic import errors

    with pytest.raises(ValueError):
        errors.HermeticError("x", reason="no-such-reason")
    err = errors.FetchError("cannot fetch x")
    assert err.reason == "fetch-failed" and err.hint == errors.REASONS[errors.Reason.FETCH_FAILED][1]

"""Issue 18: re-checking an unchanged workspace costs next to nothing, and
is never wrong when something changed. Each way the analysis cache, the
action log or the build record could be stale has a test: a BUILD file, a
source, a glob's match set, a client environment variable, a toolchain,
the plugins' code, the output directory, the provenance signer."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hermetic import _incremental
from hermetic._session import Session
from hermetic.hookspecs import hookimpl
from hermetic.model import Toolchain
from hermetic.testing import write_workspace

BUILD = """
[workspace]
source_date_epoch = 1767225600

["//:gen"]
rule = "genrule"
srcs = ["a.txt"]
outs = ["gen.txt"]
cmd = "tr a-z A-Z < $SRCS > $OUT/gen.txt"

["//:same"]
rule = "genrule"
srcs = [":gen"]
outs = ["same.txt"]
cmd = "wc -c < $SRCS > $OUT/same.txt"

["//:glob"]
rule = "genrule"
srcs = ["d/*.txt"]
outs = ["glob.txt"]
cmd = "cat $SRCS > $OUT/glob.txt"

["//:env"]
rule = "genrule"
outs = ["env.txt"]
cmd = "echo ${GREETING:-unset} > $OUT/env.txt"
env_inherit = ["GREETING"]

["//:all"]
rule = "genrule"
srcs = [":same", ":glob", ":env"]
outs = ["all.txt"]
cmd = "cat $SRCS > $OUT/all.txt"
"""


@pytest.fixture
def ws(tmp_path):
    return write_workspace(tmp_path / "ws", {"BUILD.toml": BUILD, "a.txt": "abc\n", "d/1.txt": "one\n"})


def build(ws: Path, *, plugins=(), **kw):
    s = Session(ws, cache_dir=ws.parent / "cache", sandbox="none", plugins=plugins, **kw)
    r = s.build(s.parse_labels(["//:all"]))
    return s, r


def out(ws: Path) -> str:
    return (ws / "hermetic-out/all/all.txt").read_text()


def no_analysis(monkeypatch):
    """Fail if anything analyses or loads an analysis (the no-op path must not)."""
    def boom(*a, **k):
        raise AssertionError("analysed on the no-op path")

    monkeypatch.setattr("hermetic._session.Analyzer.run", boom)
    monkeypatch.setattr(_incremental.AnalysisCache, "load", boom)


def test_an_unchanged_build_is_a_no_op_without_analysis(ws, monkeypatch):
    _, first = build(ws)
    assert first.stats.executed == 5
    with monkeypatch.context() as m:
        no_analysis(m)
        _, again = build(ws)
    assert (again.stats.executed, again.stats.cached) == (0, 5)
    assert again.outputs and all(p.exists() for ps in again.outputs.values() for p in ps)
    # a touched source with the same bytes is still unchanged
    os.utime(ws / "a.txt", (time.time() + 5, time.time() + 5))
    with monkeypatch.context() as m:
        no_analysis(m)
        assert build(ws)[1].stats.executed == 0


def test_an_edited_source_reruns_exactly_what_it_changes(ws, monkeypatch):
    build(ws)
    (ws / "a.txt").write_text("xyz\n")  # same length: //:same's output does not change (early cutoff)
    s, _r, seen = scheduled_build(ws)
    ran = {a for a, where in s.executor.where.items() if where == "local"}
    assert ran == {"//:gen#Genrule", "//:same#Genrule"}
    assert seen == ran  # //:all, downstream of the edit but not of a changed output, is not even visited
    assert "XYZ" not in out(ws) and out(ws).startswith("4\n")
    (ws / "a.txt").write_text("longer\n")
    s, _r = build(ws)
    assert {a for a, w in s.executor.where.items() if w == "local"} == {"//:gen#Genrule", "//:same#Genrule",
                                                                         "//:all#Genrule"}
    assert out(ws).startswith("7\n")


def test_an_edited_build_file_is_analysed_again(ws):
    build(ws)
    (ws / "BUILD.toml").write_text(BUILD.replace("echo ${GREETING:-unset}", "echo changed-${GREETING:-unset}"))
    s, _r = build(ws)
    assert {a for a, w in s.executor.where.items() if w == "local"} == {"//:env#Genrule", "//:all#Genrule"}
    assert "changed-unset" in out(ws)


def test_a_new_file_matching_a_glob_is_seen(ws):
    build(ws)
    (ws / "d" / "2.txt").write_text("two\n")
    _s, r = build(ws)
    assert "two" in out(ws) and r.stats.executed == 2
    (ws / "d" / "2.txt").unlink()
    assert "two" not in (build(ws), out(ws))[1]


def test_a_client_environment_variable_a_rule_reads(ws, monkeypatch):
    build(ws)
    monkeypatch.setenv("GREETING", "hello")
    _s, r = build(ws)
    assert "hello" in out(ws) and r.stats.executed == 2
    monkeypatch.delenv("GREETING")
    assert "unset" in (build(ws), out(ws))[1]


class FakeToolchain:
    """A toolchain plugin whose identity can change between builds (a host
    compiler upgraded): the same object, so the code signature is the same."""

    def __init__(self) -> None:
        self.version = "1.0"

    @hookimpl
    def hermetic_toolchain(self, kind, target, host, cache_dir):
        if kind == "fake":
            return Toolchain("fake", {"fake": "/bin/true"}, {"fake": self.version})
        return None


def test_a_changed_toolchain_is_resolved_again(ws):
    (ws / "BUILD.toml").write_text(BUILD.replace('env_inherit = ["GREETING"]',
                                                 'env_inherit = ["GREETING"]\ntoolchains = ["fake"]'))
    tc = FakeToolchain()
    build(ws, plugins=[tc])
    assert build(ws, plugins=[tc])[1].stats.executed == 0
    tc.version = "2.0"
    s, _r = build(ws, plugins=[tc])
    assert {a for a, w in s.executor.where.items() if w == "local"} == {"//:env#Genrule"}


def test_edited_plugin_code_is_analysed_again(ws, tmp_path, monkeypatch):
    """A rule's code changes (a plugin upgraded or edited): its file's
    signature is in the stamp, so the old analysis is not used."""
    import importlib.util
    import sys

    plugin = tmp_path / "plug" / "myrule.py"
    plugin.parent.mkdir()
    source = ('from hermetic.hookspecs import hookimpl\nfrom hermetic.rules import DefaultInfo, attr\n'
              'def impl(ctx):\n    o = ctx.declare_output("r.txt")\n'
              '    ctx.actions.run(["/bin/sh", "-c", "echo WORD > $OUT/r.txt"], outputs=[o], mnemonic="My")\n'
              '    return [DefaultInfo((o,))]\n'
              '@hookimpl\ndef hermetic_register_rules(registry):\n    registry.rule("myrule")(impl)\n')
    plugin.write_text(source.replace("WORD", "first"))
    (ws / "BUILD.toml").write_text(BUILD.replace('srcs = [":same", ":glob", ":env"]',
                                                 'srcs = [":same", ":glob", ":env", ":mine"]')
                                   + '\n["//:mine"]\nrule = "myrule"\n')

    def load():
        spec = importlib.util.spec_from_file_location("myrule", plugin)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["myrule"] = mod
        spec.loader.exec_module(mod)
        return mod

    monkeypatch.delitem(sys.modules, "myrule", raising=False)
    build(ws, plugins=[load()])
    assert "first" in out(ws)
    plugin.write_text(source.replace("WORD", "second"))
    os.utime(plugin, (time.time() + 5, time.time() + 5))  # a new mtime even within the clock's granularity
    build(ws, plugins=[load()])
    assert "second" in out(ws)


def test_a_damaged_output_directory_is_delivered_again(ws, monkeypatch):
    build(ws)
    (ws / "hermetic-out/all/all.txt").write_text("tampered\n")
    _s, r = build(ws)
    assert r.stats.executed == 0 and "tampered" not in out(ws)
    (ws / "hermetic-out/all/all.txt").unlink()
    build(ws)
    assert (ws / "hermetic-out/all/all.txt").exists()


def test_platform_and_output_dir_are_their_own_records(ws, tmp_path):
    build(ws)
    other = tmp_path / "elsewhere"
    _s, r = build(ws, output_dir=other)
    assert r.stats.executed == 0 and (other / "all/all.txt").read_text() == out(ws)


def test_gc_forgets_the_logs_and_records(ws):
    from hermetic._cache import Store

    build(ws)
    root = ws.parent / "cache"
    assert list((root / "incremental" / "builds").iterdir()) and list((root / "incremental" / "log").iterdir())
    Store(root).gc(0)
    assert not (root / "incremental" / "builds").exists() and not (root / "incremental" / "log").exists()
    _s, r = build(ws)
    assert r.stats.executed == 5  # every blob was collected: everything runs again, nothing wrongly trusted


def test_incremental_off_gives_the_same_result(ws):
    build(ws)
    first = out(ws)
    (ws / "a.txt").write_text("qq\n")
    build(ws, incremental=False)
    plain = out(ws)
    (ws / "a.txt").write_text("abc\n")
    build(ws)
    assert out(ws) == first and plain != first


def scheduled_build(ws: Path, **kw):
    """A build, and the ids of the actions its scheduler saw."""
    from hermetic.events import ActionFinished

    seen: list = []
    s, r = build(ws, report=seen.append, **kw)
    return s, r, {e.action.id for e in seen if isinstance(e, ActionFinished)}


def test_a_leaf_edit_schedules_only_what_is_downstream(ws):
    build(ws)
    (ws / "d" / "1.txt").write_text("uno\n")
    s, r, seen = scheduled_build(ws)
    assert seen == {"//:glob#Genrule", "//:all#Genrule"}  # //:gen, //:same, //:env: the record's, unvisited
    assert (r.stats.executed, r.stats.cached) == (2, 3) and "uno" in out(ws)
    # every source is still recorded (and known to provenance), not only those the scheduled actions read
    rec = s._build_record(s.parse_labels(["//:all"])).read()
    assert {Path(h).name for h in rec["sources"]} == {"a.txt", "1.txt"}
    assert set(rec["keys"]) == {f"//:{n}#Genrule" for n in ("gen", "same", "glob", "env", "all")}


def test_a_missing_blob_an_edit_needs_is_made_again(ws):
    from hermetic._cache import Store

    s, _r = build(ws)
    same = s.executor.artifacts.entries["out/same/same.txt"]
    Store(ws.parent / "cache").blob_path(same.hash).unlink()  # //:all reads it once d/1.txt changes
    (ws / "d" / "1.txt").write_text("uno\n")
    s, _r, seen = scheduled_build(ws)
    assert seen == {"//:same#Genrule", "//:glob#Genrule", "//:all#Genrule"}
    assert s.executor.where["//:same#Genrule"] == "local" and out(ws).startswith("4\nuno\n")


def test_a_log_newer_than_the_record_is_not_trusted(ws, tmp_path):
    """Two output directories share one analysis and so one action log:
    what another build logged since this record is not this record's."""
    build(ws)
    first = out(ws)
    (ws / "a.txt").write_text("changed\n")
    build(ws, output_dir=tmp_path / "other")  # logs //:gen with the new a.txt
    (ws / "a.txt").write_text("abc\n")
    (ws / "d" / "1.txt").write_text("one\n")  # touched, same bytes: the record of hermetic-out still holds
    (ws / "hermetic-out/all/all.txt").unlink()  # ... but not its delivery: the no-op check says build
    _s, r, seen = scheduled_build(ws)
    assert "//:gen#Genrule" in seen and out(ws) == first and r.stats.executed == 0


def test_a_source_made_executable_is_a_change(ws, monkeypatch):
    build(ws)
    (ws / "a.txt").chmod(0o755)  # the same bytes, another key: the executable bit is an input
    s, _r = build(ws)
    assert s.executor is not None and s.executor.where["//:gen#Genrule"] == "local"


CHAIN = """
[workspace]
source_date_epoch = 1767225600

["//:a"]
rule = "genrule"
srcs = ["s1.txt"]
outs = ["a.txt"]
cmd = "sleep 0.5; cat $SRCS > $OUT/a.txt"

["//:c"]
rule = "genrule"
srcs = [":a"]
outs = ["c.txt"]
cmd = "cat $SRCS > $OUT/c.txt"

["//:b"]
rule = "genrule"
srcs = [":c", "s2.txt"]
outs = ["b.txt"]
cmd = "cat $SRCS > $OUT/b.txt"
"""


@pytest.mark.parametrize("at_most", [64, 0], ids=["activated-as-it-goes", "whole-downstream"])
def test_a_scheduled_action_waits_for_a_change_upstream_of_it(tmp_path, monkeypatch, at_most):
    """//:a and //:b both read an edited source; //:b also reads //:a's
    change through //:c, which nothing scheduled at first. //:b must wait
    for //:a (and //:c, once //:a's output is seen to differ): had it run
    beside //:a it would have been built from the old //:c."""
    monkeypatch.setattr(_incremental, "ACTIVATE_AT_MOST", at_most)
    ws = write_workspace(tmp_path / "ws", {"BUILD.toml": CHAIN, "s1.txt": "one\n", "s2.txt": "two\n"})

    def chain():
        s = Session(ws, cache_dir=tmp_path / "cache", sandbox="none", jobs=2)
        return s, s.build(s.parse_labels(["//:b"]))

    chain()
    (ws / "s1.txt").write_text("uno\n")
    (ws / "s2.txt").write_text("dos\n")
    s, r = chain()
    assert (ws / "hermetic-out/b/b.txt").read_text() == "uno\ndos\n"
    assert r.stats.executed == 3 and s.executor.where["//:b#Genrule"] == "local"


def test_large_records_are_written_in_pieces_and_read_back_whole(tmp_path):
    """The action log and last-build.json of a large graph are encoded a
    chunk at a time (a 100,000-action record in one piece was the cold
    build's peak memory); what is read back is what was written."""
    import json

    from hermetic._session import _write_json_streamed

    log = _incremental.ActionLog(tmp_path, "stamp", {"sandbox": "x"}, 1)
    n = 2 * _incremental.LOG_CHUNK + 17
    for i in range(n):
        log.add(f"//p:a{i}#Gen", i.to_bytes(16, "big"), f"{i:064x}", 100 + i,
                {f"out/p/a{i}/o.txt": _incremental.Entry(f"{i:064x}", i)})
    log.save()
    again = _incremental.ActionLog(tmp_path, "stamp", {"sandbox": "x"}, 1)
    assert again.entries == log.entries and len(again.entries) == n
    key, size, outputs = again.lookup("//p:a7#Gen", (7).to_bytes(16, "big"))
    assert (key, size, outputs) == (f"{7:064x}", 107, {"out/p/a7/o.txt": _incremental.Entry(f"{7:064x}", 7)})

    for data in ({"time": 1.5, "keys": {f"//a:{i}#X": f"{i:064x}" for i in range(12_001)}, "targets": ["//:t"]},
                 {"keys": {}}, {"quote": 'a"b', "keys": {'x"y': "z"}}):
        path = tmp_path / "last-build.json"
        _write_json_streamed(path, data, "keys")
        assert json.loads(path.read_text()) == data

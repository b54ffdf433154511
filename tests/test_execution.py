"""The executor with a fake sandbox: caching, early cutoff, failures,
keep-going, outputs restored from the store. No process is spawned."""

from __future__ import annotations

from pathlib import Path

import os
import pytest

from hermetic._session import Session
from hermetic.errors import BuildFailed
from hermetic.hookspecs import hookimpl
from hermetic.model import Label, Output
from hermetic.rules import DefaultInfo, RuleRegistry, attr
from hermetic.testing import FakeSandbox, write_workspace


def _write(argv, env, work):
    """fake `write OUT TEXT [INPUT...]`: OUT = TEXT + contents of inputs"""
    data = argv[2] + "".join(Path(p).read_text() for p in argv[3:])
    Path(argv[1]).write_text(data)
    return 0


def _fail(argv, env, work):
    (work / ".." / "log").write_text("line 1\nsomething broke\n")
    return 3


class Plugin:
    def __init__(self) -> None:
        self.sandbox = FakeSandbox({"write": _write, "fail": _fail, "nothing": lambda a, e, w: 0})

    @hookimpl
    def hermetic_register_rules(self, registry: RuleRegistry) -> None:
        def gen(ctx):
            out = ctx.declare_output(ctx.label.name + ".txt")
            deps = [f for d in ctx.attr.deps for f in d.files]
            prog = ctx.attr.program
            ctx.actions.run([prog, Output(out.name), ctx.attr.text, *deps], outputs=[out], mnemonic="Gen")
            return [DefaultInfo((out,))]

        registry.rule("gen", attrs={"text": attr.string(), "deps": attr.label_list(),
                                    "program": attr.string(default="write")})(gen)

    @hookimpl
    def hermetic_sandbox(self, host, config):
        return self.sandbox


@pytest.fixture
def ws(tmp_path):
    return write_workspace(tmp_path / "ws", {
        "BUILD.toml": """
            [workspace]
            [a]
            rule = "gen"
            text = "A"
            [b]
            rule = "gen"
            text = "B"
            deps = [":a"]
            [c]
            rule = "gen"
            text = "C"
            [top]
            rule = "gen"
            text = "T"
            deps = [":b", ":c"]
        """})


def session(ws, tmp_path, plugin, **kw):
    return Session(ws, cache_dir=tmp_path / "cache", plugins=[plugin], **kw)


def test_build_then_everything_cached(ws, tmp_path):
    p = Plugin()
    r = session(ws, tmp_path, p).build([Label("", "top")])
    assert (r.stats.executed, r.stats.cached) == (4, 0)
    assert r.outputs[Label("", "top")][0].read_text() == "TBAC"
    r2 = session(ws, tmp_path, p).build([Label("", "top")])
    assert (r2.stats.executed, r2.stats.cached) == (0, 4)


def test_outputs_restored_from_store(ws, tmp_path):
    p = Plugin()
    r = session(ws, tmp_path, p).build([Label("", "top")])
    out = r.outputs[Label("", "top")][0]
    out.unlink()
    runs = len(p.sandbox.runs)
    r2 = session(ws, tmp_path, p).build([Label("", "top")])
    assert r2.stats.executed == 0 and len(p.sandbox.runs) == runs
    assert out.read_text() == "TBAC"


def test_change_reruns_only_dependants(ws, tmp_path):
    p = Plugin()
    session(ws, tmp_path, p).build([Label("", "top")])
    build = ws / "BUILD.toml"
    build.write_text(build.read_text().replace('text = "C"', 'text = "C2"'))
    r = session(ws, tmp_path, p).build([Label("", "top")])
    assert (r.stats.executed, r.stats.cached) == (2, 2)  # c and top; a and b cached
    ran = [run[0] for run in p.sandbox.runs[-2:]]
    assert ran == ["write", "write"]


def test_failure_names_action_command_and_output(ws, tmp_path):
    build = ws / "BUILD.toml"
    build.write_text(build.read_text() + '[bad]\nrule = "gen"\ntext = "x"\nprogram = "fail"\n')
    with pytest.raises(BuildFailed) as e:
        session(ws, tmp_path, Plugin()).build([Label("", "bad")])
    (failure,) = e.value.failures
    assert failure.reason == "action-failed"
    assert failure.action == "Gen //:bad"
    assert failure.exit_code == 3
    assert "fail " in failure.command
    assert "something broke" in failure.output_tail


def test_missing_output_is_an_error(ws, tmp_path):
    build = ws / "BUILD.toml"
    build.write_text(build.read_text() + '[lazy]\nrule = "gen"\nprogram = "nothing"\n')
    with pytest.raises(BuildFailed) as e:
        session(ws, tmp_path, Plugin()).build([Label("", "lazy")])
    assert e.value.failures[0].reason == "missing-output"
    assert not list((tmp_path / "cache" / "ac").rglob("*")) or all(
        p.is_dir() for p in (tmp_path / "cache" / "ac").rglob("*"))


def test_keep_going_builds_what_it_can(ws, tmp_path):
    build = ws / "BUILD.toml"
    build.write_text(build.read_text() + '[bad]\nrule = "gen"\nprogram = "fail"\n'
                     '[after]\nrule = "gen"\ndeps = [":bad"]\n')
    with pytest.raises(BuildFailed) as e:
        session(ws, tmp_path, Plugin(), keep_going=True, jobs=1).build(
            [Label("", "after"), Label("", "top")])
    assert "4 ran" in str(e.value) and "1 not started" in str(e.value)


def test_corrupt_action_result_is_discarded_and_rebuilt(ws, tmp_path):
    p = Plugin()
    session(ws, tmp_path, p).build([Label("", "a")])
    (entry,) = [f for f in (tmp_path / "cache" / "ac").rglob("*") if f.is_file()]
    entry.write_text(entry.read_text().replace('"hash":"', '"hash":"0', 1))
    r = session(ws, tmp_path, p).build([Label("", "a")])
    assert r.stats.executed == 1


def test_corrupt_blob_is_detected_on_restore(ws, tmp_path):
    p = Plugin()
    r = session(ws, tmp_path, p).build([Label("", "a")])
    out = r.outputs[Label("", "a")][0]
    blobs = [f for f in (tmp_path / "cache" / "cas").rglob("*") if f.is_file() and f.read_bytes() == b"A"]
    blobs[0].chmod(0o644)
    blobs[0].write_bytes(b"Z")  # same size, different bytes
    out.unlink()
    r = session(ws, tmp_path, p).build([Label("", "a")])  # detected, dropped, rebuilt
    assert r.stats.executed == 1 and out.read_text() == "A"


def test_two_builds_share_one_store(ws, tmp_path):
    import threading

    results, errors = [], []

    def one():
        try:
            results.append(session(ws, tmp_path, Plugin()).build([Label("", "top")], materialize=False))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(r.stats.executed + r.stats.cached for r in results) == 12
    r = session(ws, tmp_path, Plugin()).build([Label("", "top")])
    assert r.stats.executed == 0 and r.outputs[Label("", "top")][0].read_text() == "TBAC"


def test_a_delivered_tree_is_left_alone_when_it_is_already_in_place(tmp_path):
    """A no-op build does not rewrite a tree output (a wheel's dist/); one
    that differs in any file, mode or extra file is put back exactly."""
    from hermetic._artifacts import Artifacts
    from hermetic._cache import Store
    from hermetic._keys import Entry
    from hermetic.model import Artifact

    store = Store(tmp_path / "cache")
    src = tmp_path / "made"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a\n")
    (src / "sub" / "b.sh").write_text("echo b\n")
    (src / "sub" / "b.sh").chmod(0o755)
    d = store.put_tree(src)
    arts = Artifacts(store, {})
    art = Artifact("out/x/dist", is_tree=True)
    arts.record({art.path: Entry(d.hash, d.size, True)}, "key")
    dest = tmp_path / "hermetic-out" / "dist"
    assert arts.deliver(art, dest) is True
    assert arts.deliver(art, dest) is False  # in place: untouched
    (dest / "sub" / "b.sh").chmod(0o644)
    assert arts.deliver(art, dest) is True and os.access(dest / "sub" / "b.sh", os.X_OK)
    (dest / "extra").write_text("x")
    assert arts.deliver(art, dest) is True and not (dest / "extra").exists()
    (dest / "a.txt").write_text("A\n")
    assert arts.deliver(art, dest) is True and (dest / "a.txt").read_text() == "a\n"

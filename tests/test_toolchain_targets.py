"""A toolchain built by a target (a hermetic interpreter, ``cpython``): the
actions that run it are keyed by its tree's digest, so they rerun exactly
when the interpreter's bytes change, and stay cached when a rebuild of it
makes the same bytes. No process is spawned (a fake sandbox)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hermetic._session import Session
from hermetic.conventions import PythonConventions
from hermetic.hookspecs import hookimpl
from hermetic.model import Label, Output, Platform, Toolchain
from hermetic.providers import PinnedWheel, PyInterpreterInfo, PyWheelInfo, wheel_fits
from hermetic.rules import DefaultInfo, RuleRegistry, attr
from hermetic.testing import FakeSandbox, write_workspace


def _tree(argv, env, work):
    """fake `tree OUT TEXT`: a directory holding bin/python with TEXT"""
    d = Path(argv[1]) / "bin"
    d.mkdir(parents=True)
    (d / "python").write_text(argv[2])
    return 0


def _use(argv, env, work):
    Path(argv[1]).write_text("used\n")
    return 0


class Plugin:
    def __init__(self) -> None:
        self.sandbox = FakeSandbox({"tree": _tree, "use": _use})

    @hookimpl
    def hermetic_register_rules(self, registry: RuleRegistry) -> None:
        def interp(ctx):
            tree = ctx.declare_output("python", tree=True)
            ctx.actions.run(["tree", Output("python"), ctx.attr.text], outputs=[tree], mnemonic="Interp")
            tc = Toolchain("python", {"python": "bin/python"}, {"built-by": str(ctx.label)}, tree=tree,
                           info=PythonConventions(version="3.13.5", tag="cp313"), hermetic=True)
            return [PyInterpreterInfo(tc, "3.13.5", ctx.platform), DefaultInfo((tree,))]

        def use(ctx):
            out = ctx.declare_output("out.txt")
            tc = ctx.attr.python[PyInterpreterInfo].toolchain
            ctx.actions.run(["use", Output("out.txt")], outputs=[out], mnemonic="Use", toolchains=[tc])
            return [DefaultInfo((out,))]

        registry.rule("interp", attrs={"text": attr.string()})(interp)
        registry.rule("use", attrs={"python": attr.label(providers=[PyInterpreterInfo])})(use)

    @hookimpl
    def hermetic_sandbox(self, host, config):
        return self.sandbox


@pytest.fixture
def ws(tmp_path):
    return write_workspace(tmp_path / "ws", {"BUILD.toml": """
        [workspace]
        [py]
        rule = "interp"
        text = "one"
        [app]
        rule = "use"
        python = ":py"
    """})


def _build(ws, tmp_path, plugin):
    return Session(ws, cache_dir=tmp_path / "cache", plugins=[plugin]).build([Label("", "app")])


def _edit(ws, old, new):
    f = ws / "BUILD.toml"
    f.write_text(f.read_text().replace(old, new))


def test_actions_rerun_exactly_when_the_interpreters_bytes_change(ws, tmp_path):
    p = Plugin()
    r = _build(ws, tmp_path, p)
    assert (r.stats.executed, r.stats.cached) == (2, 0)
    assert (_build(ws, tmp_path, p).stats.executed) == 0
    _edit(ws, 'text = "one"', 'text = "two"')  # other bytes: the interpreter and what it ran
    r = _build(ws, tmp_path, p)
    assert (r.stats.executed, r.stats.cached) == (2, 0)
    assert [run[0] for run in p.sandbox.runs[-2:]] == ["tree", "use"]


def test_a_rebuilt_interpreter_with_the_same_bytes_is_a_cache_hit_downstream(ws, tmp_path):
    p = Plugin()
    _build(ws, tmp_path, p)
    # the interpreter's action changes (its argv), its output does not: early cutoff
    p.sandbox.programs["tree"] = lambda argv, env, work: _tree([argv[0], argv[1], "one"], env, work)
    _edit(ws, 'text = "one"', 'text = "uno"')
    r = _build(ws, tmp_path, p)
    assert r.stats.executed == 1  # the interpreter ran again; what uses it did not
    assert p.sandbox.runs[-1][0] == "tree"


def test_wheel_fits_and_the_most_specific_pin_wins():
    linux = Platform.parse("linux-x86_64-manylinux2014")
    musl = Platform.parse("linux-x86_64-musl")
    assert wheel_fits("cffi-2.0.0-cp39-cp39-manylinux2014_x86_64.whl", "cp39", linux)
    assert not wheel_fits("cffi-2.0.0-cp39-cp39-manylinux2014_x86_64.whl", "cp311", linux)
    assert not wheel_fits("cffi-2.0.0-cp39-cp39-manylinux2014_x86_64.whl", "cp39", musl)
    assert wheel_fits("cffi-2.0.0-cp39-cp39-musllinux_1_1_x86_64.whl", "cp39", musl)
    assert wheel_fits("x-1-cp310-abi3-manylinux_2_17_x86_64.whl", "cp313", linux)
    assert not wheel_fits("x-1-cp310-abi3-manylinux_2_17_x86_64.whl", "cp39", linux)  # abi3 of 3.10: not on 3.9
    assert not wheel_fits("x-1-cp311-cp311-manylinux_2_17_aarch64.whl", "cp311", linux)
    art = Label("", "x")
    from hermetic.model import Artifact

    def pin(name):
        return PinnedWheel(name, Artifact(f"out/x/{name}", False, art), Artifact(f"out/x/{name}.d", True, art))

    info = PyWheelInfo("x", "1", pin("x-1-py3-none-any.whl").wheel, pin("x-1-py3-none-any.whl").unpacked,
                       (pin("x-1-py3-none-any.whl"), pin("x-1-cp310-abi3-manylinux_2_17_x86_64.whl"),
                        pin("x-1-cp312-cp312-manylinux_2_17_x86_64.whl")))
    assert info.for_python("cp312", linux).filename == "x-1-cp312-cp312-manylinux_2_17_x86_64.whl"
    assert info.for_python("cp311", linux).filename == "x-1-cp310-abi3-manylinux_2_17_x86_64.whl"
    assert info.for_python("cp39", linux).filename == "x-1-py3-none-any.whl"

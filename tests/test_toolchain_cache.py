"""Issue 18, 4: what a toolchain compiles for itself on first use (zig's
libc stubs and compiler-rt) is made once per machine by its ToolchainCache
script and shown read-only to every action using the toolchain; it is in no
key, is made again when it is gone, and a failure to make it names it."""

from __future__ import annotations

import shutil

import pytest

from hermetic._session import Session
from hermetic.errors import BuildFailed
from hermetic.hookspecs import hookimpl
from hermetic.model import Label, Toolchain, ToolchainCache
from hermetic.testing import write_workspace

pytestmark = [pytest.mark.linux, pytest.mark.bwrap]

# each fill leaves a stamp no other fill can have (the nanosecond clock and the pid)
FILL = 'mkdir -p "$OUT/cache/sub"; echo "filled $(date +%s%N) $$" > "$OUT/cache/sub/stamp"'

# an action that uses the toolchain: it reads the cache and cannot change it
USE = ('test -n "$HERMETIC_TOOLCHAIN_SLOW_CACHE"; cat "$HERMETIC_TOOLCHAIN_SLOW_CACHE/sub/stamp" > $OUT/{name}.txt; '
       'if echo x 2>/dev/null > "$HERMETIC_TOOLCHAIN_SLOW_CACHE/sub/stamp"; then echo writable; exit 9; fi')


def _target(name: str) -> str:
    return (f'\n["//:{name}"]\nrule = "genrule"\nouts = ["{name}.txt"]\ntoolchains = ["slow"]\n'
            f"cmd = '{USE.format(name=name)}'\n")


class Slow:
    """A toolchain whose tools fill a cache on first use."""

    def __init__(self, script: str = FILL) -> None:
        self.script = script

    @hookimpl
    def hermetic_toolchain(self, kind, target, host, cache_dir):
        if kind == "slow":
            return Toolchain("slow", {"slow": "/bin/true"}, {"slow": "1.0"},
                             cache=ToolchainCache("t", self.script))
        return None


@pytest.fixture
def ws(tmp_path):
    return write_workspace(tmp_path / "ws", {"BUILD.toml": "[workspace]\nsource_date_epoch = 1767225600\n" +
                                             _target("a") + _target("b") + _target("c")})


def _build(ws, cache, targets, plugin):
    s = Session(ws, cache_dir=cache, plugins=[plugin], jobs=2)
    return s, s.build([Label("", t) for t in targets])


def _out(ws, name):
    return (ws / "hermetic-out" / name / f"{name}.txt").read_text()


def test_filled_once_shown_read_only_and_in_no_key(ws, tmp_path):
    cache = tmp_path / "cache"
    s, r = _build(ws, cache, ["a", "b"], Slow())
    assert r.stats.executed == 2
    stamp = _out(ws, "a")
    assert stamp.startswith("filled ") and _out(ws, "b") == stamp  # two actions at once, one fill
    records = list((cache / "toolchain-caches").iterdir())
    assert [p.name.endswith("-t") for p in records] == [True]

    # a later action on this machine: the same cache, not filled again
    _build(ws, cache, ["c"], Slow())
    assert _out(ws, "c") == stamp

    # another machine (the cache gone; as after `cache gc`): the actions are
    # cached, since no key holds the cache; the next one to run fills it anew
    shutil.rmtree(cache / "toolchain-caches")
    shutil.rmtree(cache / "trees")
    (ws / "BUILD.toml").write_text((ws / "BUILD.toml").read_text() + _target("d"))
    _s, r = _build(ws, cache, ["a", "b", "c", "d"], Slow())
    assert r.stats.executed == 1
    assert _out(ws, "d").startswith("filled ") and _out(ws, "d") != stamp

    # a record naming a tree the store no longer has is filled again too
    record = next((cache / "toolchain-caches").iterdir())
    record.write_text("0" * 64 + "/12\n")
    (ws / "BUILD.toml").write_text((ws / "BUILD.toml").read_text() + _target("e"))
    _build(ws, cache, ["e"], Slow())
    assert _out(ws, "e").startswith("filled ") and _out(ws, "e") not in (stamp, _out(ws, "d"))


def test_a_failing_fill_names_itself_and_records_nothing(ws, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(BuildFailed) as info:
        _build(ws, cache, ["a"], Slow(script="echo no compiler for this target >&2; exit 3"))
    text = str(info.value) + "".join(f"{f}\n{f.hint}\n" for f in getattr(info.value, "failures", []))
    assert "ToolchainCache //.toolchains:slow-cache-t" in text, text
    assert not any((cache / "toolchain-caches").glob("*-t"))
    assert not (ws / "hermetic-out" / "a" / "a.txt").exists()

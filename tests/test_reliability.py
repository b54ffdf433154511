"""Reliability: a build killed with SIGKILL at random points, concurrent
builds on one store, corruption in the store, a full disk, and hostile
BUILD files. Each test records what it tried (tests/reliability.py); the
run ends with a summary of attempts, failures detected and data lost."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import hermetic_cli
from hermetic._cache import Store
from hermetic.model import Digest
from hermetic.testing import write_workspace
from reliability import record

pytestmark = [pytest.mark.reliability, pytest.mark.linux]

BUILD = """
[workspace]
source_date_epoch = 1767225600

["//:seed"]
rule = "genrule"
srcs = ["seed.txt"]
outs = ["seed.bin"]
cmd = "for i in $(seq 1 400); do cat $SRCS; done > $OUT/seed.bin"
"""
for _n in range(6):
    BUILD += f"""
["//:part{_n}"]
rule = "genrule"
srcs = [":seed"]
outs = ["part{_n}.bin", "tree/a.bin", "tree/b.txt"]
cmd = "sleep 0.{_n + 1}; mkdir -p $OUT/tree; sha256sum $SRCS > $OUT/tree/b.txt; for i in 1 2 3 4 5 6 7 8; do cat $SRCS; done > $OUT/part{_n}.bin; cp $SRCS $OUT/tree/a.bin"
"""
BUILD += """
["//:all"]
rule = "genrule"
srcs = [":part0", ":part1", ":part2", ":part3", ":part4", ":part5"]
outs = ["all.sha256"]
cmd = "sha256sum $SRCS > $OUT/all.sha256"
"""


def _workspace(root: Path) -> Path:
    return write_workspace(root, {"BUILD.toml": BUILD, "seed.txt": "reliable bytes " * 200 + "\n"})


def audit(cache: Path) -> list[str]:
    """Every problem in a store: a blob whose bytes do not match its name, an
    action result that does not verify or names a missing blob."""
    problems = []
    store = Store(cache)
    for blob in store.cas.glob("*/*"):
        if hashlib.sha256(blob.read_bytes()).hexdigest() != blob.name:
            problems.append(f"blob {blob.name} does not match its contents")
    for entry in list(store.ac.glob("*/*")):
        raw = entry.read_bytes()
        if store.get_action(entry.name, deep=True) is None:
            problems.append(f"action result {entry.name} is partial or names missing blobs ({len(raw)} bytes)")
    return problems


def _build(ws: Path, cache: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return hermetic_cli("--cache-dir", str(cache), "build", "//:all", *args, cwd=ws, check=check)


def test_kill_9_at_random_points(tmp_path):
    ws = _workspace(tmp_path / "ws")
    cache = tmp_path / "cache"
    reference = tmp_path / "ref-cache"
    _build(ws, reference)
    expected = (ws / "hermetic-out/all/all.sha256").read_bytes()
    shutil.rmtree(ws / "hermetic-out")
    rng = random.Random(20261121)
    mid_build = 0
    for attempt in range(20):
        if attempt % 5 == 0:
            shutil.rmtree(cache, ignore_errors=True)  # also kill cold builds, not only nearly done ones
        proc = subprocess.Popen([sys.executable, "-m", "hermetic", "--cache-dir", str(cache), "build", "//:all"],
                                cwd=ws, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 1.2))
        if proc.poll() is None:
            mid_build += 1
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        problems = audit(cache)
        assert problems == [], f"attempt {attempt}: {problems}"
        out = ws / "hermetic-out/all/all.sha256"
        assert not out.exists() or out.read_bytes() == expected
    final = _build(ws, cache)
    assert (ws / "hermetic-out/all/all.sha256").read_bytes() == expected
    assert audit(cache) == []
    record("kill -9 during a build", attempts=20, killed_mid_build=mid_build, partial_entries=0,
           final_build="ok" if final.returncode == 0 else "failed")
    assert mid_build >= 10  # the kills really landed during builds


def test_three_builds_at_once_on_one_store(tmp_path):
    cache = tmp_path / "cache"
    workspaces = [_workspace(tmp_path / f"ws{i}") for i in range(3)]
    procs = [subprocess.Popen([sys.executable, "-m", "hermetic", "--cache-dir", str(cache), "build", "//:all"],
                              cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for ws in workspaces]
    for p in procs:
        _, err = p.communicate(timeout=120)  # a deadlock would time out here
        assert p.returncode == 0, err
    outs = {(ws / "hermetic-out/all/all.sha256").read_bytes() for ws in workspaces}
    assert len(outs) == 1
    assert audit(cache) == []
    record("concurrent builds on one store", attempts=3, differing_outputs=0, corrupt_entries=0, deadlocks=0)


def test_corrupted_blob_and_action_result_are_detected_and_rebuilt(tmp_path):
    ws = _workspace(tmp_path / "ws")
    cache = tmp_path / "cache"
    _build(ws, cache)
    good = (ws / "hermetic-out/all/all.sha256").read_bytes()
    store = Store(cache)
    detected = 0
    # 1. a blob's bytes rot (the delivered output's blob)
    blob = store.blob_path(hashlib.sha256(good).hexdigest())
    blob.chmod(0o644)
    blob.write_bytes(b"rotten" + good[6:])
    shutil.rmtree(ws / "hermetic-out")
    proc = _build(ws, cache)
    assert "1 executed" in proc.stderr
    assert (ws / "hermetic-out/all/all.sha256").read_bytes() == good
    detected += 1
    # 2. an action-cache entry is truncated
    entries = sorted(store.ac.glob("*/*"), key=lambda p: p.stat().st_size)
    victim = entries[-1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    proc = _build(ws, cache)
    assert "1 executed" in proc.stderr or "2 executed" in proc.stderr
    detected += 1
    # 3. an intermediate output rots, and an action that reads it runs
    keys = json.loads((cache / "last-build.json").read_text())["keys"]
    seed = store.get_action(keys["//:seed#Genrule"])["outputs"]["out/seed/seed.bin"]
    rotten = store.blob_path(Digest(seed["hash"], seed["size"]).hash)
    rotten.chmod(0o644)
    rotten.write_bytes(b"x" + rotten.read_bytes()[1:])
    store.drop_action(keys["//:part3#Genrule"])
    proc = _build(ws, cache, check=False)
    if proc.returncode != 0:  # detected while used as an input: the result was dropped; the next build recovers
        assert "corrupt" in proc.stderr
        proc = _build(ws, cache)
    assert (ws / "hermetic-out/all/all.sha256").read_bytes() == good
    detected += 1
    assert audit(cache) == []
    record("corruption in the local store", attempts=3, detected=detected, data_lost=0)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk_while_storing(tmp_path):
    ws = _workspace(tmp_path / "ws")
    full = tmp_path / "small"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(full)], check=True)
    try:
        proc = _build(ws, full / "cache", check=False)
        assert proc.returncode != 0
        assert "no space left on device" in proc.stderr.lower()
        assert "Traceback" not in proc.stderr
        assert "hint:" in proc.stderr
        assert audit(full / "cache") == []
        assert not (ws / "hermetic-out/all").exists()
    finally:
        subprocess.run(["umount", str(full)], check=True)
    record("full disk while writing the store", attempts=1, clear_error=1, partial_entries=0)


# -- hostile BUILD files ---------------------------------------------------------

_VALUES = st.one_of(st.integers(-5, 10**12), st.text(max_size=20), st.booleans(), st.lists(st.text(max_size=8),
                                                                                           max_size=3))
_KEYS = st.sampled_from(["rule", "srcs", "outs", "cmd", "deps", "platform", "env", "name", "x y", "//:a"])


def _toml_value(v: object) -> str:
    return json.dumps(v) if not isinstance(v, bool) else str(v).lower()


@st.composite
def build_files(draw: st.DrawFn) -> str:
    lines = []
    if draw(st.booleans()):
        lines.append("[workspace]")
        if draw(st.booleans()):
            lines.append(f"source_date_epoch = {_toml_value(draw(_VALUES))}")
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(["a", "b", "//:a", "//p:q", "bad name", "workspace.remote", ""]))
        lines.append(f'["{name}"]' if not name.startswith("workspace") else f"[{name}]")
        for _ in range(draw(st.integers(0, 4))):
            lines.append(f'"{draw(_KEYS)}" = {_toml_value(draw(_VALUES))}')
        if draw(st.booleans()):
            lines.append('rule = "genrule"')
    if draw(st.booleans()):
        lines.append(draw(st.text(alphabet='[]="\n abc=1{}#', max_size=30)))
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=build_files())
def test_malformed_build_files_never_traceback(tmp_path_factory, text):
    from hermetic._session import Session
    from hermetic.errors import HermeticError

    root = tmp_path_factory.mktemp("bf")
    (root / "BUILD.toml").write_text(text)
    if "[workspace]" not in text:
        (root / "BUILD.toml").write_text("[workspace]\n" + text)
    loaded = 0
    try:
        s = Session(root, cache_dir=root / "cache")
        s.analyze(s.parse_labels(["//:a"]))
        loaded = 1
    except HermeticError as exc:
        assert _located(exc), repr(exc)
    except ExceptionGroup as group:
        assert all(isinstance(e, HermeticError) for e in group.exceptions), group.exceptions
        assert all(_located(e) for e in group.exceptions), [str(e) for e in group.exceptions]
    # (an exception of any other kind fails the test: that would be a traceback for a user)
    record("malformed BUILD.toml (hypothesis)", attempts=1, hermetic_errors=1 - loaded, loaded_fine=loaded,
           tracebacks=0)


def _located(exc: Exception) -> bool:
    """Says where: a BUILD.toml file (and line), or the command line."""
    text = str(exc)
    return "BUILD.toml" in text or "(command line)" in text

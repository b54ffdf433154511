"""Reliability: a build killed with SIGKILL at random points, concurrent
builds on one store, corruption in the store, a full disk, and hostile
BUILD files. Each test records what it tried (tests/reliability.py); the
run ends with a summary of attempts, failures detected and data lost."""

from __future__ import annotations

import hashlib
import json
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

from conftest import build_counts, hermetic_cli
from hermetic._cache import Store
from hermetic.model import Digest
from hermetic.testing import write_workspace
from reliability import record, sabotaged

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
    partial: list[str] = []
    wrong_outputs = 0
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
        partial += [f"attempt {attempt}: {p}" for p in audit(cache)]
        out = ws / "hermetic-out/all/all.sha256"
        wrong_outputs += out.exists() and out.read_bytes() != expected
    final = _build(ws, cache, check=False)
    ok = final.returncode == 0 and (ws / "hermetic-out/all/all.sha256").read_bytes() == expected
    partial += [f"after the final build: {p}" for p in audit(cache)]
    record("kill -9 during a build", attempts=20, killed_mid_build=mid_build, partial_entries=len(partial),
           wrong_outputs=wrong_outputs, final_build="ok" if ok else "failed")
    assert partial == [] and wrong_outputs == 0 and ok, final.stderr
    assert mid_build >= 10  # the kills really landed during builds


def test_three_builds_at_once_on_one_store(tmp_path):
    cache = tmp_path / "cache"
    workspaces = [_workspace(tmp_path / f"ws{i}") for i in range(3)]
    procs = [subprocess.Popen([sys.executable, "-m", "hermetic", "--cache-dir", str(cache), "build", "//:all"],
                              cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for ws in workspaces]
    deadlocks, errors = 0, []
    for p in procs:
        try:
            _, err = p.communicate(timeout=120)  # a deadlock would time out here
        except subprocess.TimeoutExpired:
            deadlocks += 1
            p.kill()
            _, err = p.communicate()
        if p.returncode != 0:
            errors.append(err)
    outs = {(ws / "hermetic-out/all/all.sha256").read_bytes() for ws in workspaces
            if (ws / "hermetic-out/all/all.sha256").exists()}
    corrupt = audit(cache)
    record("concurrent builds on one store", attempts=3, failed_builds=len(errors),
           differing_outputs=max(0, len(outs) - 1), corrupt_entries=len(corrupt), deadlocks=deadlocks)
    assert errors == [] and deadlocks == 0
    assert len(outs) == 1 and corrupt == []


def test_corrupted_blob_and_action_result_are_detected_and_rebuilt(tmp_path):
    """Three kinds of damage; each case counts as detected when the build
    that meets it reruns exactly what the damage made unusable, and its data
    is lost if the delivered output ends up wrong."""
    ws = _workspace(tmp_path / "ws")
    cache = tmp_path / "cache"
    _build(ws, cache)
    out = ws / "hermetic-out/all/all.sha256"
    good = out.read_bytes()
    store = Store(cache)
    seen: dict[str, tuple[bool, bool]] = {}  # case -> (detected, output right)
    # 1. a blob's bytes rot (the delivered output's blob)
    blob = store.blob_path(hashlib.sha256(good).hexdigest())
    blob.chmod(0o644)
    blob.write_bytes(b"rotten" + good[6:])
    shutil.rmtree(ws / "hermetic-out")
    if sabotaged("corruption"):  # the damage is undone behind hermetic's back: nothing to detect
        blob.write_bytes(good)
    proc = _build(ws, cache)
    seen["rotten output blob"] = (build_counts(proc.stderr)[1] == 1, out.read_bytes() == good)
    # 2. an action-cache entry is truncated: the action it belongs to reruns (and, if its
    #    outputs come out the same, nothing after it)
    entries = sorted(store.ac.glob("*/*"), key=lambda p: p.stat().st_size)
    victim = entries[-1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    proc = _build(ws, cache)
    seen["truncated action result"] = (build_counts(proc.stderr)[1] == 1 and store.get_action(victim.name)
                                       is not None, out.read_bytes() == good)
    # 3. an intermediate output rots, and an action that reads it runs
    keys = json.loads((cache / "last-build.json").read_text())["keys"]
    seed = store.get_action(keys["//:seed#Genrule"])["outputs"]["out/seed/seed.bin"]
    rotten = store.blob_path(Digest(seed["hash"], seed["size"]).hash)
    rotten.chmod(0o644)
    rotten.write_bytes(b"x" + rotten.read_bytes()[1:])
    store.drop_action(keys["//:part3#Genrule"])
    proc = _build(ws, cache, check=False)
    detected = proc.returncode != 0 and "corrupt" in proc.stderr
    if proc.returncode != 0:  # detected while used as an input: the result was dropped; the next build recovers
        proc = _build(ws, cache)
    else:  # or the store noticed before running anything and rebuilt the seed first
        detected = build_counts(proc.stderr)[1] >= 2
    seen["rotten intermediate blob"] = (detected, out.read_bytes() == good)
    problems = audit(cache)
    record("corruption in the local store", attempts=len(seen), detected=sum(d for d, _ in seen.values()),
           data_lost=sum(not ok for _, ok in seen.values()), left_in_store=len(problems))
    assert seen == {case: (True, True) for case in seen}
    assert problems == []


@pytest.mark.root
def test_full_disk_while_storing(tmp_path):
    ws = _workspace(tmp_path / "ws")
    full = tmp_path / "small"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(full)], check=True)
    try:
        proc = _build(ws, full / "cache", check=False)
        clear = (proc.returncode != 0 and "no space left on device" in proc.stderr.lower()
                 and "Traceback" not in proc.stderr and "hint:" in proc.stderr)
        problems = audit(full / "cache")
        delivered = (ws / "hermetic-out/all").exists()
    finally:
        subprocess.run(["umount", str(full)], check=True)
    record("full disk while writing the store", attempts=1, clear_error=int(clear), partial_entries=len(problems),
           partial_outputs=int(delivered))
    assert clear, proc.stderr
    assert problems == [] and not delivered


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
    errors: list[BaseException] = []
    loaded = tracebacks = 0
    try:
        s = Session(root, cache_dir=root / "cache")
        s.analyze(s.parse_labels(["//:a"]))
        loaded = 1
    except HermeticError as exc:
        errors = [exc]
    except ExceptionGroup as group:
        errors = list(group.exceptions)
    except Exception as exc:  # what a user would see as a traceback
        errors, tracebacks = [exc], 1
    unlocated = [e for e in errors if not isinstance(e, HermeticError) or not _located(e)]
    record("malformed BUILD.toml (hypothesis)", attempts=1, hermetic_errors=len(errors) - tracebacks,
           loaded_fine=loaded, tracebacks=tracebacks, errors_without_place=len(unlocated))
    assert unlocated == [], [repr(e) for e in unlocated]


def _located(exc: Exception) -> bool:
    """Says where: a BUILD.toml file (and line), or the command line."""
    text = str(exc)
    return "BUILD.toml" in text or "(command line)" in text

"""`hermetic verify`: small real graphs (genrules in bubblewrap) whose
actions do or do not depend on the conditions verify varies."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from conftest import build_counts, hermetic_cli
from hermetic.testing import write_workspace

pytestmark = pytest.mark.linux

CLEAN = """
[workspace]
source_date_epoch = 1767225600

["//:upper"]
rule = "genrule"
srcs = ["hello.txt"]
outs = ["upper.txt"]
cmd = "tr a-z A-Z < $SRCS > $OUT/upper.txt"

["//:sorted"]
rule = "genrule"
srcs = [":upper", "a.txt", "b.txt", "c.txt"]
outs = ["listing.txt", "bundle.tar"]
cmd = "ls $IN/src | LC_ALL=C sort > $OUT/listing.txt; cd $IN/src && tar --sort=name --mtime=@$SOURCE_DATE_EPOCH --owner=0 --group=0 --numeric-owner --mode=go-w -cf $OUT/bundle.tar a.txt b.txt c.txt"
"""

# one target per varied condition, each writing only what that condition changes
LEAKS = {
    "clock": "date +%Y > $OUT/out.txt",
    "hostname": "hostname > $OUT/out.txt",
    "uid": "id -u > $OUT/out.txt",
    "umask": "umask > $OUT/out.txt",
    "tz": 'echo "$TZ" > $OUT/out.txt',
    "locale": 'echo "$LC_ALL" > $OUT/out.txt',
    "root": "pwd > $OUT/out.txt",
    "jobs": 'echo "$HERMETIC_JOBS" > $OUT/out.txt',
    "order": "ls -f $IN/src/many > $OUT/out.txt",
}
# 14 entries with . and ..: a shuffle that happens to keep the order is 1 in 14!
MANY = {f"many/f{i:02}.txt": f"{i}\n" for i in range(12)}


def _workspace(tmp_path: Path, extra: str = "") -> Path:
    ws = write_workspace(tmp_path / "ws", {"BUILD.toml": CLEAN + extra, "hello.txt": "hello\n", "a.txt": "a\n",
                                           "b.txt": "b\n", "c.txt": "c\n", **MANY})
    return ws


def _verify(ws: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict, str]:
    proc = hermetic_cli("--cache-dir", str(ws.parent / "cache"), "verify", *args, "--json", cwd=ws, check=False,
                        env=env)
    assert proc.returncode in (0, 5), proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_a_deterministic_graph_verifies(tmp_path):
    ws = _workspace(tmp_path)
    code, report, err = _verify(ws, "//:sorted")
    assert code == 0, err
    assert report["reproducible"] is True
    assert [(a["action"], a["status"]) for a in report["actions"]] == [
        ("//:upper#Genrule", "reproducible"), ("//:sorted#Genrule", "reproducible")]
    # every condition the issue names was varied on this host
    assert set(report["varied"]) == {"root", "uid", "gid", "umask", "timezone", "locale", "hostname",
                                     "clock_offset", "jobs", "shuffle_dirs"}, report["not_varied"]
    assert report["first_difference"] is None


def test_no_deps_rebuilds_only_the_named_targets_actions(tmp_path):
    """nix-build --check's scope: the named target's own actions are rebuilt;
    what it depends on is built (here: executed) but not rebuilt; a leaky
    dependency is therefore not caught, and a leaky named target is."""
    ws = _workspace(tmp_path, '\n["//:on-clock"]\nrule = "genrule"\nsrcs = [":clock"]\nouts = ["o.txt"]\n'
                              'cmd = "cp $SRCS $OUT/o.txt"\n'
                              '\n["//:clock"]\nrule = "genrule"\nouts = ["out.txt"]\ncmd = "date +%Y > $OUT/out.txt"\n')
    code, report, err = _verify(ws, "//:sorted", "--no-deps")
    assert code == 0, err
    assert [(a["action"], a["status"]) for a in report["actions"]] == [("//:sorted#Genrule", "reproducible")]
    assert "//:upper" in err  # built for the reference build all the same
    code, report, _ = _verify(ws, "//:on-clock", "--no-deps")
    assert code == 0 and [a["action"] for a in report["actions"]] == ["//:on-clock#Genrule"]
    code, report, _ = _verify(ws, "//:on-clock", "//:clock", "--no-deps")
    assert code == 5 and report["first_difference"]["action"].startswith("//:clock")
    proc = hermetic_cli("--cache-dir", str(ws.parent / "cache"), "verify", "--no-deps", "//:on-clock",
                        "//:upper", cwd=ws, check=False)
    assert proc.returncode == 0 and "2 actions" in proc.stdout


def test_each_varied_condition_reaches_the_action(tmp_path):
    extra = "".join(f'\n["//:{name}"]\nrule = "genrule"\nsrcs = {json.dumps(sorted(MANY))}\nouts = ["out.txt"]\n'
                    f"cmd = {json.dumps(cmd)}\n" for name, cmd in LEAKS.items())
    extra += '\n["//:all"]\nrule = "genrule"\nsrcs = [' + ", ".join(f'":{n}"' for n in LEAKS) + ']\n' \
             'outs = ["all.txt"]\ncmd = "cat $SRCS > $OUT/all.txt"\n'
    ws = _workspace(tmp_path, extra)
    code, report, _ = _verify(ws, "//:all", "--diff-tool", "builtin")
    assert code == 5
    status = {a["owner"]: a["status"] for a in report["actions"]}
    # each leaky action is named; the one consuming them all is rebuilt from
    # the first build's inputs, so it is not blamed
    assert status == {**{f"//:{n}": "differs" for n in LEAKS}, "//:all": "reproducible"}


def test_embedded_time_is_named_with_the_diff(tmp_path):
    extra = """
["//:stamp"]
rule = "genrule"
srcs = [":sorted"]
outs = ["stamp.txt", "copy.txt"]
mnemonic = "Stamp"
cmd = "cp $IN/out/sorted/listing.txt $OUT/copy.txt; echo \\"built at $(date -u +%Y-%m-%dT%H:%M:%S.%N)\\" > $OUT/stamp.txt"

["//:release"]
rule = "genrule"
srcs = [":stamp"]
outs = ["release.txt"]
cmd = "cat $SRCS > $OUT/release.txt"
"""
    ws = _workspace(tmp_path, extra)
    # as on a fresh machine: diffoscope only in hermetic's venv (scripts/setup.sh puts it there), which is
    # not on PATH because the README runs .venv/bin/hermetic without activating it
    beside = Path(sys.executable).parent / "diffoscope"
    assert beside.exists(), "scripts/setup.sh installs diffoscope into hermetic's venv (the verify extra)"
    path = [d for d in os.environ["PATH"].split(os.pathsep) if d and not (Path(d) / "diffoscope").exists()]
    env = {**os.environ, "PATH": os.pathsep.join(path)}
    for tool in ("builtin", "diffoscope"):
        code, report, err = _verify(ws, "//:release", "--diff-tool", tool, env=env)
        assert code == 5
        bad = [a for a in report["actions"] if a["status"] != "reproducible"]
        assert [(a["action"], a["status"]) for a in bad] == [("//:stamp#Stamp", "differs")]
        outs = {o["path"]: o["same"] for o in bad[0]["outputs"]}
        assert outs == {"out/stamp/stamp.txt": False, "out/stamp/copy.txt": True}
        first = report["first_difference"]
        assert first["action"] == "//:stamp#Stamp" and first["tool"] == tool
        assert [f["path"] for f in first["files"]] == ["out/stamp/stamp.txt"]
        assert "-built at" in first["diff"] and "+built at" in first["diff"], first["diff"]

    # the human report says the same
    proc = hermetic_cli("--cache-dir", str(ws.parent / "cache"), "verify", "//:release", cwd=ws, check=False)
    assert proc.returncode == 5
    assert "NOT reproducible" in proc.stdout and "first difference (in graph order): //:stamp#Stamp" in proc.stdout
    assert "DIFFERS       Stamp //:stamp" in proc.stderr


def test_no_vary_keeps_a_condition(tmp_path):
    extra = f'\n["//:order"]\nrule = "genrule"\nsrcs = {json.dumps(sorted(MANY))}\nouts = ["out.txt"]\n' \
            f'cmd = {json.dumps(LEAKS["order"])}\n'
    ws = _workspace(tmp_path, extra)
    assert _verify(ws, "//:order")[0] == 5
    code, report, _ = _verify(ws, "//:order", "--no-vary", "shuffle_dirs")
    assert code == 0
    assert report["not_varied"] == {"shuffle_dirs": "disabled (--no-vary)"}


def test_against_cache_challenges_what_the_cache_holds(tmp_path):
    ws = _workspace(tmp_path)
    cache = ws.parent / "cache"
    hermetic_cli("--cache-dir", str(cache), "build", "//:sorted", cwd=ws)
    code, report, _ = _verify(ws, "//:sorted", "--against-cache")
    assert code == 0 and report["mode"] == "against-cache"
    assert {a["status"] for a in report["actions"]} == {"reproducible"}
    assert {a["reference"] for a in report["actions"]} == {"cache"}

    # another builder's result for //:upper, with different bytes, lands in the cache
    from hermetic._cache import Store

    store = Store(cache)
    key = report["actions"][0]["key"]
    result = store.get_action(key)
    forged = store.put_bytes(b"HELLO FROM ELSEWHERE\n")
    result["outputs"]["out/upper/upper.txt"].update(hash=forged.hash, size=forged.size)
    store.put_action(key, result)

    code, report, _ = _verify(ws, "//:sorted", "--against-cache", "--diff-tool", "builtin")
    assert code == 5
    # //:sorted's inputs are now the forged bytes: a key nobody built before
    assert [(a["action"], a["status"]) for a in report["actions"]] == [
        ("//:upper#Genrule", "differs"), ("//:sorted#Genrule", "not-cached")]
    assert "-HELLO FROM ELSEWHERE" in report["first_difference"]["diff"]


def test_against_cache_reports_actions_the_cache_did_not_have(tmp_path):
    ws = _workspace(tmp_path)
    code, report, _ = _verify(ws, "//:sorted", "--against-cache")
    assert code == 0
    assert {a["status"] for a in report["actions"]} == {"not-cached"}


def test_a_failing_rebuild_is_not_reproducible(tmp_path):
    extra = '\n["//:picky"]\nrule = "genrule"\nouts = ["out.txt"]\n' \
            'cmd = "test \\"$(hostname)\\" = hermetic; echo ok > $OUT/out.txt"\n'
    ws = _workspace(tmp_path, extra)
    code, report, _ = _verify(ws, "//:picky")
    assert code == 5
    (a,) = report["actions"]
    assert a["status"] == "failed" and "exit code 1" in a["error"]


def test_verify_leaves_the_cache_as_the_first_build_made_it(tmp_path):
    ws = _workspace(tmp_path, '\n["//:clock"]\nrule = "genrule"\nouts = ["out.txt"]\n'
                              f'cmd = {json.dumps(LEAKS["clock"])}\n')
    cache = ws.parent / "cache"
    hermetic_cli("--cache-dir", str(cache), "build", "//:clock", cwd=ws)
    first = (ws / "hermetic-out/clock/out.txt").read_text()
    assert _verify(ws, "//:clock")[0] == 5
    shutil.rmtree(ws / "hermetic-out")
    out = hermetic_cli("--cache-dir", str(cache), "build", "//:clock", cwd=ws)
    assert build_counts(out.stderr)[1] == 0
    assert (ws / "hermetic-out/clock/out.txt").read_text() == first


def test_bad_target_is_a_usage_error(tmp_path):
    ws = _workspace(tmp_path)
    proc = hermetic_cli("--cache-dir", str(tmp_path / "cache"), "verify", "//:nope", cwd=ws, check=False)
    assert proc.returncode == 3
    assert "//:nope" in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists(ws / "hermetic-out")

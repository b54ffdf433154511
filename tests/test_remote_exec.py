"""Remote execution against a real cluster: PostgreSQL + BuildGrid (its
Execution, Bots, CAS and action cache services) + hermetic workers, started
by scripts/remote_cluster.py and stopped by the PIDs it started."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    ALL_WHEELS,
    FLAGSHIP,
    REPO,
    build_counts,
    copy_store,
    copy_workspace,
    hermetic_cli,
)

from hermetic.testing import write_workspace

sys.path.insert(0, str(REPO / "scripts"))
from remote_cluster import Cluster, ExecutionServer

pytestmark = [pytest.mark.linux, pytest.mark.bwrap, pytest.mark.integration]

#: what the client does itself: pinned downloads, hermetic's own archive
#: extractor, generated files (no command runs for them)
CLIENT_KINDS = {"fetch", "extract", "write"}


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _finished(path: Path) -> list[dict]:
    return [e for e in _events(path) if e["event"] == "action-finished"]


def _kinds(ws: Path, target: str, store: Path) -> dict[str, str]:
    acts = json.loads(hermetic_cli("--cache-dir", str(store), "aquery", target, "--output", "json", cwd=ws).stdout)
    return {a["id"]: a["kind"] for a in acts}


def _sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _wheel(ws: Path, out: str = "hermetic-out") -> Path:
    (w,) = (ws / out).glob("linux-x86_64-manylinux2014/wheel/hermetic-openssl/dist/*.whl")
    return w


def _remote(cluster: Cluster) -> list[str]:
    return ["--remote-executor", cluster.url, "--remote-instance", cluster.instance]


def _wait_for(what: str, check, timeout: float, proc: subprocess.Popen | None = None) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the build ended ({proc.returncode}) before {what}:\n{err[-4000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path / "cluster", workers=2, keepalive=10).start()
    yield c
    c.stop()


def test_flagship_on_the_cluster_with_a_worker_killed(tmp_path, warm_store, cluster):
    """An empty local store: every command runs on a worker; the worker
    building OpenSSL is killed with SIGKILL halfway and the action runs on
    the other; the wheel is bit-identical to the local build's; a second
    client with an empty store then executes nothing."""
    ws = copy_workspace(tmp_path / "ws")
    store, log = tmp_path / "client-1", tmp_path / "events.jsonl"
    build = subprocess.Popen([sys.executable, "-m", "hermetic", "--cache-dir", str(store), "build", FLAGSHIP,
                              *_remote(cluster), "--event-log", str(log)], cwd=ws, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def openssl_worker():
            for w in cluster.workers:
                if w.log.exists() and "out/lib/libcrypto.a" in w.log.read_text():
                    return w
            return None

        victim = _wait_for("a worker to take OpenSSL's build", openssl_worker, 600, build)
        _wait_for("OpenSSL's build to start on the worker",
                  lambda: "command started" in victim.log.read_text().split("out/lib/libcrypto.a")[-1], 600, build)
        time.sleep(20)  # well into make
        assert "exit code" not in victim.log.read_text().split("out/lib/libcrypto.a")[-1], \
            "OpenSSL's build finished before the worker could be killed"
        victim.kill()
        _, err = build.communicate(timeout=1200)
    finally:
        if build.poll() is None:
            build.kill()
            build.communicate()
    assert build.returncode == 0, err
    survivor = next(w for w in cluster.workers if w is not victim)

    # the local machine ran no command: every run action went to a worker
    kinds = _kinds(ws, FLAGSHIP, store)
    done = _finished(log)
    assert len(done) == len(kinds) == 22
    for e in done:
        if kinds[e["action"]] in CLIENT_KINDS:
            assert e["where"] == "local", e
        else:
            assert e["status"] == "executed" and e["where"].startswith("remote:"), e
    (openssl,) = [e for e in done if e["mnemonic"] == "OpenSSLBuild"]
    assert openssl["where"] == f"remote:{survivor.name}"
    assert {e["where"] for e in done if e["where"].startswith("remote:")} <= {"remote:w1", "remote:w2"}
    assert "lease" in survivor.log.read_text() and "out/lib/libcrypto.a" in survivor.log.read_text()

    # bit for bit the wheel of the local build (the suite's warm store made it without a cluster)
    local = _wheel(warm_store.parent / "ws")
    assert _sha256(_wheel(ws)) == _sha256(local)

    stats = hermetic_cli("--cache-dir", str(store), "cache", "stats", cwd=ws).stdout
    ran = re.search(r"remote executor: \S+: (\d+) actions ran there \(([^)]*)\); (\d+) ran here", stats)
    assert ran, stats
    assert int(ran.group(1)) == sum(1 for k in kinds.values() if k not in CLIENT_KINDS)
    assert ran.group(3) == "0"  # no command ran on this machine
    assert f"{survivor.name}:" in ran.group(2)
    why = hermetic_cli("--cache-dir", str(store), "why", FLAGSHIP, cwd=ws).stdout
    assert "ran OpenSSLBuild //recipes/openssl:openssl [linux-x86_64-manylinux2014]" in why
    assert f"on remote worker {survivor.name}" in why

    # a teammate with an empty store: everything from the cluster's cache, nothing executed
    ws2 = copy_workspace(tmp_path / "ws2")
    proc = hermetic_cli("--cache-dir", str(tmp_path / "client-2"), "build", FLAGSHIP, *_remote(cluster), cwd=ws2)
    assert build_counts(proc.stderr) == (22, 0, 22, 22)
    assert _sha256(_wheel(ws2)) == _sha256(local)


def _overlapping(done: list[dict]) -> list[tuple[dict, dict]]:
    spans = [(e["elapsed"] - e["seconds"], e["elapsed"], e) for e in done if e["where"].startswith("remote:")]
    return [(a, b) for s1, e1, a in spans for s2, e2, b in spans
            if a["where"] < b["where"] and a["config"] != b["config"] and s1 < e2 and s2 < e1]


def test_all_platforms_run_on_both_workers_at_once(tmp_path, all_wheels, cluster):
    """//wheel:all with the binding edited: OpenSSL for the six platforms
    comes from the local store (its libraries are uploaded as inputs), and
    the six platforms' binding actions run on both workers at the same time."""
    ws = copy_workspace(tmp_path / "ws")
    store = copy_store(Path(all_wheels).parent / "cache", tmp_path / "store")
    src = ws / "recipes" / "pyossl" / "binding.c"
    src.write_text(src.read_text().replace("static int hx_random(", "/* remote */\nstatic int hx_random(", 1))
    log = tmp_path / "events.jsonl"
    proc = hermetic_cli("--cache-dir", str(store), "build", ALL_WHEELS, *_remote(cluster), "--event-log", str(log),
                        cwd=ws)
    done = _finished(log)
    remote = [e for e in done if e["where"].startswith("remote:")]
    assert {e["where"] for e in remote} == {"remote:w1", "remote:w2"}, proc.stderr
    assert len({e["config"] for e in remote} - {""}) == 6  # (cffi's C source is the same for all six)
    assert not [e for e in done if e["status"] == "executed" and e["where"] == "local"]
    pairs = _overlapping(done)
    assert pairs, "no two remote actions of different platforms overlapped on the two workers"
    a, b = pairs[0]
    print(f"overlap: {a['mnemonic']} [{a['config']}] on {a['where']} with {b['mnemonic']} [{b['config']}] "
          f"on {b['where']}; {len(pairs)} overlapping pairs")


SMALL = """
[workspace]
source_date_epoch = 1767225600

["//:first"]
rule = "genrule"
srcs = ["hello.txt"]
outs = ["first.txt"]
cmd = "tr a-z A-Z < $SRCS > $OUT/first.txt"

["//:slow"]
rule = "genrule"
srcs = [":first"]
outs = ["slow.txt"]
cmd = "sleep 8; rev < $SRCS > $OUT/slow.txt"

["//:last"]
rule = "genrule"
srcs = [":slow"]
outs = ["last.txt"]
cmd = "cat $SRCS $SRCS > $OUT/last.txt"

["//:fails"]
rule = "genrule"
srcs = ["hello.txt"]
outs = ["never.txt"]
cmd = "echo 'boom from the remote side' >&2; exit 3"
"""


def test_server_stopped_mid_build_finishes_locally(tmp_path, cluster):
    ws = write_workspace(tmp_path / "ws", {"BUILD.toml": SMALL, "hello.txt": "hello\n"})
    log = tmp_path / "events.jsonl"
    build = subprocess.Popen([sys.executable, "-m", "hermetic", "--cache-dir", str(tmp_path / "c1"), "build",
                              "//:last", *_remote(cluster), "--event-log", str(log)], cwd=ws, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for("//:slow to start on a worker",
              lambda: any("out/slow.txt" in w.log.read_text() for w in cluster.workers if w.log.exists()), 120, build)
    port = cluster.server.port
    cluster.server.stop()  # by PID, in the middle of //:slow
    _, err = build.communicate(timeout=300)
    assert build.returncode == 0, err
    faults = [line for line in err.splitlines() if "127.0.0.1:" in line and "local" in line]
    assert len(faults) == 1, err  # one clear message
    assert "building locally" in faults[0] or "falling back to local execution" in faults[0]
    done = {e["action"]: e for e in _finished(log)}
    assert done["//:first#Genrule"]["where"].startswith("remote:")
    assert done["//:slow#Genrule"]["where"] == "local"
    assert done["//:last#Genrule"]["where"] == "local"
    assert (ws / "hermetic-out" / "last" / "last.txt").read_text() == "OLLEH\nOLLEH\n"

    # the server comes back on the same port (its database kept the state): the
    # workers reconnect by themselves and take work again
    cluster.server = ExecutionServer(cluster.server.prefix, cluster.database.url, cluster.instance,
                                     keepalive=cluster.keepalive, port=port).start()
    ws2 = write_workspace(tmp_path / "ws2", {"BUILD.toml": SMALL.replace("sleep 8", "sleep 1"),
                                             "hello.txt": "hello again\n"})
    log2 = tmp_path / "events2.jsonl"
    hermetic_cli("--cache-dir", str(tmp_path / "c2"), "build", "//:last", *_remote(cluster), "--event-log",
                 str(log2), cwd=ws2)
    assert all(e["where"].startswith("remote:") for e in _finished(log2))


def test_remote_failure_reads_like_a_local_one(tmp_path, cluster):
    ws = write_workspace(tmp_path / "ws", {"BUILD.toml": SMALL, "hello.txt": "hello\n"})
    remote = hermetic_cli("--cache-dir", str(tmp_path / "c1"), "build", "//:fails", *_remote(cluster), cwd=ws,
                          check=False)
    local = hermetic_cli("--cache-dir", str(tmp_path / "c2"), "build", "//:fails", cwd=ws, check=False)
    assert remote.returncode == local.returncode == 1
    for proc in (remote, local):
        assert "error[build-failed]" in proc.stderr or "error[action-failed]" in proc.stderr, proc.stderr
        assert "boom from the remote side" in proc.stderr
        assert "exit code 3" in proc.stderr
    assert re.search(r"exit code 3 on remote worker w[12]", remote.stderr), remote.stderr


def test_interrupted_build_cancels_its_remote_work(tmp_path, cluster):
    """Ctrl-C: the client cancels its operations; the server takes the lease
    back and the worker kills the command."""
    build_toml = SMALL.replace("sleep 8;", "sleep 97.25;")
    ws = write_workspace(tmp_path / "ws", {"BUILD.toml": build_toml, "hello.txt": "hello\n"})
    build = subprocess.Popen([sys.executable, "-m", "hermetic", "--cache-dir", str(tmp_path / "c1"), "build",
                              "//:slow", *_remote(cluster)], cwd=ws, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def sleeping() -> bool:
        return subprocess.run(["pgrep", "-f", "sleep 97.25"], capture_output=True).returncode == 0

    _wait_for("the command to run on a worker", sleeping, 120, build)
    t0 = time.monotonic()
    build.send_signal(signal.SIGINT)
    _, err = build.communicate(timeout=60)
    assert build.returncode == 130, err
    assert time.monotonic() - t0 < 30, "the client waited for its remote work instead of cancelling it"
    _wait_for("the worker to kill the cancelled command", lambda: not sleeping(), 60)
    assert any("was cancelled by the server" in w.log.read_text() for w in cluster.workers)

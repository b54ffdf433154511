"""Remote execution on a local cluster (PostgreSQL + BuildGrid + hermetic
workers, scripts/remote_cluster.py), measured in one run:

    .venv/bin/python bench/remote_exec.py [--workers 2] [--actions 200] [--skip-flagship]

1. The flagship //wheel:linux-x86_64 from an empty local store (and, for the
   remote run, an empty cluster), built locally and built with
   --remote-executor: wall time of each and the ratio. On one machine the
   workers share its cores with the client, so this measures the engine's
   overhead, not a cluster's speed-up.
2. A graph of N small actions (two layers of genrules, the second reading
   the first's outputs, so inputs travel worker to worker through CAS),
   locally and remotely: milliseconds per action, and the remote time
   split into upload (Merkle tree, FindMissingBlobs, BatchUpdateBlobs),
   Execute (queueing, the worker's fetch, the command, its upload) and
   download (the result's outputs as store entries), from the client's own
   counters (`hermetic cache stats` reads the same file).

Everything started here is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from remote_cluster import Cluster

TARGET = "//wheel:linux-x86_64"


def build(ws: Path, store: Path, *args: str) -> tuple[float, dict]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hermetic", "--cache-dir", str(store), "build", *args], cwd=ws,
                          capture_output=True, text=True)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"hermetic build {' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    return took, json.loads((store / "last-build.json").read_text())


def copy_workspace(dest: Path) -> Path:
    skip = {".git", "hermetic-out", ".pytest_cache", "tests", "bench", ".ci", "build", ".venv", ".venv-buildgrid"}

    def ignore(directory: str, names: list[str]) -> set[str]:
        out = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
        return out | (skip & set(names) if Path(directory) == REPO else set())

    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    return dest


def small_graph(root: Path, n: int) -> Path:
    half = n // 2
    lines = ["[workspace]", "source_date_epoch = 1767225600", ""]
    for i in range(half):
        lines += [f'["//:a{i}"]', 'rule = "genrule"', 'srcs = ["seed.txt"]', f'outs = ["a{i}.txt"]',
                  f'cmd = "echo {i} | cat $SRCS - > $OUT/a{i}.txt"', ""]
    for i in range(n - half):
        lines += [f'["//:b{i}"]', 'rule = "genrule"', f'srcs = [":a{i % half}"]', f'outs = ["b{i}.txt"]',
                  f'cmd = "rev $SRCS > $OUT/b{i}.txt"', ""]
    lines += ['["//:all"]', 'rule = "filegroup"', "srcs = [" + ", ".join(f'":b{i}"' for i in range(n - half)) + "]"]
    root.mkdir(parents=True)
    (root / "BUILD.toml").write_text("\n".join(lines) + "\n")
    (root / "seed.txt").write_text("seed\n")
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--actions", type=int, default=200)
    ap.add_argument("--skip-flagship", action="store_true", help="only the small-action graph")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hermetic-bench-rx-") as tmp_s:
        tmp = Path(tmp_s)
        with Cluster(tmp / "cluster", workers=args.workers) as cluster:
            remote = ["--remote-executor", cluster.url, "--remote-instance", cluster.instance]
            print(f"cluster: {cluster.url}, {args.workers} workers (PostgreSQL + BuildGrid + hermetic worker)")

            ws = small_graph(tmp / "small", args.actions)
            n = args.actions
            local_s, local_rec = build(ws, tmp / "s-local", "//:all", "-o", str(tmp / "o1"))
            assert local_rec["executed"] == n, local_rec
            remote_s, rec = build(ws, tmp / "s-remote", "//:all", "-o", str(tmp / "o2"), *remote)
            rx = rec["remote_execution"]
            assert rx["executed"] == n and rx["local"] == 0, rx
            t = rx["seconds"]
            print(f"{n} small actions, locally (-j default):  {local_s:7.2f}s  {1000 * local_s / n:6.1f} ms/action")
            print(f"{n} small actions, remotely (-j default): {remote_s:7.2f}s  {1000 * remote_s / n:6.1f} ms/action"
                  f"  ({rx['executed']} ran on workers: "
                  + ", ".join(f"{w} {c}" for w, c in sorted(rx["workers"].items())) + ")")
            print(f"  per action, summed over concurrent actions: upload {1000 * t['upload'] / n:.1f} ms, "
                  f"Execute {1000 * t['execute'] / n:.1f} ms (of which the command on the worker "
                  f"{1000 * t['worker'] / n:.1f} ms), download {1000 * t['download'] / n:.1f} ms")
            print(f"  remote/local wall time: {remote_s / local_s:.2f}x; overhead "
                  f"{1000 * (remote_s - local_s) / n:+.1f} ms/action of wall time")

            if not args.skip_flagship:
                fws = copy_workspace(tmp / "flagship")
                local_s, rec = build(fws, tmp / "f-local", TARGET, "-o", str(tmp / "f1"))
                print(f"flagship {TARGET}, empty store, locally:  {local_s:7.1f}s ({rec['executed']} executed)")
                remote_s, rec = build(fws, tmp / "f-remote", TARGET, "-o", str(tmp / "f2"), *remote)
                rx = rec["remote_execution"]
                wheel = {p.name: p.read_bytes() for p in (tmp / "f1").rglob("*.whl")}
                same = all((tmp / "f2").rglob(name) and next((tmp / "f2").rglob(name)).read_bytes() == data
                           for name, data in wheel.items())
                print(f"flagship {TARGET}, empty store, remotely: {remote_s:7.1f}s ({rx['executed']} commands on "
                      f"workers, {rx['local']} here; fetch/extract/write are the client's; wheel bit-identical: "
                      f"{same})")
                print(f"  remote/local wall time: {remote_s / local_s:.2f}x "
                      f"(upload {t_fmt(rx['seconds']['upload'])}, Execute {t_fmt(rx['seconds']['execute'])}, "
                      f"commands on workers {t_fmt(rx['seconds']['worker'])}, "
                      f"download {t_fmt(rx['seconds']['download'])}, summed over actions)")


def t_fmt(s: float) -> str:
    return f"{s:.1f}s"


if __name__ == "__main__":
    main()

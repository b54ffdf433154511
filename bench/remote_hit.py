"""Remote-hit time for the whole flagship wheel, next to the local-hit time.

    .venv/bin/python bench/remote_hit.py [--cache-dir DIR] [--runs N]

Needs a local store holding a complete //wheel:linux-x86_64 build (builds it
first if it does not). Starts nginx (Bazel HTTP cache over WebDAV) and
BuildGrid (REAPI) on 127.0.0.1, seeds each from the local store, then times
whole `hermetic build` processes into an empty output directory:

- local hit: everything in the local store;
- remote hit: an empty local store, everything from the remote (only the
  wheel and its test report are downloaded).

Prints seconds (median of --runs) and the ratio remote/local. Servers are
stopped by the PIDs this script started.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from servers import BuildGrid, Nginx  # noqa: E402

TARGET = "//wheel:linux-x86_64"


def hermetic(*args: str, cwd: Path, nothing_runs: bool = True) -> float:
    """Seconds for one whole `hermetic` process; fails if anything executed."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hermetic", *args], cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"hermetic {' '.join(args)} failed:\n{proc.stderr}")
    if nothing_runs and " 0 executed" not in proc.stderr:
        raise SystemExit(f"expected everything cached, but:\n{proc.stderr}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", type=Path, default=None, help="a store with the flagship built (default: yours)")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    from hermetic._cache import default_cache_dir

    store = args.cache_dir or default_cache_dir()
    with tempfile.TemporaryDirectory(prefix="hermetic-bench-") as tmp_s:
        tmp = Path(tmp_s)
        out = tmp / "out"
        print(f"machine: {os.cpu_count()} cores; store {store}")
        hermetic("--cache-dir", str(store), "build", TARGET, "-o", str(out), cwd=REPO,
                 nothing_runs=False)  # warm the store (a cold build the first time)

        local = []
        for _ in range(args.runs):
            shutil.rmtree(out, ignore_errors=True)
            local.append(hermetic("--cache-dir", str(store), "build", TARGET, "-o", str(out), cwd=REPO))
        t_local = statistics.median(local)
        print(f"local hit,  empty output dir:        {t_local:6.2f} s  (median of {args.runs})")

        for name, server in (("nginx (HTTP)", Nginx(tmp / "nginx")), ("BuildGrid (gRPC)", BuildGrid(tmp / "bgd"))):
            server.start()
            try:
                remote = ["--remote-cache", server.url]
                if isinstance(server, BuildGrid):
                    remote += ["--remote-instance", server.instance]
                hermetic("--cache-dir", str(store), "build", TARGET, "-o", str(out), *remote,
                         "--remote-upload-local-hits", cwd=REPO)
                times = []
                for i in range(args.runs):
                    shutil.rmtree(out, ignore_errors=True)
                    fresh = tmp / f"fresh-{name[:5]}-{i}"
                    times.append(hermetic("--cache-dir", str(fresh), "build", TARGET, "-o", str(out), *remote,
                                          "--remote-upload", "false", cwd=REPO))
                    shutil.rmtree(fresh)
                t = statistics.median(times)
                print(f"remote hit, {name:<17} empty store: {t:6.2f} s  ratio {t / t_local:5.2f}x local")
            finally:
                server.stop()


if __name__ == "__main__":
    main()

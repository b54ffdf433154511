"""No-op and fully cached rebuild times of the flagship, whole processes.

    .venv/bin/python bench/noop.py [--runs N] [--cache-dir DIR]

Builds //wheel:linux-x86_64 once (a cold build the first time), then times:
- no-op: everything up to date (goal <= 0.25 s);
- empty output dir: everything cached, outputs restored (goal <= 0.5 s);
- `python -c pass` and `python -c "import hermetic.cli"` for scale.
Prints medians and each figure's ratio to its goal. If Bazel is installed
(Debian bazel-bootstrap) it is not measured here: see the README.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = "//wheel:linux-x86_64"


#: as a user runs it: Python may cache bytecode (a shell with PYTHONDONTWRITEBYTECODE=1
#: would make every run compile hermetic's sources again, ~60 ms, and time that instead)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=ENV)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--cache-dir", type=Path)
    args = ap.parse_args()
    cache = ["--cache-dir", str(args.cache_dir)] if args.cache_dir else []
    out = REPO / "hermetic-out"
    build = [sys.executable, "-m", "hermetic", *cache, "build", TARGET]
    timed(build)  # warm
    timed(build)
    runs = args.runs
    py = statistics.median(timed([sys.executable, "-c", "pass"]) for _ in range(runs))
    imp = statistics.median(timed([sys.executable, "-c", "import hermetic.cli"]) for _ in range(runs))
    noop = statistics.median(timed(build) for _ in range(runs))
    restores = []
    for _ in range(runs):
        shutil.rmtree(out, ignore_errors=True)
        restores.append(timed(build))
    restore = statistics.median(restores)
    print(f"python -c pass:                    {py:6.3f} s")
    print(f"import hermetic.cli:               {imp:6.3f} s")
    print(f"no-op build (all cached):          {noop:6.3f} s   goal 0.25 s  ratio {noop / 0.25:4.2f}")
    print(f"cached build, empty output dir:    {restore:6.3f} s   goal 0.50 s  ratio {restore / 0.5:4.2f}")
    print(f"(medians of {runs} whole `hermetic build {TARGET}` processes)")


if __name__ == "__main__":
    main()

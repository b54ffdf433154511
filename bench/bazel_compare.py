"""The same small C graph under Bazel (Debian bazel-bootstrap) and hermetic:
ten objects compiled by gcc and one link, as genrules in both (Bazel 4's cc
rules need rules_cc from the network). Times whole client processes:

- no-op: everything up to date (Bazel: its server already running);
- cached into an empty output: Bazel `bazel clean` then a build served by
  `--disk_cache`; hermetic `rm -rf hermetic-out` then a build served by its
  store.

    .venv/bin/python bench/bazel_compare.py [--runs N]

The Bazel server this script starts is stopped by its PID at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

BAZEL_BUILD = """
[genrule(name = "o%d" % i, srcs = ["f%d.c" % i], outs = ["f%d.o" % i], cmd = "gcc -c -O2 $< -o $@") for i in range(10)]
genrule(name = "main", srcs = ["main.c"] + [":o%d" % i for i in range(10)], outs = ["main"], cmd = "gcc -o $@ $(SRCS)")
"""


def hermetic_build() -> str:
    lines = ["[workspace]", "source_date_epoch = 1767225600", ""]
    for i in range(10):
        lines += [f'["//:o{i}"]', 'rule = "genrule"', f'srcs = ["f{i}.c"]', f'outs = ["f{i}.o"]',
                  'toolchains = ["cc"]', f'cmd = "gcc -c -O2 $SRCS -o $OUT/f{i}.o"', ""]
    lines += ['["//:main"]', 'rule = "genrule"', 'srcs = ["main.c", ' + ", ".join(f'":o{i}"' for i in range(10)) + "]",
              'outs = ["main"]', 'toolchains = ["cc"]', 'cmd = "gcc -o $OUT/main $SRCS"']
    return "\n".join(lines) + "\n"


def sources(ws: Path) -> None:
    ws.mkdir(parents=True)
    for i in range(10):
        (ws / f"f{i}.c").write_text(f"int f{i}(int x) {{ return x + {i}; }}\n")
    (ws / "main.c").write_text("int f0(int);\nint main(void) { return f0(0); }\n")


def timed(argv: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    bazel = shutil.which("bazel")
    if bazel is None:
        raise SystemExit("bazel is not installed (apt-get install bazel-bootstrap)")
    with tempfile.TemporaryDirectory(prefix="hermetic-bazel-") as tmp_s:
        tmp = Path(tmp_s)
        bws, hws = tmp / "bazel-ws", tmp / "hermetic-ws"
        sources(bws)
        sources(hws)
        (bws / "WORKSPACE").write_text("")
        (bws / "BUILD").write_text(BAZEL_BUILD)
        (hws / "BUILD.toml").write_text(hermetic_build())
        root = ["--output_user_root", str(tmp / "bazel-root")]
        build = [bazel, *root, "build", "--disk_cache", str(tmp / "bazel-disk-cache"), "//:main"]
        herm = [sys.executable, "-m", "hermetic", "--cache-dir", str(tmp / "hermetic-store"), "build", "//:main"]
        pid = None
        try:
            cold_b = timed(build, bws)
            pid = int(subprocess.run([bazel, *root, "info", "server_pid"], cwd=bws, capture_output=True, text=True,
                                     check=True).stdout.strip())
            cold_h = timed(herm, hws)
            noop_b = statistics.median(timed(build, bws) for _ in range(args.runs))
            noop_h = statistics.median(timed(herm, hws) for _ in range(args.runs))
            cached_b, cached_h = [], []
            for _ in range(args.runs):
                timed([bazel, *root, "clean"], bws)
                cached_b.append(timed(build, bws))
                shutil.rmtree(hws / "hermetic-out")
                cached_h.append(timed(herm, hws))
        finally:
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        print("11 actions (10 gcc -c, 1 link), both sandboxed (Bazel linux-sandbox, hermetic bubblewrap)")
        print(f"{'':34}{'Bazel 4.2.3':>12}{'hermetic':>10}")
        print(f"{'cold (empty caches)':34}{cold_b:>11.2f}s{cold_h:>9.2f}s   (Bazel's includes starting its server)")
        print(f"{'no-op':34}{noop_b:>11.2f}s{noop_h:>9.2f}s")
        print(f"{'cached, empty output':34}{statistics.median(cached_b):>11.2f}s{statistics.median(cached_h):>9.2f}s")


if __name__ == "__main__":
    main()

"""The same graphs under Bazel (Debian bazel-bootstrap) and hermetic, as
genrules in both (Bazel 4's cc rules need rules_cc from the network):

- small: ten objects compiled by gcc and one link;
- 1,000 actions: ten layers of 100 (a layer-0 action reads its own source,
  every other one two outputs of the layer before; each counts its inputs'
  bytes with ``wc -c``).

Times whole client processes:

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
from typing import Any

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


WIDTH, LAYERS = 100, 10

BAZEL_LARGE = f"""
W = {WIDTH}
[genrule(name = "a%d" % i, srcs = (["s%d.txt" % i] if i < W else [":a%d" % (i - W), ":a%d" % ((i - W) // W * W + (i - W + 1) % W)]),
         outs = ["a%d.txt" % i], cmd = "cat $(SRCS) | wc -c > $@") for i in range({WIDTH * LAYERS})]
"""


def hermetic_large() -> str:
    lines = ["[workspace]", "source_date_epoch = 1767225600", ""]
    for i in range(WIDTH * LAYERS):
        layer, pos = divmod(i, WIDTH)
        srcs = [f"s{i}.txt"] if layer == 0 else [f":a{i - WIDTH}", f":a{(layer - 1) * WIDTH + (pos + 1) % WIDTH}"]
        lines += [f'["//:a{i}"]', 'rule = "genrule"', "srcs = [" + ", ".join(f'"{x}"' for x in srcs) + "]",
                  f'outs = ["a{i}.txt"]', f'cmd = "cat $SRCS | wc -c > $OUT/a{i}.txt"', ""]
    return "\n".join(lines)


def large_sources(ws: Path) -> None:
    ws.mkdir(parents=True)
    for i in range(WIDTH):
        (ws / f"s{i}.txt").write_text(f"source {i}\n")


def sources(ws: Path) -> None:
    ws.mkdir(parents=True)
    for i in range(10):
        (ws / f"f{i}.c").write_text(f"int f{i}(int x) {{ return x + {i}; }}\n")
    (ws / "main.c").write_text("int f0(int);\nint main(void) { return f0(0); }\n")


def timed(argv: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return took


def compare(tmp: Path, bazel: str, name: str, bazel_build: str, hermetic_build_toml: str, make: Any,
            targets: list[str], runs: int) -> dict[str, float]:
    """Cold, no-op and cached-into-an-empty-output times of one graph in both tools."""
    bws, hws = tmp / f"bazel-{name}", tmp / f"hermetic-{name}"
    make(bws)
    make(hws)
    (bws / "WORKSPACE").write_text("")
    (bws / "BUILD").write_text(bazel_build)
    (hws / "BUILD.toml").write_text(hermetic_build_toml)
    root = ["--output_user_root", str(tmp / f"bazel-root-{name}")]
    build = [bazel, *root, "build", "--disk_cache", str(tmp / f"bazel-disk-cache-{name}"), *targets]
    herm = [sys.executable, "-m", "hermetic", "--cache-dir", str(tmp / f"hermetic-store-{name}"), "build", *targets]
    pid = None
    try:
        out = {"cold_b": timed(build, bws)}
        pid = int(subprocess.run([bazel, *root, "info", "server_pid"], cwd=bws, capture_output=True, text=True,
                                 check=True).stdout.strip())
        out["cold_h"] = timed(herm, hws)
        out["noop_b"] = statistics.median(timed(build, bws) for _ in range(runs))
        out["noop_h"] = statistics.median(timed(herm, hws) for _ in range(runs))
        cached_b, cached_h = [], []
        for _ in range(runs):
            timed([bazel, *root, "clean"], bws)
            cached_b.append(timed(build, bws))
            shutil.rmtree(hws / "hermetic-out")
            cached_h.append(timed(herm, hws))
        out["cached_b"], out["cached_h"] = statistics.median(cached_b), statistics.median(cached_h)
    finally:
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    bazel = shutil.which("bazel")
    if bazel is None:
        raise SystemExit("bazel is not installed (apt-get install bazel-bootstrap)")
    version = subprocess.run([bazel, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    if "no_version" in version or not version:  # Debian's bootstrap build does not know its version
        pkg = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "bazel-bootstrap"], capture_output=True,
                             text=True, check=False).stdout.strip()
        version = f"Bazel {pkg.split('+')[0]}" if pkg else "Bazel"
    with tempfile.TemporaryDirectory(prefix="hermetic-bazel-") as tmp_s:
        tmp = Path(tmp_s)
        small = compare(tmp, bazel, "small", BAZEL_BUILD, hermetic_build(), sources, ["//:main"], args.runs)
        large = compare(tmp, bazel, "large", BAZEL_LARGE, hermetic_large(), large_sources,
                        [f"//:a{i}" for i in range(WIDTH * (LAYERS - 1), WIDTH * LAYERS)], args.runs)
    print("both sandboxed (Bazel linux-sandbox, hermetic bubblewrap); medians of", args.runs, "runs, whole processes")
    print(f"{'':40}{version or 'Bazel':>14}{'hermetic':>10}{'ratio':>8}")
    for title, r in (("11 actions (10 gcc -c, 1 link)", small), ("1,000 actions (10 layers of 100)", large)):
        print(title)
        for row, b, h in (("  cold (empty caches)", r["cold_b"], r["cold_h"]), ("  no-op", r["noop_b"], r["noop_h"]),
                          ("  cached, empty output", r["cached_b"], r["cached_h"])):
            print(f"{row:40}{b:>13.2f}s{h:>9.2f}s{h / b:>8.2f}")
    print("(cold: Bazel's includes starting its server; ratio: hermetic / Bazel)")


if __name__ == "__main__":
    main()

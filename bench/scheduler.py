"""The engine on synthetic graphs of small actions: 1,000, 10,000 and
100,000 of them.

    .venv/bin/python bench/scheduler.py [--sizes 1000,10000,100000]

Each graph is a chain of layers (every action reads two outputs of the
layer before), declared by a generated BUILD.toml of genrules and run
through the real loader, analysis, action graph, keys, store and scheduler,
with a fake sandbox (an in-process function writes each output), so what is
measured is hermetic's own cost. Prints per size: load+analysis seconds,
execution seconds and per-action overhead, a second (fully cached) run, and
peak memory; then how each grows from one size to the next.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hermetic._session import Session  # noqa: E402
from hermetic.testing import FakeSandbox  # noqa: E402

WIDTH = 100


def workspace(root: Path, n: int) -> None:
    lines = ["[workspace]", "source_date_epoch = 1767225600", ""]
    for i in range(n):
        layer, pos = divmod(i, WIDTH)
        srcs = ["seed.txt"] if layer == 0 else [f":a{(layer - 1) * WIDTH + pos}",
                                                 f":a{(layer - 1) * WIDTH + (pos + 1) % WIDTH}"]
        lines += [f'["//:a{i}"]', 'rule = "genrule"', f"srcs = {srcs!r}".replace("'", '"'),
                  'outs = ["o.txt"]', f'cmd = "make-output {i}"', ""]
    last = (n - 1) // WIDTH * WIDTH
    lines += ['["//:top"]', 'rule = "genrule"',
              "srcs = [" + ", ".join(f'":a{i}"' for i in range(last, n)) + "]", 'outs = ["top.txt"]',
              'cmd = "make-output top"']
    (root / "BUILD.toml").write_text("\n".join(lines) + "\n")
    (root / "seed.txt").write_text("seed\n")


def fake_sh(argv: list[str], env: dict[str, str], work: Path) -> int:
    # argv: /bin/sh -c SCRIPT; the script ends with "make-output N"
    word = argv[2].rsplit(" ", 1)[-1]
    Path(env["OUT"], "top.txt" if word == "top" else "o.txt").write_text(f"output {word}\n")
    return 0


def run(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hermetic-sched-") as tmp:
        root = Path(tmp) / "ws"
        root.mkdir()
        workspace(root, n)
        fake = FakeSandbox({"/bin/sh": fake_sh})
        t0 = time.perf_counter()
        s = Session(root, cache_dir=Path(tmp) / "cache", jobs=2)
        s.sandbox = lambda: fake  # type: ignore[method-assign]
        labels = s.parse_labels(["//:top"])
        analysis, graph = s.analyze(labels)
        t_analysis = time.perf_counter() - t0
        t1 = time.perf_counter()
        res = s.build(labels)
        t_exec = time.perf_counter() - t1
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        assert res.stats.executed == n + 1, res.stats
        t2 = time.perf_counter()
        s2 = Session(root, cache_dir=Path(tmp) / "cache", jobs=2)
        s2.sandbox = lambda: fake  # type: ignore[method-assign]
        res2 = s2.build(labels)
        t_cached = time.perf_counter() - t2
        assert res2.stats.executed == 0
    return {"n": n, "analysis": t_analysis, "exec": t_exec, "per_action_ms": t_exec / (n + 1) * 1000,
            "cached": t_cached, "peak_mb": peak / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run(args.one)))
        return
    rows = []
    print(f"{'actions':>8} {'load+analysis':>14} {'execute':>9} {'per action':>11} {'cached run':>11} {'peak RSS':>9}")
    for n in (int(x) for x in args.sizes.split(",")):
        # each size in its own process, so its peak RSS is its own
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(f"{n:>8} {r['analysis']:>13.2f}s {r['exec']:>8.2f}s {r['per_action_ms']:>9.2f}ms {r['cached']:>10.2f}s "
              f"{r['peak_mb']:>7.0f}MB", flush=True)
    for a, b in zip(rows, rows[1:]):
        k = b["n"] / a["n"]
        print(f"{a['n']} -> {b['n']} (x{k:g}): analysis x{b['analysis'] / a['analysis']:.1f}, "
              f"execute x{b['exec'] / a['exec']:.1f}, cached x{b['cached'] / a['cached']:.1f}, "
              f"memory x{b['peak_mb'] / a['peak_mb']:.1f}")
    print("(peak mem: the process's max RSS, interpreter and plugins included; execution is dominated by "
          "creating each action's private directories on this file system)")


if __name__ == "__main__":
    main()

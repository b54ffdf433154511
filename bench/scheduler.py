"""The engine on synthetic graphs of small actions: 1,000, 10,000 and
100,000 of them.

    .venv/bin/python bench/scheduler.py [--sizes 1000,10000,100000]

Each graph is a monorepo of packages, one per layer of 100 genrules: a
layer-0 target reads its own source file, every other target two outputs of
the layer before. It runs through the real loader, analysis, action graph,
keys, store, history and scheduler, with a fake sandbox (an in-process
function writes each output), so what is measured is hermetic's own cost.

Per size, each step in a process of its own (as a user's next command):
- cold: analysis and the execution of every action into an empty store
  (per-action engine overhead: execution seconds / actions) and the
  process's peak memory;
- re-check: the same build again, nothing changed (the no-op path);
- analysis: analysing the unchanged workspace in a new process;
- leaf: one layer-0 source edited; the build must re-run exactly that
  target's action and the two that read its output (whose outputs come out
  the same, so nothing after them: early cutoff), and says how many ran;
- previous: the re-check with the incremental records off
  (``Session(incremental=False)``), the design before them, for the ratio.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


from hermetic._session import Session
from hermetic.testing import FakeSandbox

WIDTH = 100


def workspace(root: Path, n: int) -> None:
    """*n* genrules in packages p0, p1, ... of WIDTH each, and //:top."""
    (root / "BUILD.toml").write_text('[workspace]\nsource_date_epoch = 1767225600\n\n')
    for layer in range((n + WIDTH - 1) // WIDTH):
        pkg = root / f"p{layer}"
        pkg.mkdir()
        lines = []
        for pos in range(min(WIDTH, n - layer * WIDTH)):
            if layer == 0:
                (pkg / f"src{pos}.txt").write_text(f"source {pos}\n")
                srcs, cmd = [f"src{pos}.txt"], f"make-output-from-src {pos}"
            else:
                srcs = [f"//p{layer - 1}:a{pos}", f"//p{layer - 1}:a{(pos + 1) % WIDTH}"]
                cmd = f"make-output {layer * WIDTH + pos}"
            lines += [f"[a{pos}]", 'rule = "genrule"', "srcs = " + json.dumps(srcs), 'outs = ["o.txt"]',
                      f'cmd = "{cmd}"', ""]
        (pkg / "BUILD.toml").write_text("\n".join(lines))
    last = (n - 1) // WIDTH
    top = [f"//p{last}:a{pos}" for pos in range(n - last * WIDTH)]
    with (root / "BUILD.toml").open("a") as f:
        f.write('["//:top"]\nrule = "genrule"\nsrcs = ' + json.dumps(top) +
                '\nouts = ["top.txt"]\ncmd = "make-output top"\n')


def leaf_dependants(n: int, pos: int) -> int:
    """Actions that read layer-0 target *pos*'s output directly."""
    if n <= WIDTH:
        return 1  # //:top
    return len({p for p in range(min(WIDTH, n - WIDTH)) if pos in (p, (p + 1) % WIDTH)})


def fake_sh(argv: list[str], env: dict[str, str], work: Path) -> int:
    # argv: /bin/sh -c SCRIPT; the script ends with "make-output N" or "make-output-from-src N"
    script = argv[2]
    verb, word = script.rsplit("\n", 1)[-1].split(" ")
    text = f"output {word}\n"
    if verb == "make-output-from-src":  # a layer-0 output says what its source says
        src = script.split('SRCS="', 1)[1].split('"', 1)[0]
        text += Path(src.replace("$IN", env["IN"])).read_text()
    Path(env["OUT"], "top.txt" if word == "top" else "o.txt").write_text(text)
    return 0


def session(root: Path, cache: Path, fake: FakeSandbox, incremental: bool = True) -> Session:
    s = Session(root, cache_dir=cache, jobs=2, incremental=incremental)
    s.sandbox = lambda: fake  # type: ignore[method-assign]
    return s


def step(what: str, root: Path, cache: Path, n: int) -> dict[str, float]:
    fake = FakeSandbox({"/bin/sh": fake_sh})
    t0 = time.perf_counter()
    if what == "analysis":
        s = session(root, cache, fake)
        s.analyze(s.parse_labels(["//:top"]))
        return {"seconds": time.perf_counter() - t0}
    s = session(root, cache, fake, incremental=what != "previous")
    labels = s.parse_labels(["//:top"])
    out: dict[str, float] = {}
    if what == "cold":
        s.analyze(labels)
        out["analysis"] = time.perf_counter() - t0
        t0 = time.perf_counter()
    res = s.build(labels)
    out["seconds"] = time.perf_counter() - t0
    out["executed"] = res.stats.executed
    out["cached"] = res.stats.cached
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_step(what: str, root: Path, cache: Path, n: int) -> dict[str, float]:
    proc = subprocess.run([sys.executable, __file__, "--step", what, "--root", str(root), "--cache", str(cache),
                           "--n", str(n)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"step {what} at {n} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def disk_floor(where: Path) -> dict[str, float]:
    """Microseconds per mkdir, file creation and rmdir where the store is:
    the floor under an action's staging area on that file system."""
    import os
    import shutil

    d = Path(tempfile.mkdtemp(prefix="floor-", dir=where))
    try:
        k = 500
        t0 = time.perf_counter()
        for i in range(k):
            os.mkdir(d / f"d{i}")
        t1 = time.perf_counter()
        for i in range(k):
            (d / f"f{i}").write_bytes(b"x")
        t2 = time.perf_counter()
        for i in range(k):
            os.rmdir(d / f"d{i}")
        t3 = time.perf_counter()
    finally:
        shutil.rmtree(d)
    return {"mkdir": (t1 - t0) / k * 1e6, "create": (t2 - t1) / k * 1e6, "rmdir": (t3 - t2) / k * 1e6}


def fs_type(where: Path) -> str:
    best, kind = "", "?"
    for line in Path("/proc/mounts").read_text().splitlines():
        _dev, mnt, typ = line.split()[:3]
        if str(where.resolve()).startswith(mnt) and len(mnt) > len(best):
            best, kind = mnt, typ
    return kind


def measure(n: int, where: Path | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hermetic-sched-", dir=where) as tmp:
        root, cache = Path(tmp) / "ws", Path(tmp) / "cache"
        root.mkdir()
        workspace(root, n)
        cold = run_step("cold", root, cache, n)
        assert cold["executed"] == n + 1, cold
        recheck = run_step("recheck", root, cache, n)
        assert recheck["executed"] == 0, recheck
        analysis = run_step("analysis", root, cache, n)
        leaf = 7
        (root / "p0" / f"src{leaf}.txt").write_text("edited\n")
        changed = run_step("leaf", root, cache, n)
        expected = 1 + leaf_dependants(n, leaf)
        previous = run_step("previous", root, cache, n)
        assert previous["executed"] == 0, previous
        return {"n": n, "analysis_cold": cold["analysis"], "exec": cold["seconds"],
                "per_action_ms": cold["seconds"] / (n + 1) * 1000, "peak_mb": cold["peak_mb"],
                "recheck": recheck["seconds"], "recheck_mb": recheck["peak_mb"], "analysis": analysis["seconds"],
                "leaf": changed["seconds"], "leaf_ran": changed["executed"], "leaf_expected": expected,
                "previous": previous["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--dir", type=Path, help="where the workspaces and stores go (default: the temp dir); "
                    "/dev/shm separates hermetic's own cost from the disk's")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args.root, args.cache, args.n)))
        return
    where = args.dir or Path(tempfile.gettempdir())
    floor = disk_floor(where)
    print(f"store on {where} ({fs_type(where)}): mkdir {floor['mkdir']:.0f} us, file creation "
          f"{floor['create']:.0f} us, rmdir {floor['rmdir']:.0f} us (measured now)")
    print(f"{'actions':>8} {'cold analysis':>13} {'execute':>8} {'per action':>10} {'peak RSS':>8} | "
          f"{'re-check':>8} {'analysis':>8} {'leaf edit':>9} {'ran/expected':>12} | {'previous':>8} {'ratio':>6}")
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        r = measure(n, args.dir)
        rows.append(r)
        print(f"{n:>8} {r['analysis_cold']:>12.2f}s {r['exec']:>7.2f}s {r['per_action_ms']:>8.2f}ms "
              f"{r['peak_mb']:>6.0f}MB | {r['recheck']:>7.2f}s {r['analysis']:>7.2f}s {r['leaf']:>8.2f}s "
              f"{r['leaf_ran']:>5.0f}/{r['leaf_expected']:<6} | {r['previous']:>7.2f}s "
              f"{r['previous'] / r['recheck']:>5.0f}x", flush=True)
    for a, b in itertools.pairwise(rows):
        k = b["n"] / a["n"]
        print(f"{a['n']} -> {b['n']} (x{k:g}): execute x{b['exec'] / a['exec']:.1f}, re-check "
              f"x{b['recheck'] / a['recheck']:.1f}, leaf edit x{b['leaf'] / a['leaf']:.1f}, "
              f"memory x{b['peak_mb'] / a['peak_mb']:.1f}")
    print("(times inside each step's process, from creating the Session; peak RSS: that process's, "
          "interpreter and plugins included; previous: the same re-check with Session(incremental=False))")


if __name__ == "__main__":
    main()

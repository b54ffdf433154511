"""Per-action overhead of the sandbox: an action that runs `true`, in
bubblewrap and unsandboxed, through the same engine path.

    .venv/bin/python bench/sandbox_overhead.py [--runs N]

Prints the median time of the sandbox's run() for each and the difference
(goal: <= 10 ms per action), and the whole engine path per action (staging
directories, inputs, output storing) for scale.
"""

from __future__ import annotations
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hermetic.sandbox import LocalSandbox, SandboxConfig, SandboxRequest, base_environment  # noqa: E402
from plugins.linux import hermetic_sandbox, _host  # noqa: E402


def run_many(sandbox, root: Path, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    root.mkdir(exist_ok=True)
    times = []
    for i in range(runs):
        dirs = [root / f"{i}-{n}" for n in ("in", "out", "work")]
        for d in dirs:
            d.mkdir()
        layout = sandbox.layout(tuple(dirs))
        req = SandboxRequest(("true",), base_environment(layout, 0), *dirs, log=root / f"{i}.log")
        t0 = time.perf_counter()
        done = sandbox.run(req)
        times.append(time.perf_counter() - t0)
        assert done.exit_code == 0, (root / f"{i}.log").read_text()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    args = ap.parse_args()
    bwrap = hermetic_sandbox(_host(), SandboxConfig("bwrap"))
    if bwrap is None:
        raise SystemExit("bubblewrap is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for name, sandbox in (("none", LocalSandbox()), ("bwrap", bwrap)):
            root = Path(tmp) / name
            root.mkdir()
            run_many(sandbox, root / "warm", 3)  # page cache, probes
            results[name] = statistics.median(run_many(sandbox, root, args.runs))
        none, sand = results["none"], results["bwrap"]
    print(f"`true`, unsandboxed:      {none * 1000:6.2f} ms (median of {args.runs})")
    print(f"`true`, bubblewrap:       {sand * 1000:6.2f} ms")
    print(f"sandbox overhead/action:  {(sand - none) * 1000:6.2f} ms   goal 10 ms  ratio {(sand - none) / 0.010:4.2f}")


if __name__ == "__main__":
    main()

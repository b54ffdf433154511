"""Install wheels into a fresh virtual environment with
``pip install --no-deps --no-index`` and run the tests there (inside the
sandbox: no network, nothing of the source tree on sys.path)."""

import argparse
import os
import shutil
import subprocess
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("report")
    p.add_argument("--wheel", action="append", default=[])
    p.add_argument("--test", action="append", default=[])
    args = p.parse_args()
    work = os.environ["WORK"]
    venv = os.path.join(work, "venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    py = os.path.join(venv, "bin", "python")
    wheels = []
    for w in args.wheel:  # a wheel, or a directory holding wheels (py_wheel's dist)
        wheels += sorted(os.path.join(w, n) for n in os.listdir(w) if n.endswith(".whl")) if os.path.isdir(w) else [w]
    subprocess.run([py, "-m", "pip", "install", "--no-deps", "--no-index", "--no-cache-dir",
                    "--disable-pip-version-check", "-q", *wheels], check=True)
    tests = os.path.join(work, "tests")
    os.mkdir(tests)
    for t in args.test:
        shutil.copyfile(t, os.path.join(tests, os.path.basename(t)))
    proc = subprocess.run([py, "-m", "unittest", "discover", "-v", "-s", tests, "-t", tests],
                          cwd=tests, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    sys.stdout.write(text)
    if proc.returncode != 0:
        sys.exit(proc.returncode)
    # the report holds only what is deterministic: test names and results
    lines = sorted(line for line in text.splitlines() if line.endswith(" ... ok"))
    with open(args.report, "w") as f:
        f.write("\n".join(lines) + f"\n{len(lines)} tests passed\n")


if __name__ == "__main__":
    main()

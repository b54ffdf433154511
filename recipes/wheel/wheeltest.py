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
    p.add_argument("--tests-dir", help="run the tests of this source tree with pytest instead")
    p.add_argument("--tests-subdir", default="tests", help="where in --tests-dir the tests are")
    p.add_argument("--pytest-arg", action="append", default=[])
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
    if args.tests_dir:  # a package's own pytest suite (a directory of its source)
        run_pytest(py, args, work)
    else:
        run_unittest(py, args, work)


def run_unittest(py, args, work):
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


def run_pytest(py, args, work):
    """The tests directory is copied (not the source tree beside it, so the
    installed wheel is what gets imported) and run with pytest; hypothesis,
    if the suite uses it, is derandomized."""
    import re

    root = os.path.join(work, "t")
    shutil.copytree(os.path.join(args.tests_dir, args.tests_subdir),
                    os.path.join(root, os.path.basename(args.tests_subdir.rstrip("/"))))
    with open(os.path.join(root, "pytest.ini"), "w") as f:
        f.write("[pytest]\n")  # this directory is the rootdir; the package's own config is not read
    argv = [py, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--color=no", *args.pytest_arg]
    proc = subprocess.run(argv, cwd=root, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    sys.stdout.write(text[-20000:])
    if proc.returncode != 0:
        sys.exit(proc.returncode)
    results = sorted(m.group(1) + " " + m.group(2) for m in re.finditer(
        r"^(\S+::\S+) (PASSED|SKIPPED|XFAIL|XPASS)", text, re.M))
    counts = {k: sum(r.endswith(" " + k) for r in results) for k in ("PASSED", "SKIPPED", "XFAIL", "XPASS")}
    with open(args.report, "w") as f:
        f.write("\n".join(results) + "\n" + ", ".join(f"{n} {k.lower()}" for k, n in counts.items() if n) + "\n")


if __name__ == "__main__":
    main()

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
    p.add_argument("--pytest-plugin", help="pytest_report.py: results as pytest counts them")
    p.add_argument("--xdist", action="store_true", help="run the suite on $HERMETIC_JOBS processes")
    args = p.parse_args()
    work = os.environ["WORK"]
    venv = os.path.join(work, "venv")
    emulator = os.environ.get("HERMETIC_EMULATOR", "")
    if not emulator:
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        py = [os.path.join(venv, "bin", "python")]
        pip = [*py, "-m", "pip"]
        pip_env = None
    else:
        # another CPU's interpreter, under an emulator (qemu-user) that runs one program and not
        # what it starts (no binfmt_misc): every interpreter this script starts is put under the
        # emulator by name, the venv has no pip of its own (ensurepip starts one) and pip runs from
        # the interpreter's own bundled wheel
        if args.xdist:
            sys.exit("pytest-xdist starts interpreters the emulator cannot run: use jobs = 1 for this platform")
        subprocess.run([emulator, sys.executable, "-m", "venv", "--without-pip", venv], check=True)
        py = [emulator, os.path.join(venv, "bin", "python")]
        import ensurepip

        bundled = os.path.dirname(ensurepip.__file__) + "/_bundled"
        wheel = next(os.path.join(bundled, n) for n in sorted(os.listdir(bundled)) if n.startswith("pip-"))
        pip = [*py, os.path.join(wheel, "pip")]
        pip_env = dict(os.environ, PYTHONPATH=wheel)
    wheels = []
    for w in args.wheel:  # a wheel, or a directory holding wheels (py_wheel's dist)
        wheels += sorted(os.path.join(w, n) for n in os.listdir(w) if n.endswith(".whl")) if os.path.isdir(w) else [w]
    # installed with --no-deps: check first that every requirement is among them, so a missing pin
    # is named here instead of surfacing as an ImportError deep in the suite
    check = subprocess.run([*py, "-c", REQUIRES_CHECK, *wheels], capture_output=True, text=True, env=pip_env)
    if check.returncode != 0:
        sys.stdout.write(check.stdout + check.stderr)
        sys.exit(check.returncode)
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--no-cache-dir",
                    "--disable-pip-version-check", "-q", *wheels], check=True, env=pip_env)
    if args.tests_dir:  # a package's own pytest suite (a directory of its source)
        run_pytest(py, args, work)
    else:
        run_unittest(py, args, work)


#: run by the fresh venv's interpreter (so markers are evaluated for it), with
#: the packaging that pip vendors: every Requires-Dist of every wheel, without
#: extras, must be met by one of the wheels
REQUIRES_CHECK = r"""
import sys, zipfile
from email.parser import Parser
from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name
from pip._vendor.packaging.version import Version
have, needs = {}, []
for path in sys.argv[1:]:
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        meta = Parser().parsestr(zf.read(name).decode("utf-8"))
    have[canonicalize_name(meta["Name"])] = Version(meta["Version"])
    needs += [(meta["Name"], r) for r in meta.get_all("Requires-Dist") or []]
missing = []
for who, text in needs:
    req = Requirement(text)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    got = have.get(canonicalize_name(req.name))
    if got is None:
        missing.append(f"{who} requires {text}: no wheel of {req.name} is among the test's wheels")
    elif req.specifier and not req.specifier.contains(got, prereleases=True):
        missing.append(f"{who} requires {text}: the pinned {req.name} is {got}")
if missing:
    print("requirements not met (the wheels are installed with --no-deps: pin each one with python_wheel "
          "and add it to deps):")
    print("\n".join("  " + m for m in missing))
    sys.exit(1)
"""


def run_unittest(py, args, work):
    tests = os.path.join(work, "tests")
    os.mkdir(tests)
    for t in args.test:
        shutil.copyfile(t, os.path.join(tests, os.path.basename(t)))
    proc = subprocess.run([*py, "-m", "unittest", "discover", "-v", "-s", tests, "-t", tests],
                          cwd=tests, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    sys.stdout.write(text)
    if proc.returncode != 0:
        sys.exit(proc.returncode)
    # the report holds only what is deterministic: test names and results
    lines = sorted(line for line in text.splitlines() if line.endswith(" ... ok"))
    with open(args.report, "w") as f:
        f.write("\n".join(lines) + f"\n{len(lines)} tests passed\n")
    sys.stdout.write(f"\ntest report: {len(lines)} tests passed\n")


def _excerpt(text, head=8000, tail=20000):
    """pytest's output for the action's log: all of it, or for a long suite
    its beginning (the header: versions, what a conftest reports, what was
    collected) and its end (failures, warnings, the summary line), with the
    per-test lines between left to the report, which has every one."""
    if len(text) <= head + tail:
        return text
    start = text[:head]
    start = start[:start.rfind("\n") + 1]
    end = text[-tail:]
    end = end[end.find("\n") + 1:]
    elided = text.count("\n") - start.count("\n") - end.count("\n")
    return (start + f"... {elided} lines of pytest's output left out here; every test's outcome is in "
            "test-report.txt ...\n" + end)


def run_pytest(py, args, work):
    """The tests directory is copied (not the source tree beside it, so the
    installed wheel is what gets imported) and run with pytest; the report
    comes from pytest's own results (pytest_report.py), hypothesis runs
    derandomized. A failing suite still writes its report and prints the
    failures, then fails the action."""
    import json

    root = os.path.join(work, "t")
    shutil.copytree(os.path.join(args.tests_dir, args.tests_subdir),
                    os.path.join(root, os.path.basename(args.tests_subdir.rstrip("/"))))
    with open(os.path.join(root, "pytest.ini"), "w") as f:
        f.write("[pytest]\n")  # this directory is the rootdir; the package's own config is not read
    plugins = os.path.join(work, "pytest-plugins")
    os.mkdir(plugins)
    shutil.copyfile(args.pytest_plugin, os.path.join(plugins, "pytest_report.py"))
    report_json = os.path.join(work, "report.json")
    argv = [*py, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-p", "pytest_report", "--color=no"]
    jobs = int(os.environ.get("HERMETIC_JOBS", "1"))
    if args.xdist:
        argv += ["-n", str(max(1, jobs))]
    argv += args.pytest_arg
    env = dict(os.environ, PYTHONPATH=plugins, HERMETIC_PYTEST_REPORT=report_json)
    proc = subprocess.run(argv, cwd=root, capture_output=True, text=True, env=env)
    sys.stdout.write(_excerpt(proc.stdout + proc.stderr))
    try:
        with open(report_json, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        sys.stdout.write("\npytest wrote no results (it did not get as far as running the suite)\n")
        sys.exit(proc.returncode or 1)
    summary = ", ".join(data["summary"])  # pytest's own words, in its order
    lines = [f"{nodeid} {outcome.upper()}" for nodeid, outcome in data["results"]]
    with open(args.report, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n" + (summary or "no tests ran") + "\n")
    if proc.returncode != 0:
        for fail in data["failures"][:20]:
            sys.stdout.write(f"\n---- {fail['nodeid']} ({fail['when']}) ----\n{fail['text']}\n")
        sys.stdout.write(f"\ntest report: {summary or 'no tests ran'} (pytest exit code {proc.returncode})\n")
        sys.exit(proc.returncode)
    sys.stdout.write(f"\ntest report: {summary}\n")


if __name__ == "__main__":
    main()

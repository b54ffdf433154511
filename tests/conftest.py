"""Shared fixtures. Every write goes under tmp_path; the one cache shared
between xdist workers (the warm flagship store) is a hermetic store, whose
contract is exactly that concurrent builds may share it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FLAGSHIP = "//wheel:linux-x86_64"
#: the host interpreter's tag (what an sdist's own backend builds for here)
HOST_PY = f"cp{sys.version_info.major}{sys.version_info.minor}"


def pinned_openssl_version() -> str:
    """The OpenSSL release the recipe pins (recipes/openssl/BUILD.toml)."""
    import tomllib

    return str(tomllib.loads((REPO / "recipes/openssl/BUILD.toml").read_text())["openssl"]["version"])
ALL_WHEELS = "//wheel:all"  # the six platforms

def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller; xdist workers inherit the variable
        import tempfile

        from reliability import ENV

        fd, path = tempfile.mkstemp(prefix="hermetic-reliability-", suffix=".jsonl")
        os.close(fd)
        os.environ[ENV] = path


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    if hasattr(config, "workerinput"):
        return
    from reliability import ENV, summary

    path = Path(os.environ.get(ENV, "/nonexistent"))
    lines = summary(path)
    if lines:
        terminalreporter.section("reliability: what was tried")
        for line in lines:
            terminalreporter.write_line(line)
    path.unlink(missing_ok=True)


#: marker -> (why a test carries it, whether this machine lacks it). Under CI nothing but the host OS
#: and an explicit HERMETIC_OFFLINE=1 skips a test: scripts/setup.sh installs everything else, and a
#: missing piece must fail the run, not quietly shrink it.
_NEEDS = {
    "linux": ("needs a Linux host", lambda: sys.platform != "linux"),
    "macos": ("needs a macOS host", lambda: sys.platform != "darwin"),
    "windows": ("needs a Windows host", lambda: sys.platform != "win32"),
    "root": ("needs root (CI runs as root)", lambda: os.geteuid() != 0),
    "bwrap": ("needs bubblewrap (scripts/setup.sh installs it)", lambda: shutil.which("bwrap") is None),
    "network": ("fetches through pip's index or Debian's archive, and HERMETIC_OFFLINE=1 is set",
                lambda: os.environ.get("HERMETIC_OFFLINE") == "1"),
    "chromium": ("needs Debian's chromium (scripts/setup.sh installs it)", lambda: shutil.which("chromium") is None),
    "needs_host_openssl": ("needs the host's OpenSSL headers (libssl-dev; scripts/setup.sh installs it)",
                           lambda: not Path("/usr/include/openssl/crypto.h").exists()),
}
_ALWAYS = {"linux", "macos", "windows", "network"}  # skipped even under CI


# Tests that need one of the expensive session fixtures run on one xdist
# worker, one after another: split over two, the second worker would wait on
# the fixture's lock, idle, for as long as the first takes to build it (CI
# lost ten minutes that way to byop's). xdist's own --dist loadgroup cannot
# do it with pytest 9.2 (it renames the items' nodeid, which pytest 9.2 no
# longer reads), so the scheduler below groups by file name itself.
GROUPS = {"test_platforms.py": "all-wheels", "test_remote_exec.py": "all-wheels", "test_byop.py": "byop",
          "test_interpreter.py": "cpython", "test_matrix.py": "cpython", "test_thirdparty.py": "pynacl"}
# The order work is handed out in: the longest group first, the unit tests
# while the first worker builds the warm store, the other groups, single
# integration tests last, to even out the end.
RANK = {"all-wheels": 0, None: 1, "cpython": 2, "byop": 3, "pynacl": 4, "integration": 5}


def _group(nodeid: str) -> str | None:
    return GROUPS.get(nodeid.split("::", 1)[0].rsplit("/", 1)[-1])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # type: ignore[no-untyped-def]
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """xdist's scope scheduling with a scope per fixture group (one
        test per scope otherwise), handed out in collection order."""

        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid) or nodeid

    config.option.loadscopereorder = False
    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        group = _group(item.nodeid)
        if group is None and "integration" in item.keywords:
            group = "integration"
        return RANK[group]

    items.sort(key=rank)  # stable: pytest's order within each rank
    ci = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
    lacking = {mark: why for mark, (why, lacks) in _NEEDS.items() if (mark in _ALWAYS or not ci) and lacks()}
    for item in items:
        for mark, why in lacking.items():
            if mark in item.keywords:
                item.add_marker(pytest.mark.skip(reason=why))
                break


@pytest.fixture(scope="session", autouse=True)
def default_store(tmp_path_factory: pytest.TempPathFactory):
    """Commands a test runs without --cache-dir use a store under the
    session's temporary directory, never the user's ~/.cache/hermetic."""
    path = tmp_path_factory.mktemp("default-store")
    old = os.environ.get("HERMETIC_CACHE_DIR")
    os.environ["HERMETIC_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        del os.environ["HERMETIC_CACHE_DIR"]
    else:
        os.environ["HERMETIC_CACHE_DIR"] = old


@pytest.fixture(autouse=True)
def check_os_environ_stable(default_store):
    before = dict(os.environ)
    yield
    after = dict(os.environ)
    for env in (before, after):
        env.pop("PYTEST_CURRENT_TEST", None)
    assert before == after, f"test changed os.environ: {set(before) ^ set(after)}"


def copy_workspace(dest: Path) -> Path:
    """A fresh copy of this repository's workspace (BUILD files and sources)."""
    top = {".git", "hermetic-out", ".pytest_cache", "tests", "bench", ".ci", "build", ".mypy_cache", ".ruff_cache",
           ".hypothesis"}

    def ignore(directory: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
        if Path(directory) == REPO:
            # and the virtual environments (hundreds of MB, nothing a build reads)
            skip |= (top & set(names)) | {n for n in names if n.startswith(".venv")}
        return skip

    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    return dest


def hermetic_cli(*args: str, cwd: Path, check: bool = True,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `hermetic` command (a separate process, as a user would)."""
    proc = subprocess.run([sys.executable, "-m", "hermetic", *args], cwd=cwd, capture_output=True, text=True,
                          env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"hermetic {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def warm_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding a complete flagship build: the one cold OpenSSL build
    the suite pays for, shared by every test (and xdist worker) that only
    needs it warm. The first worker to get the lock builds; the rest wait and
    then find everything cached."""
    shared = tmp_path_factory.getbasetemp().parent / "warm-store"
    shared.mkdir(exist_ok=True)
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        store = shared / "cache"
        if not (shared / ".done").exists():
            shutil.rmtree(shared / "ws", ignore_errors=True)  # a failed earlier attempt
            ws = copy_workspace(shared / "ws")
            hermetic_cli("--cache-dir", str(store), "build", FLAGSHIP, cwd=ws)
            (shared / ".done").write_text("ok")
    return store


@pytest.fixture(scope="session")
def all_wheels(warm_store: Path) -> Path:
    """A workspace that built all six platform wheels in one invocation, on
    top of the warm store (so the flagship's actions are shared, and each
    other platform costs one cold OpenSSL build). Returns the workspace; its
    build log is ``build.log`` beside it."""
    shared = warm_store.parent
    with open(shared / ".lock-all", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ws = shared / "ws-all"
        if not (shared / ".done-all").exists():
            shutil.rmtree(ws, ignore_errors=True)
            copy_workspace(ws)
            proc = hermetic_cli("--cache-dir", str(warm_store), "build", ALL_WHEELS, cwd=ws)
            (shared / "build-all.log").write_text(proc.stdout + proc.stderr)
            (shared / ".done-all").write_text("ok")
    return ws


_SUMMARY = re.compile(r"\bhermetic: (\d+) actions: (\d+) executed, (\d+) from cache"
                      r"(?:, (\d+) of them from the remote cache)?(?:; \d+ ran on remote workers[^(]*(?:\([^)]*\))?"
                      r"(?:, the rest here)?)? \(")


def build_counts(stderr: str) -> tuple[int, int, int, int]:
    """(actions, executed, cached, of them remote) from the one summary line
    a build prints, parsed whole ("10 executed" is not "0 executed")."""
    found = _SUMMARY.findall(stderr)
    assert len(found) == 1, f"expected one build summary line in:\n{stderr}"
    return tuple(int(x or 0) for x in found[0])  # type: ignore[return-value]


def copy_store(src: Path, dest: Path) -> Path:
    """A private copy of a store that other builds may be using right now:
    its results and blobs, not its staging area (``tmp/``: running actions'
    directories come and go), its tree checkouts (``trees/``: made again on
    first use) or the hidden temporary files of writes in progress. The
    history database is copied with SQLite's backup API: a build writing to
    it checkpoints its write-ahead log, so ``history.db-wal`` can vanish
    between a directory listing and its copy."""
    def ignore(directory: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n.startswith(".")}
        if Path(directory) == src:
            skip |= {"tmp", "trees"} & set(names)
            skip |= {n for n in names if n.startswith("history.db")}
        return skip

    shutil.copytree(src, dest, ignore=ignore)
    if (src / "history.db").exists():
        with contextlib.closing(sqlite3.connect(src / "history.db", timeout=60)) as live, \
                contextlib.closing(sqlite3.connect(dest / "history.db")) as copy:
            live.backup(copy)
    return dest


def machine_paths_in(data: bytes, *extra: str) -> set[str]:
    """Absolute paths of the build machine found in *data* (a binary): the
    sandbox roots, home, the venv, /tmp, /usr ... and any *extra*."""
    text = data.decode("latin-1")
    machine = {str(Path.home()), sys.prefix, sys.base_prefix, "/hermetic/", "/build/", "/tmp/", "/root/",
               "/home/", "/usr/", os.getcwd(), *extra}
    return {m for m in machine if m in text}


@pytest.fixture(scope="session")
def cpython(warm_store: Path) -> Path:
    """A workspace that built CPython 3.13 (//recipes/python:cpython-3.13) once on the warm store (its
    OpenSSL is the flagship's; zlib, libffi and CPython are built here)."""
    shared = warm_store.parent
    with open(shared / ".lock-cpython", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ws = shared / "ws-cpython"
        if not (shared / ".done-cpython").exists():
            shutil.rmtree(ws, ignore_errors=True)
            copy_workspace(ws)
            hermetic_cli("--cache-dir", str(warm_store), "build", "//recipes/python:cpython-3.13", cwd=ws)
            (shared / ".done-cpython").write_text("ok")
    return ws

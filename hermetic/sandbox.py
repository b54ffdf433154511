"""The Sandbox protocol platform plugins implement, and the unsandboxed
fallback.

A sandbox runs one command with: its inputs read-only, a private output and
scratch directory, a cleared environment, and whatever else it can enforce. It
says what it enforces in :meth:`Sandbox.profile`, which is part of every action
key, so results from a weaker sandbox are never mistaken for a stronger one's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, final

import attrs

__all__ = ["Completed", "Layout", "LocalSandbox", "Sandbox", "SandboxConfig", "SandboxRequest", "Variation",
           "base_environment", "can_shuffle_dirs", "faketime_environment", "run_process", "shuffled_view",
           "terminate_all", "terminate_thread"]


@attrs.frozen
class SandboxConfig:
    """What the user asked for: ``mode`` is "auto", "bwrap" or "none"."""

    mode: str = "auto"
    #: the build's store, where a plugin caches what it probed (None: the default store)
    cache_dir: Path | None = None


#: what each Variation field is called in reports (verify's table, the progress lines)
VARIED = {
    "root": "build root", "uid": "uid", "gid": "gid", "umask": "umask", "timezone": "TZ", "locale": "locale",
    "hostname": "hostname", "clock_offset": "wall clock", "jobs": "-j", "shuffle_dirs": "directory order",
}


@attrs.frozen
class Variation:
    """Conditions ``hermetic verify`` changes for its rebuild, to show that no
    output depends on them (the reprotest idea). The engine applies the
    environment, umask, job count and directory order; a sandbox applies what
    only it can (build root, uid/gid, hostname, clock) and lists those names
    in its ``varies`` attribute."""

    root: str = "/build/hermetic-verify"
    uid: int = 2357
    gid: int = 2357
    umask: int = 0o077
    timezone: str = "<+14>-14"
    locale: str = "C.UTF-8"
    hostname: str = "verify-host"
    clock_offset: str = "+397d"
    jobs: int = 3
    shuffle_dirs: bool = True


@attrs.frozen
class Layout:
    """Paths as the command sees them."""

    inputs: str
    outputs: str
    work: str
    home: str
    tmp: str

    def expand(self, arg: str | dict[str, str]) -> str:
        """An argv word as the command sees it: ``{"in": rel}``, ``{"out":
        rel}`` and ``{"work": rel}`` become paths under this layout."""
        if not isinstance(arg, dict):
            return arg
        (kind, rel), = arg.items()
        base = {"in": self.inputs, "out": self.outputs, "work": self.work}[kind]
        return f"{base}/{rel}" if rel else base


@attrs.frozen
class SandboxRequest:
    """One command to run. Host directories: *inputs* (to be read-only),
    *outputs* and *work* (writable, private to this action); *mounts* are
    host paths (toolchains) to expose read-only at the same path."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    inputs: Path
    outputs: Path
    work: Path
    mounts: tuple[str, ...] = ()
    log: Path | None = None
    timeout: float | None = None
    variation: Variation | None = None
    #: (host directory, where the command sees it): read-only toolchain roots
    binds: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class Completed:
    exit_code: int
    timed_out: bool = False


class Sandbox(Protocol):
    """How actions are isolated on one host."""

    name: str
    #: the :class:`Variation` fields this sandbox applies itself (optional)
    varies: frozenset[str]

    def profile(self) -> dict[str, Any]:
        """What this sandbox enforces, as canonical data (part of action keys)."""
        ...

    def layout(self, req_dirs: tuple[Path, Path, Path], variation: Variation | None = None) -> Layout:
        """Where inputs/outputs/work appear to the command."""
        ...

    def run(self, request: SandboxRequest) -> Completed:
        """Run *request* to completion; write its combined output to ``log``."""
        ...


def base_environment(layout: Layout, source_date_epoch: int, variation: Variation | None = None) -> dict[str, str]:
    """The fixed environment every action starts from (with ``verify``'s
    changes, when given a variation)."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": layout.home,
        "TMPDIR": layout.tmp,
        "TZ": "UTC",
        "LC_ALL": "C",
        "LANG": "C",
        "SOURCE_DATE_EPOCH": str(source_date_epoch),
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "IN": layout.inputs,
        "OUT": layout.outputs,
        "WORK": layout.work,
    }
    if variation is not None:
        env.update(TZ=variation.timezone, LC_ALL=variation.locale, LANG=variation.locale)
    return env


def faketime_environment(offset: str) -> dict[str, str]:
    """Environment that shifts the wall clock a process sees by *offset*
    (libfaketime, ``+397d``); empty when libfaketime is not installed. File
    timestamps and the monotonic clock stay real, so make still works."""
    for lib in sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1")):
        return {"LD_PRELOAD": str(lib), "FAKETIME": offset, "DONT_FAKE_MONOTONIC": "1", "NO_FAKE_STAT": "1"}
    return {}


UMASK = 0o022


@contextlib.contextmanager
def shuffled_view(path: Path, *, enabled: bool) -> Iterator[Path]:
    """*path* seen through disorderfs, which lists every directory in a
    random order (and pads st_blocks), so a command that depends on
    directory order shows it; *path* itself when not *enabled* or when
    disorderfs (FUSE) is not available here."""
    if not enabled or shutil.which("disorderfs") is None or not os.path.exists("/dev/fuse"):
        yield path
        return
    mnt = path.with_name(path.name + ".shuffled")
    mnt.mkdir()
    argv = ["disorderfs", "--quiet", "--shuffle-dirents=yes"]
    if os.geteuid() == 0:
        argv.append("--multi-user=yes")
    done = subprocess.run([*argv, str(path), str(mnt)], stdin=subprocess.DEVNULL, capture_output=True,
                          check=False)
    if done.returncode != 0:
        mnt.rmdir()
        from hermetic.errors import SandboxError

        raise SandboxError(f"disorderfs could not mount {path}: {done.stderr.decode(errors='replace').strip()}",
                           hint="verify with --no-shuffle-dirs, or make FUSE usable here", reason="sandbox")
    try:
        yield mnt
    finally:
        unmount = shutil.which("fusermount3") or "fusermount"
        for _ in range(50):
            if subprocess.run([unmount, "-u", "-q", str(mnt)], capture_output=True,
                              check=False).returncode == 0:
                break
            time.sleep(0.1)  # still busy: the action's processes are exiting
        with contextlib.suppress(OSError):
            mnt.rmdir()


def can_shuffle_dirs() -> str | None:
    """None if :func:`shuffled_view` works here, else why not."""
    if shutil.which("disorderfs") is None:
        return "disorderfs is not installed (apt-get install disorderfs)"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    return None

_running: dict[subprocess.Popen[bytes], int] = {}  # process -> the thread that waits for it
_running_lock = threading.Lock()


def run_process(argv: list[str], *, log: Path | None, timeout: float | None, cwd: Path | None = None,
                env: Mapping[str, str] | None = None, umask: int = UMASK,
                pass_fds: tuple[int, ...] = ()) -> Completed:
    """Run one action's process, its output to *log*; :func:`terminate_all`
    can stop it from another thread (an interrupted build)."""
    with open(log or os.devnull, "wb") as out:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=dict(env) if env is not None else None, pass_fds=pass_fds,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, umask=umask)
        except OSError as exc:
            out.write(f"cannot start {argv[0]}: {exc}\n".encode())
            return Completed(127)
        with _running_lock:
            _running[proc] = threading.get_ident()
        try:
            return Completed(proc.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return Completed(-9, timed_out=True)
        finally:
            with _running_lock:
                _running.pop(proc, None)


def terminate_all() -> None:
    """Kill every action process still running."""
    with _running_lock:
        procs = list(_running)
    for p in procs:
        with contextlib.suppress(OSError):
            p.kill()


def terminate_thread(ident: int) -> None:
    """Kill the action process that thread *ident* runs (a cancelled
    remote lease); the sandbox takes the rest of the action down with it."""
    with _running_lock:
        procs = [p for p, t in _running.items() if t == ident]
    for p in procs:
        with contextlib.suppress(OSError):
            p.kill()


@final
class LocalSandbox:
    """No isolation at all: a cleared environment and private directories,
    nothing more. Used only when asked for (``--sandbox=none``) or when no
    sandbox is available and the user accepted that; its profile says so, so
    its results never satisfy a sandboxed build's cache lookup."""

    name = "none"
    varies = frozenset({"clock_offset"})

    def profile(self) -> dict[str, Any]:
        return {"name": "none", "enforces": ["clear-env", "private-dirs", "umask"]}

    def layout(self, req_dirs: tuple[Path, Path, Path], variation: Variation | None = None) -> Layout:
        i, o, w = req_dirs
        home = w / ".home"
        home.mkdir(exist_ok=True)
        tmp = w / ".tmp"
        tmp.mkdir(exist_ok=True)
        return Layout(str(i), str(o), str(w), str(home), str(tmp))

    def run(self, request: SandboxRequest) -> Completed:
        env = dict(request.env)
        v = request.variation
        if v is not None:
            env.update(faketime_environment(v.clock_offset))
        return run_process(list(request.argv), log=request.log, timeout=request.timeout, cwd=request.work,
                           env=env, umask=v.umask if v else UMASK)

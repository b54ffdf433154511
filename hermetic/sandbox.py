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
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, final

import attrs

__all__ = ["Completed", "Layout", "LocalSandbox", "Sandbox", "SandboxConfig", "SandboxRequest",
           "base_environment", "run_process", "terminate_all"]


@attrs.frozen
class SandboxConfig:
    """What the user asked for: ``mode`` is "auto", "bwrap" or "none"."""

    mode: str = "auto"


@attrs.frozen
class Layout:
    """Paths as the command sees them."""

    inputs: str
    outputs: str
    work: str
    home: str
    tmp: str


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


@attrs.frozen
class Completed:
    exit_code: int
    timed_out: bool = False


class Sandbox(Protocol):
    """How actions are isolated on one host."""

    name: str

    def profile(self) -> dict[str, Any]:
        """What this sandbox enforces, as canonical data (part of action keys)."""
        ...

    def layout(self, req_dirs: tuple[Path, Path, Path]) -> Layout:
        """Where inputs/outputs/work appear to the command."""
        ...

    def run(self, request: SandboxRequest) -> Completed:
        """Run *request* to completion; write its combined output to ``log``."""
        ...


def base_environment(layout: Layout, source_date_epoch: int) -> dict[str, str]:
    """The fixed environment every action starts from."""
    return {
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


UMASK = 0o022

_running: set[subprocess.Popen[bytes]] = set()
_running_lock = threading.Lock()


def run_process(argv: list[str], *, log: Path | None, timeout: float | None, cwd: Path | None = None,
                env: Mapping[str, str] | None = None) -> Completed:
    """Run one action's process, its output to *log*; :func:`terminate_all`
    can stop it from another thread (an interrupted build)."""
    with open(log or os.devnull, "wb") as out:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=dict(env) if env is not None else None,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, umask=UMASK)
        except OSError as exc:
            out.write(f"cannot start {argv[0]}: {exc}\n".encode())
            return Completed(127)
        with _running_lock:
            _running.add(proc)
        try:
            return Completed(proc.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return Completed(-9, timed_out=True)
        finally:
            with _running_lock:
                _running.discard(proc)


def terminate_all() -> None:
    """Kill every action process still running."""
    with _running_lock:
        procs = list(_running)
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

    def profile(self) -> dict[str, Any]:
        return {"name": "none", "enforces": ["clear-env", "private-dirs", "umask"]}

    def layout(self, req_dirs: tuple[Path, Path, Path]) -> Layout:
        i, o, w = req_dirs
        home = w / ".home"
        home.mkdir(exist_ok=True)
        tmp = w / ".tmp"
        tmp.mkdir(exist_ok=True)
        return Layout(str(i), str(o), str(w), str(home), str(tmp))

    def run(self, request: SandboxRequest) -> Completed:
        return run_process(list(request.argv), log=request.log, timeout=request.timeout, cwd=request.work,
                           env=request.env)

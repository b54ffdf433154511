"""The Sandbox protocol platform plugins implement, and the unsandboxed
fallback.

A sandbox runs one command with: its inputs read-only, a private output and
scratch directory, a cleared environment, and whatever else it can enforce. It
says what it enforces in :meth:`Sandbox.profile`, which is part of every action
key, so results from a weaker sandbox are never mistaken for a stronger one's.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, final

import attrs

__all__ = ["Completed", "Layout", "LocalSandbox", "Sandbox", "SandboxConfig", "SandboxRequest",
           "base_environment"]


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
        log = open(request.log or os.devnull, "wb")
        with log:
            try:
                proc = subprocess.run(
                    list(request.argv), cwd=request.work, env=dict(request.env),
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    timeout=request.timeout, umask=UMASK,
                )
            except subprocess.TimeoutExpired:
                return Completed(-9, timed_out=True)
            except OSError as exc:
                log.write(f"cannot start {request.argv[0]}: {exc}\n".encode())
                return Completed(127)
        return Completed(proc.returncode)

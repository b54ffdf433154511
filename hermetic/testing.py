"""Helpers for testing hermetic and its plugins: a fake sandbox that runs
Python functions instead of processes, and workspace builders."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hermetic.sandbox import Completed, Layout, SandboxRequest, Variation

__all__ = ["FakeSandbox", "write_workspace"]

Program = Callable[[list[str], dict[str, str], Path], int]


class FakeSandbox:
    """Implements the Sandbox protocol without spawning anything: ``argv[0]``
    names a Python function registered in ``programs``; it gets the argv
    (paths already pointing at host directories), the env and the work dir,
    and returns an exit code. Every call is recorded in ``runs``."""

    name = "fake"
    varies: frozenset[str] = frozenset()

    def __init__(self, programs: dict[str, Program] | None = None) -> None:
        self.programs = dict(programs or {})
        self.runs: list[list[str]] = []

    def profile(self) -> dict[str, Any]:
        return {"name": "fake", "enforces": []}

    def layout(self, req_dirs: tuple[Path, Path, Path], variation: Variation | None = None) -> Layout:
        i, o, w = req_dirs
        return Layout(str(i), str(o), str(w), str(w), str(w))

    def run(self, request: SandboxRequest) -> Completed:
        argv = list(request.argv)
        self.runs.append(argv)
        prog = self.programs.get(argv[0])
        if prog is None:
            if request.log:
                request.log.write_text(f"fake sandbox: no program {argv[0]!r}\n")
            return Completed(127)
        return Completed(prog(argv, dict(request.env), request.work))


def write_workspace(root: Path, files: dict[str, str]) -> Path:
    """Create *files* (relative path -> text, dedented) under *root*."""
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


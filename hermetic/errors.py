"""The HermeticError tree: every error a user is meant to read."""

from __future__ import annotations

import attrs


@attrs.frozen(auto_exc=True, eq=False)
class HermeticError(Exception):
    """Root of every error hermetic reports to a user.

    Subclasses carry data and build their message in ``__str__``; ``reason`` is
    a stable slug for tests and tools, ``hint`` says what to do.
    """

    message: str
    hint: str | None = None
    reason: str = "error"

    def __str__(self) -> str:
        return self.message


@attrs.frozen
class Location:
    """Where in a BUILD file something was written."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


def located(where: Location | None, message: str) -> str:
    return f"{where}: {message}" if where else message


@attrs.frozen(auto_exc=True, eq=False)
class BuildFileError(HermeticError):
    """A BUILD.toml problem, with file and line."""

    where: Location | None = None
    reason: str = "build-file"

    def __str__(self) -> str:
        return located(self.where, self.message)


@attrs.frozen(auto_exc=True, eq=False)
class LabelError(HermeticError):
    reason: str = "bad-label"


@attrs.frozen(auto_exc=True, eq=False)
class CycleError(HermeticError):
    reason: str = "cycle"


@attrs.frozen(auto_exc=True, eq=False)
class AnalysisError(HermeticError):
    """A rule rejected its target's attributes or dependencies."""

    where: Location | None = None
    reason: str = "analysis"

    def __str__(self) -> str:
        return located(self.where, self.message)


@attrs.frozen(auto_exc=True, eq=False)
class ToolchainError(HermeticError):
    reason: str = "toolchain"


@attrs.frozen(auto_exc=True, eq=False)
class SandboxError(HermeticError):
    reason: str = "sandbox"


@attrs.frozen(auto_exc=True, eq=False)
class FetchError(HermeticError):
    """A pinned download could not be obtained or did not verify."""

    reason: str = "fetch"


@attrs.frozen(auto_exc=True, eq=False)
class ArchiveError(HermeticError):
    """An archive is malformed or tries to write outside its directory."""

    reason: str = "archive"


@attrs.frozen(auto_exc=True, eq=False)
class CacheError(HermeticError):
    reason: str = "cache"


@attrs.frozen(auto_exc=True, eq=False)
class ActionFailed(HermeticError):
    """An action's command exited non-zero or did not produce its outputs."""

    action: str = ""
    command: str = ""
    exit_code: int | None = None
    output_tail: str = ""
    reason: str = "action-failed"

    def __str__(self) -> str:
        lines = [f"action {self.action} failed: {self.message}"]
        if self.command:
            lines.append(f"  command: {self.command}")
        if self.output_tail:
            lines.append("  output (last lines):")
            lines.extend("    " + line for line in self.output_tail.splitlines())
        return "\n".join(lines)


@attrs.frozen(auto_exc=True, eq=False)
class BuildFailed(HermeticError):
    """One or more actions failed (with --keep-going, all of them)."""

    failures: tuple[HermeticError, ...] = ()
    reason: str = "build-failed"

    def __str__(self) -> str:
        return "\n".join([self.message, *(str(f) for f in self.failures)])


def did_you_mean(word: str, choices: list[str] | tuple[str, ...] | set[str]) -> str | None:
    """Return a hint naming the closest choice, or None."""
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f'did you mean "{close[0]}"?' if close else None


@attrs.frozen(auto_exc=True, eq=False)
class RemoteError(HermeticError):
    """Misconfiguration of a remote cache (a remote that fails at run time
    never fails the build: hermetic falls back to local execution)."""

    reason: str = "remote"

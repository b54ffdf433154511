"""What a build tells whoever watches it (the live display, plain lines,
``--event-log``, a plugin): one frozen class per happening. The library
never prints; it calls ``report(event)`` with one of these."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

if TYPE_CHECKING:
    from hermetic.errors import HermeticError
    from hermetic.model import Action

__all__ = ["ActionFailure", "ActionFinished", "ActionStarted", "BuildFinished", "BuildStarted", "Event",
           "FetchMismatch", "Note", "Report", "VerifyBegun", "VerifyFinished", "VerifyStarted", "ignore"]


def _strings(items: Sequence[object]) -> tuple[str, ...]:
    return tuple(str(t) for t in items)


def _records(items: Sequence[Mapping[str, Any]]) -> tuple[Mapping[str, Any], ...]:
    return tuple(items)


@attrs.frozen
class BuildStarted:
    total: int  # actions in the closure
    targets: tuple[str, ...] = attrs.field(converter=_strings)


@attrs.frozen
class ActionStarted:
    """A cache miss: *action* runs now, for *reasons* (``why``'s records)."""

    action: Action
    key: str | None = None
    reasons: tuple[Mapping[str, Any], ...] = attrs.field(converter=_records, default=())


@attrs.frozen
class ActionFinished:
    """*action* is done: it ran, or (*cached*) a cache served it (*remote*: the team's)."""

    action: Action
    cached: bool
    done: int
    total: int
    key: str | None = None
    seconds: float = 0.0
    bytes: int = 0
    remote: bool = False


@attrs.frozen
class ActionFailure:
    action: Action
    error: HermeticError
    key: str | None = None


@attrs.frozen
class BuildFinished:
    stats: Any  # hermetic._execution.BuildStats
    total: int


@attrs.frozen
class Note:
    message: str
    level: str = "note"  # or "warning": something the user should act on, though the build goes on


@attrs.frozen
class FetchMismatch:
    """A source served other bytes than a pin (the next source is tried)."""

    url: str
    name: str


@attrs.frozen
class VerifyBegun:
    total: int
    applied: Mapping[str, str]
    skipped: Mapping[str, str]
    against_cache: bool


@attrs.frozen
class VerifyStarted:
    action: Action
    index: int
    total: int


@attrs.frozen
class VerifyFinished:
    verdict: Any  # hermetic._verify.Verdict
    index: int
    total: int


Event: TypeAlias = (BuildStarted | ActionStarted | ActionFinished | ActionFailure | BuildFinished | Note
                    | FetchMismatch | VerifyBegun | VerifyStarted | VerifyFinished)
#: who receives a build's events
Report: TypeAlias = Callable[[Event], None]


def ignore(event: Event) -> None:
    """A report that watches nothing."""


def fan_out(reports: Sequence[Report]) -> Report:
    """One report that passes every event to each of *reports*."""
    def report(event: Event) -> None:
        for r in reports:
            r(event)
    return report

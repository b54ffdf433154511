"""What a build tells whoever watches it (the live display, plain lines,
``--event-log``, a plugin): one immutable type per happening. The library
never prints; it calls ``report(event)`` with one of these.

They are ``NamedTuple``s, not attrs classes: every build, the no-op too,
imports this module, and generating ten attrs classes' methods cost it
about 3 ms of start-up."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

if TYPE_CHECKING:
    from hermetic.errors import HermeticError
    from hermetic.model import Action

__all__ = ["ActionFailure", "ActionFinished", "ActionStarted", "BuildFinished", "BuildStarted", "Event",
           "FetchMismatch", "Note", "Report", "VerifyBegun", "VerifyFinished", "VerifyStarted", "ignore"]


class BuildStarted(NamedTuple):
    total: int  # actions in the closure
    targets: Sequence[object] = ()  # the labels asked for


class ActionStarted(NamedTuple):
    """A cache miss: *action* runs now, for *reasons* (``why``'s records)."""

    action: Action
    key: str | None = None
    reasons: Sequence[Mapping[str, Any]] = ()


class ActionFinished(NamedTuple):
    """*action* is done: it ran, or (*cached*) a cache served it (*remote*:
    the team's). *where*: ``cache`` (the local store), ``remote-cache``,
    ``local`` (ran here) or ``remote:<worker>`` (ran on a remote executor's
    worker)."""

    action: Action
    cached: bool
    done: int
    total: int
    key: str | None = None
    seconds: float = 0.0
    bytes: int = 0
    remote: bool = False
    where: str = "local"


class ActionFailure(NamedTuple):
    action: Action
    error: HermeticError
    key: str | None = None


class BuildFinished(NamedTuple):
    stats: Any  # hermetic._execution.BuildStats
    total: int


class Note(NamedTuple):
    message: str
    level: str = "note"  # or "warning": something the user should act on, though the build goes on


class FetchMismatch(NamedTuple):
    """A source served other bytes than a pin (the next source is tried)."""

    url: str
    name: str


class VerifyBegun(NamedTuple):
    total: int
    applied: Mapping[str, str]
    skipped: Mapping[str, str]
    against_cache: bool


class VerifyStarted(NamedTuple):
    action: Action
    index: int
    total: int


class VerifyFinished(NamedTuple):
    verdict: Any  # hermetic._verify.Verdict
    index: int
    total: int


Event: TypeAlias = (BuildStarted | ActionStarted | ActionFinished | ActionFailure | BuildFinished | Note
                    | FetchMismatch | VerifyBegun | VerifyStarted | VerifyFinished)
#: who receives a build's events
Report: TypeAlias = Callable[[Event], None]


def ignore(event: Event) -> None:
    """A report that watches nothing."""

"""Showing a build as it happens: a live display on a terminal (rich), plain
lines everywhere else (CI, pipes, ``--progress=plain``), and a JSON-lines
event log (``--event-log FILE``) for tools.

The engine reports events by calling ``report(event)`` with one of
:mod:`hermetic.events`' classes.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from hermetic.events import (ActionFailure, ActionFinished, ActionStarted, BuildFinished, BuildStarted, Event,
                             Note, Report, VerifyBegun, VerifyFinished, VerifyStarted)
from hermetic.sandbox import VARIED

def use_live_display(mode: str, stream: IO[str] | None = None) -> bool:
    """``auto``: live only on an interactive terminal, and never under CI."""
    if mode != "auto":
        return mode == "live"
    stream = stream or sys.stderr
    ci = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
    return not ci and stream.isatty() and os.environ.get("TERM") != "dumb"


class PlainRenderer:
    """One line per action that runs (and per cached one with *verbose*);
    with *explain*, the reasons it ran under its start line."""

    def __init__(self, verbose: bool = False, explain: bool = False, stream: IO[str] | None = None) -> None:
        self.verbose = verbose
        self.explain = explain
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()
        self.started: dict[str, float] = {}

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.handle(event)

    def handle(self, event: Event) -> None:
        if isinstance(event, ActionStarted):
            a = event.action
            self.started[a.id] = time.monotonic()
            self.line(f"[start] {a.describe()}")
            self.reasons(event.reasons)
        elif isinstance(event, ActionFinished):
            a = event.action
            if event.cached:
                if self.verbose:
                    self.line(f"[{event.done}/{event.total}] cached {a.describe()}")
            else:
                secs = time.monotonic() - self.started.get(a.id, time.monotonic())
                self.line(f"[{event.done}/{event.total}] done   {a.describe()} ({secs:.1f}s{_on(event.where)})")
        elif isinstance(event, ActionFailure):
            self.line(f"[failed] {event.action.describe()}")
        elif isinstance(event, Note):
            self.line(f"{event.level}: {event.message}")
        elif isinstance(event, (VerifyBegun, VerifyStarted, VerifyFinished)):
            self.verify(event)

    def reasons(self, reasons: Sequence[Mapping[str, Any]] | None) -> None:
        if not self.explain or not reasons:
            return
        from hermetic._history import describe

        for r in reasons:
            self.line(f"    because: {describe(r)}")
            for c in r.get("because") or []:
                self.line(f"      <- {describe(c)}")

    def verify(self, event: VerifyBegun | VerifyStarted | VerifyFinished) -> None:
        if isinstance(event, VerifyBegun):
            if event.against_cache:
                self.line(f"verify: rebuilding {event.total} actions locally to challenge the cached results")
            else:
                shown = ", ".join(f"{VARIED.get(k, k)} {v}" for k, v in event.applied.items())
                self.line(f"verify: rebuilding {event.total} actions without the cache; varied: {shown}")
                for k, why in event.skipped.items():
                    self.line(f"verify: not varied: {VARIED.get(k, k)}: {why}")
        elif isinstance(event, VerifyStarted):
            self.line(f"[{event.index}/{event.total}] rebuild {event.action.describe()}")
        else:
            v = event.verdict
            status = v.status.upper() if v.status in ("differs", "failed") else v.status
            secs = f" ({v.seconds:.1f}s)" if v.seconds else ""
            self.line(f"[{event.index}/{event.total}] {status:<13} {v.action.describe()}{secs}")
            if v.status == "failed":
                for line in v.error.splitlines()[-20:]:
                    self.line(f"    {line}")

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        pass


class LiveRenderer(PlainRenderer):
    """A live panel under the scrolling lines: done/total, executed vs
    cached, elapsed, and every action running now with its mnemonic, target
    and how long it has run. Lines for finished actions scroll above it."""

    def __init__(self, verbose: bool = False, explain: bool = False, stream: IO[str] | None = None) -> None:
        super().__init__(verbose, explain, stream)
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=self.stream, highlight=False)
        self.t0 = time.monotonic()
        self.total = 0
        self.done = self.executed = self.cached = self.failed = 0
        self.running: dict[str, tuple[Any, float]] = {}
        self.live = Live(console=self.console, get_renderable=self._panel, refresh_per_second=4,
                         transient=True, redirect_stdout=False, redirect_stderr=False)
        self.live.start()

    def handle(self, event: Event) -> None:
        if isinstance(event, BuildStarted):
            self.total = event.total
            return
        if isinstance(event, ActionStarted):
            a = event.action
            self.running[a.id] = (a, time.monotonic())
            if self.explain and event.reasons:
                self.line(f"[dim]run {_esc(a.describe())}[/]")
                self.reasons(event.reasons)
            return
        if isinstance(event, ActionFinished):
            a = event.action
            self.done += 1
            self.total = event.total
            _, t = self.running.pop(a.id, (a, time.monotonic()))
            if event.cached:
                self.cached += 1
                if self.verbose:
                    self.line(f"[dim]cached {_esc(a.describe())}[/]")
            else:
                self.executed += 1
                self.line(f"[green]done[/]   {_esc(a.describe())} "
                          f"[dim]({time.monotonic() - t:.1f}s{_esc(_on(event.where))})[/]")
            return
        if isinstance(event, VerifyBegun):  # the rebuild reports line by line: the panel has done its job
            self.live.stop()
        if isinstance(event, ActionFailure):
            self.failed += 1
            self.running.pop(event.action.id, None)
            self.line(f"[bold red]FAILED[/] {_esc(event.action.describe())}")
            return
        super().handle(event)

    def line(self, text: str) -> None:
        self.console.print(text)

    def reasons(self, reasons: Sequence[Mapping[str, Any]] | None) -> None:
        if not reasons:
            return
        from hermetic._history import describe

        for r in reasons:
            self.console.print(f"    [yellow]because[/] {_esc(describe(r))}")
            for c in r.get("because") or []:
                self.console.print(f"      <- {_esc(describe(c))}")

    def _panel(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        now = time.monotonic()
        grid = Table.grid(padding=(0, 1))
        head = Text.assemble(
            ("hermetic ", "bold"), (f"[{self.done}/{self.total}] ", "bold cyan"),
            (f"{self.executed} executed", "green"), ", ", (f"{self.cached} cached", "blue"),
            *((", ", (f"{self.failed} failed", "red")) if self.failed else ()),
            f", {len(self.running)} running  ", (_clock(now - self.t0), "dim"))
        grid.add_row(head)
        for a, t in sorted(self.running.values(), key=lambda x: x[1]):
            grid.add_row(Text.assemble(("  ⠿ ", "cyan"), (f"{a.mnemonic:<14}", "bold"), f" {a.owner}",
                                       (f" [{a.config}]" if a.config else "", "dim"),
                                       (f"  {now - t:.0f}s", "yellow" if now - t >= 10 else "dim")))
        return grid

    def close(self) -> None:
        self.live.stop()


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _clock(secs: float) -> str:
    m, s = divmod(int(secs), 60)
    return f"{m:02d}:{s:02d}"


def _on(where: str) -> str:
    """Where an executed action ran, for a progress line ("" when here)."""
    if where.startswith("remote:"):
        return f", on remote worker {where[len('remote:'):]}"
    return ", remote action cache" if where == "remote-cache" else ""


class EventLog:
    """``--event-log FILE``: every event as one JSON object per line, with
    a timestamp; the file is written as events happen (flushed per line)."""

    def __init__(self, path: Path, inner: Report) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "w", encoding="utf-8")  # noqa: SIM115: closed by close()
        self.t0 = time.monotonic()

    def __call__(self, event: Event) -> None:
        rec = self.encode(event)
        if rec is not None:
            rec = {"time": round(time.time(), 3), "elapsed": round(time.monotonic() - self.t0, 3), **rec}
            with self.lock:
                self.f.write(json.dumps(rec, sort_keys=True) + "\n")
                self.f.flush()
        self.inner(event)

    @staticmethod
    def encode(event: Event) -> dict[str, Any] | None:
        a = getattr(event, "action", None)
        base = {"action": a.id, "mnemonic": a.mnemonic, "target": str(a.owner), "config": a.config} if a else {}
        if isinstance(event, BuildStarted):
            return {"event": "build-started", "total": event.total, "targets": [str(t) for t in event.targets]}
        if isinstance(event, ActionStarted):
            return {"event": "action-started", **base, "cache": "miss", "key": event.key,
                    "reasons": list(event.reasons)}
        if isinstance(event, ActionFinished):
            status = ("remote" if event.remote else "cached") if event.cached else "executed"
            return {"event": "action-finished", **base, "status": status, "cache": "hit" if event.cached else "miss",
                    "key": event.key, "seconds": round(event.seconds, 3), "bytes": event.bytes,
                    "where": event.where}
        if isinstance(event, ActionFailure):
            return {"event": "action-finished", **base, "status": "failed", "cache": "miss",
                    "key": event.key, "error": str(event.error)[:2000]}
        if isinstance(event, BuildFinished):
            st = event.stats
            return {"event": "build-finished", "total": event.total, "executed": st.executed, "cached": st.cached,
                    "remote": st.remote, "failed": st.failed, "skipped": st.skipped,
                    "seconds": round(st.seconds, 3), "ok": st.failed == 0}
        if isinstance(event, Note):
            return {"event": event.level, "message": event.message}
        return None

    def close(self) -> None:
        self.f.close()

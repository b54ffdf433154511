"""Showing a build as it happens: a live display on a terminal (rich), plain
lines everywhere else (CI, pipes, ``--progress=plain``), and a JSON-lines
event log (``--event-log FILE``) for tools.

The engine reports events by calling ``report(event, **data)``; the events
are ``build-start``, ``action-start`` (a cache miss: the action runs now),
``action-done`` (``cached`` tells whether it ran), ``action-failed``,
``build-done``, ``note`` and verify's ``verify-*``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

Report = Callable[..., None]

_VARIED_NAMES = {"root": "build root", "uid": "uid", "gid": "gid", "umask": "umask", "timezone": "TZ",
                 "locale": "locale", "hostname": "hostname", "clock_offset": "clock", "jobs": "-j",
                 "shuffle_dirs": "directory order"}


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

    def __call__(self, event: str, **data: Any) -> None:
        with self.lock:
            self.handle(event, data)

    def handle(self, event: str, data: dict[str, Any]) -> None:
        if event == "action-start":
            a = data["action"]
            self.started[a.id] = time.monotonic()
            self.line(f"[start] {a.describe()}")
            self.reasons(data.get("reasons"))
        elif event == "action-done":
            a = data["action"]
            if data["cached"]:
                if self.verbose:
                    self.line(f"[{data['done']}/{data['total']}] cached {a.describe()}")
            else:
                secs = time.monotonic() - self.started.get(a.id, time.monotonic())
                self.line(f"[{data['done']}/{data['total']}] done   {a.describe()} ({secs:.1f}s)")
        elif event == "action-failed":
            self.line(f"[failed] {data['action'].describe()}")
        elif event == "note":
            self.line(f"note: {data['message']}")
        elif event.startswith("verify-"):
            self.verify(event, data)

    def reasons(self, reasons: list[dict[str, Any]] | None) -> None:
        if not self.explain or not reasons:
            return
        from hermetic._history import describe

        for r in reasons:
            self.line(f"    because: {describe(r)}")
            for c in r.get("because") or []:
                self.line(f"      <- {describe(c)}")

    def verify(self, event: str, data: dict[str, Any]) -> None:
        if event == "verify-begin":
            if data["against_cache"]:
                self.line(f"verify: rebuilding {data['total']} actions locally to challenge the cached results")
            else:
                shown = ", ".join(f"{_VARIED_NAMES.get(k, k)} {v}" for k, v in data["applied"].items())
                self.line(f"verify: rebuilding {data['total']} actions without the cache; varied: {shown}")
                for k, why in data["skipped"].items():
                    self.line(f"verify: not varied: {_VARIED_NAMES.get(k, k)}: {why}")
        elif event == "verify-start":
            self.line(f"[{data['index']}/{data['total']}] rebuild {data['action'].describe()}")
        elif event == "verify-done":
            v = data["verdict"]
            status = v.status.upper() if v.status in ("differs", "failed") else v.status
            secs = f" ({v.seconds:.1f}s)" if v.seconds else ""
            self.line(f"[{data['index']}/{data['total']}] {status:<13} {v.action.describe()}{secs}")
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

    def handle(self, event: str, data: dict[str, Any]) -> None:
        if event == "build-start":
            self.total = data["total"]
            return
        if event == "action-start":
            a = data["action"]
            self.running[a.id] = (a, time.monotonic())
            if self.explain and data.get("reasons"):
                self.line(f"[dim]run {_esc(a.describe())}[/]")
                self.reasons(data.get("reasons"))
            return
        if event == "action-done":
            a = data["action"]
            self.done += 1
            self.total = data["total"]
            _, t = self.running.pop(a.id, (a, time.monotonic()))
            if data["cached"]:
                self.cached += 1
                if self.verbose:
                    self.line(f"[dim]cached {_esc(a.describe())}[/]")
            else:
                self.executed += 1
                self.line(f"[green]done[/]   {_esc(a.describe())} [dim]({time.monotonic() - t:.1f}s)[/]")
            return
        if event == "verify-begin":  # the rebuild reports line by line: the panel has done its job
            self.live.stop()
        if event == "action-failed":
            self.failed += 1
            self.running.pop(data["action"].id, None)
            self.line(f"[bold red]FAILED[/] {_esc(data['action'].describe())}")
            return
        super().handle(event, data)

    def line(self, text: str) -> None:
        self.console.print(text)

    def reasons(self, reasons: list[dict[str, Any]] | None) -> None:
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


class EventLog:
    """``--event-log FILE``: every event as one JSON object per line, with
    a timestamp; the file is written as events happen (flushed per line)."""

    def __init__(self, path: Path, inner: Report) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "w", encoding="utf-8")  # noqa: SIM115: closed by close()
        self.t0 = time.monotonic()

    def __call__(self, event: str, **data: Any) -> None:
        rec = self.encode(event, data)
        if rec is not None:
            rec = {"time": round(time.time(), 3), "elapsed": round(time.monotonic() - self.t0, 3), **rec}
            with self.lock:
                self.f.write(json.dumps(rec, sort_keys=True) + "\n")
                self.f.flush()
        self.inner(event, **data)

    @staticmethod
    def encode(event: str, data: dict[str, Any]) -> dict[str, Any] | None:
        a = data.get("action")
        base = {"action": a.id, "mnemonic": a.mnemonic, "target": str(a.owner), "config": a.config} if a else {}
        if event == "build-start":
            return {"event": "build-started", "total": data["total"], "targets": [str(t) for t in data["targets"]]}
        if event == "action-start":
            return {"event": "action-started", **base, "cache": "miss", "key": data.get("key"),
                    "reasons": data.get("reasons") or []}
        if event == "action-done":
            status = ("remote" if data.get("remote") else "cached") if data["cached"] else "executed"
            return {"event": "action-finished", **base, "status": status,
                    "cache": "hit" if data["cached"] else "miss", "key": data.get("key"),
                    "seconds": round(data.get("seconds") or 0.0, 3), "bytes": data.get("bytes", 0)}
        if event == "action-failed":
            return {"event": "action-finished", **base, "status": "failed", "cache": "miss",
                    "key": data.get("key"), "error": str(data.get("error", ""))[:2000]}
        if event == "build-done":
            st = data["stats"]
            return {"event": "build-finished", "total": data["total"], "executed": st.executed, "cached": st.cached,
                    "remote": st.remote, "failed": st.failed, "skipped": st.skipped,
                    "seconds": round(st.seconds, 3), "ok": st.failed == 0}
        if event == "note":
            return {"event": "note", "message": data["message"]}
        return None

    def close(self) -> None:
        self.f.close()

"""``hermetic build --profile FILE``: where a build's time went, as a trace in
Chrome's trace-event format (what Perfetto and ``chrome://tracing`` open, as
Bazel's ``--profile`` writes): one row per scheduler thread (a job slot),
one span per action, and inside it its phases (key, cache lookup, input
staging, the sandboxed command, output hashing, upload, ...).

``hermetic profile FILE`` reads it back: the time by phase, the busiest
actions, and the critical path (from the last action to finish, back through
the dependency that finished last, as Bazel's profile analysis does);
``--format svg`` draws the timeline.

Recording costs nothing when no profile is asked for: :func:`phase` returns a
shared do-nothing context manager unless a :class:`Profiler` is active."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hermetic.model import Action

_NULL = contextlib.nullcontext()
_active: Profiler | None = None


class Profiler:
    """Collects spans from every scheduler thread (thread-safe)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.started = time.time()
        self.events: list[dict[str, Any]] = []
        self.deps: dict[str, list[str]] = {}
        self._rows: dict[int, int] = {}
        self._lock = threading.Lock()

    def _row(self) -> int:
        ident = threading.get_ident()
        with self._lock:
            return self._rows.setdefault(ident, len(self._rows) + 1)

    def _us(self, t: float) -> int:
        return int((t - self.t0) * 1e6)

    @contextlib.contextmanager
    def span(self, name: str, cat: str, args: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Record the time spent in the ``with`` block; the block may add to
        the yielded args."""
        args = {} if args is None else args
        row, start = self._row(), time.monotonic()
        try:
            yield args
        finally:
            end = time.monotonic()
            event = {"name": name, "cat": cat, "ph": "X", "pid": 1, "tid": row, "ts": self._us(start),
                     "dur": max(1, self._us(end) - self._us(start)), "args": args}
            with self._lock:
                self.events.append(event)

    @contextlib.contextmanager
    def action(self, action: Action) -> Iterator[dict[str, Any]]:
        args: dict[str, Any] = {"id": action.id, "mnemonic": action.mnemonic, "describe": action.describe(),
                                "deps": self.deps.get(action.id, []), "outcome": "failed"}
        with self.span(f"{action.mnemonic} {action.owner}" + (f" [{action.config}]" if action.config else ""),
                       "action", args) as a:
            yield a

    def trace(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        rows = sorted(set(self._rows.values()))
        names = [{"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "hermetic build"}}]
        names += [{"name": "thread_name", "ph": "M", "pid": 1, "tid": r, "args": {"name": f"slot {r}"}}
                  for r in rows]
        names += [{"name": "thread_sort_index", "ph": "M", "pid": 1, "tid": r, "args": {"sort_index": r}}
                  for r in rows]
        with self._lock:
            events = sorted(self.events, key=lambda e: (e["ts"], -e["dur"]))
        return {"traceEvents": names + events, "displayTimeUnit": "ms",
                "otherData": {**meta, "started": self.started, "wall_seconds": time.monotonic() - self.t0}}


def active() -> Profiler | None:
    return _active


def phase(name: str | None) -> contextlib.AbstractContextManager[Any]:
    """A phase of the action this thread is running (a no-op unless
    profiling, or without a *name*)."""
    p = _active
    return _NULL if p is None or name is None else p.span(name, "phase")


def traced(action: Action, run: Callable[[Action], bool], where: Mapping[str, str]) -> bool:
    """``run(action)`` (True if it ran, False if a cache served it), as one
    span of the active profile; its outcome and place in the span's args."""
    p = _active
    if p is None:
        return run(action)
    with p.action(action) as span:
        ran = run(action)
        span["outcome"] = "executed" if ran else where.get(action.id, "cache")
        span["where"] = where.get(action.id, "local")
    return ran


def note_deps(order: Sequence[Action], deps: Callable[[Action], Sequence[Action]]) -> None:
    """What each action waited for: the critical path walks it back."""
    if _active is not None:
        _active.deps.update({a.id: [d.id for d in deps(a)] for a in order})


@contextlib.contextmanager
def recording(path: Path | None, meta: Mapping[str, Any], keep: bool = False) -> Iterator[Profiler | None]:
    """Profile what runs inside; write the trace to *path* at the end, also
    when the build fails (the file is written whole, then renamed). *keep*:
    profile even without a *path* (the caller reads the yielded Profiler)."""
    global _active
    if path is None and not keep:
        yield None
        return
    prof = Profiler()
    _active = prof
    try:
        yield prof
    finally:
        _active = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(prof.trace(meta)))
            tmp.replace(path)


# -- reading a trace ---------------------------------------------------------------------------

class Span:
    __slots__ = ("args", "cat", "end", "name", "row", "start")

    def __init__(self, e: Mapping[str, Any]) -> None:
        self.name: str = e["name"]
        self.cat: str = e.get("cat", "")
        self.row: int = int(e.get("tid", 0))
        self.start = float(e["ts"]) / 1e6
        self.end = float(e["ts"] + e.get("dur", 0)) / 1e6
        self.args: dict[str, Any] = dict(e.get("args") or {})

    @property
    def seconds(self) -> float:
        return self.end - self.start


class Profile:
    """A trace read back: its actions and phases."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        events = [e for e in data.get("traceEvents", []) if e.get("ph") == "X"]
        self.meta: dict[str, Any] = dict(data.get("otherData") or {})
        self.actions = [Span(e) for e in events if e.get("cat") == "action"]
        self.phases = [Span(e) for e in events if e.get("cat") == "phase"]
        self.rows = sorted({s.row for s in self.actions})

    @classmethod
    def load(cls, path: Path) -> Profile:
        from hermetic.errors import HermeticError

        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise HermeticError(f"{path}: not a readable trace ({exc})", reason="usage",
                                hint="write one with hermetic build --profile FILE") from None
        if not isinstance(data, dict) or "traceEvents" not in data:
            raise HermeticError(f"{path}: not a trace-event file (no traceEvents)", reason="usage",
                                hint="write one with hermetic build --profile FILE")
        return cls(data)

    @property
    def wall(self) -> float:
        if not self.actions:
            return float(self.meta.get("wall_seconds", 0.0))
        return max(s.end for s in self.actions) - min(0.0, min(s.start for s in self.actions))

    def by_phase(self) -> dict[str, float]:
        """Seconds per phase, summed over actions; "other" is action time in no phase."""
        out: dict[str, float] = {}
        for p in self.phases:
            out[p.name] = out.get(p.name, 0.0) + p.seconds
        inside = sum(out.values())
        total = sum(a.seconds for a in self.actions)
        out["other"] = max(0.0, total - inside)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def critical_path(self) -> list[Span]:
        """The chain of dependent actions with the most seconds in it (as
        Bazel's critical path: queueing for a slot is not a dependency)."""
        if not self.actions:
            return []
        by_id = {a.args.get("id"): a for a in self.actions}
        best: dict[int, tuple[float, Span | None]] = {}
        for a in sorted(self.actions, key=lambda s: s.end):  # a dependency ends before its user starts
            deps = [by_id[d] for d in a.args.get("deps", []) if d in by_id and id(by_id[d]) in best]
            prev = max(deps, key=lambda d: best[id(d)][0], default=None)
            best[id(a)] = (a.seconds + (best[id(prev)][0] if prev is not None else 0.0), prev)
        node: Span | None = max(self.actions, key=lambda a: best[id(a)][0])
        path = []
        while node is not None:
            path.append(node)
            node = best[id(node)][1]
        return path[::-1]

    def phases_of(self, action: Span) -> list[Span]:
        return [p for p in self.phases if p.row == action.row and action.start <= p.start and p.end <= action.end]


def text_report(prof: Profile, top: int = 10) -> str:
    lines = []
    outcomes: dict[str, int] = {}
    for a in prof.actions:
        outcomes[a.args.get("outcome", "?")] = outcomes.get(a.args.get("outcome", "?"), 0) + 1
    busy = sum(a.seconds for a in prof.actions)
    wall = prof.wall
    lines.append(f"{len(prof.actions)} actions ({', '.join(f'{n} {k}' for k, n in sorted(outcomes.items()))}) "
                 f"on {len(prof.rows)} slots in {wall:.2f}s; busy {busy:.2f}s"
                 + (f" ({busy / (wall * max(1, len(prof.rows))):.0%} of the slots' time)" if wall else ""))
    lines.append("")
    lines.append("time by phase (summed over actions):")
    for name, secs in prof.by_phase().items():
        lines.append(f"  {name:<16} {secs:9.2f}s  {secs / busy if busy else 0:6.1%}")
    lines.append("")
    path = prof.critical_path()
    on_path = sum(a.seconds for a in path)
    lines.append(f"critical path ({len(path)} actions, {on_path:.2f}s of {wall:.2f}s wall):")
    for a in path:
        phases = ", ".join(f"{p.name} {p.seconds:.2f}s" for p in prof.phases_of(a) if p.seconds >= 0.01)
        lines.append(f"  {a.seconds:8.2f}s  {a.args.get('outcome', '?'):<12} {a.args.get('describe', a.name)}"
                     + (f"  ({phases})" if phases else ""))
    lines.append("")
    lines.append(f"the {min(top, len(prof.actions))} longest actions:")
    for a in sorted(prof.actions, key=lambda s: -s.seconds)[:top]:
        lines.append(f"  {a.seconds:8.2f}s  {a.args.get('outcome', '?'):<12} {a.args.get('describe', a.name)}")
    return "\n".join(lines)


COLOURS = {"executed": "#4e79a7", "cache": "#59a14f", "remote-cache": "#b07aa1", "remote": "#b07aa1",
           "failed": "#e15759"}
PHASE_COLOURS = {"key": "#f28e2b", "cache lookup": "#edc948", "stage inputs": "#ff9da7", "sandbox": "#76b7b2",
                 "hash outputs": "#9c755f", "upload": "#bab0ac", "remote lookup": "#d4a6c8", "fetch": "#86bcb6",
                 "extract": "#8cd17d", "clean up": "#d7b5a6", "remote execution": "#b6992d",
                 "fetch inputs": "#499894"}


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def svg_report(prof: Profile, width: int = 1200, links: Mapping[str, str] | None = None) -> str:
    """The timeline: one row per slot, each action a bar coloured by outcome,
    its phases as a strip along its bottom; the critical path outlined."""
    left, top, row_h, bar_h = 70, 40, 34, 24
    wall = prof.wall or 1.0
    scale = (width - left - 20) / wall
    rows = {r: i for i, r in enumerate(prof.rows)}
    height = top + row_h * max(1, len(rows)) + 70
    critical = {id(a) for a in prof.critical_path()}
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">'),
           f'<rect width="{width}" height="{height}" fill="white"/>',
           (f'<text x="{left}" y="18" font-size="13">{_esc(str(prof.meta.get("title", "hermetic build")))}: '
            f'{len(prof.actions)} actions, {wall:.1f}s</text>')]
    step = _tick(wall)
    t = 0.0
    while t <= wall + 1e-9:
        x = left + t * scale
        out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{top + row_h * len(rows)}" '
                   'stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{top - 9}" text-anchor="middle" fill="#555">{t:g}s</text>')
        t += step
    for r, i in rows.items():
        out.append(f'<text x="4" y="{top + i * row_h + bar_h / 2 + 4:.1f}" fill="#333">slot {r}</text>')
    for a in prof.actions:
        i = rows[a.row]
        x, y, w = left + a.start * scale, top + i * row_h, max(0.8, a.seconds * scale)
        colour = COLOURS.get(a.args.get("outcome", ""), "#999")
        stroke = ' stroke="#d62728" stroke-width="2"' if id(a) in critical else ""
        href = (links or {}).get(a.args.get("id", ""))
        out.append((f'<a href="{_esc(href)}">' if href else "") +
                   f'<g><title>{_esc(a.args.get("describe", a.name))}: {a.seconds:.2f}s, '
                   f'{_esc(a.args.get("outcome", "?"))}</title>'
                   f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{bar_h}" fill="{colour}"{stroke}/>')
        for p in prof.phases_of(a):
            pw = p.seconds * scale
            if pw >= 0.5:
                out.append(f'<rect x="{left + p.start * scale:.2f}" y="{y + bar_h - 6}" width="{pw:.2f}" '
                           f'height="6" fill="{PHASE_COLOURS.get(p.name, "#ccc")}"><title>{_esc(p.name)} '
                           f'{p.seconds:.2f}s</title></rect>')
        label = a.args.get("mnemonic", a.name)
        if w > 7 * len(label):
            out.append(f'<text x="{x + 3:.2f}" y="{y + 13}" fill="white">{_esc(label)}</text>')
        out.append("</g></a>" if href else "</g>")
    y = top + row_h * len(rows) + 20
    x = left
    for name, colour in [("executed", COLOURS["executed"]), ("cached", COLOURS["cache"]),
                         ("remote", COLOURS["remote"]), ("failed", COLOURS["failed"])]:
        out.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{colour}"/>'
                   f'<text x="{x + 16}" y="{y + 10}">{name}</text>')
        x += 90
    out.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="white" stroke="#d62728" stroke-width="2"/>'
               f'<text x="{x + 16}" y="{y + 10}">critical path</text>')
    x, y = left, y + 22
    used = {p.name for p in prof.phases}
    for name, colour in PHASE_COLOURS.items():
        if name in used:
            out.append(f'<rect x="{x}" y="{y + 3}" width="12" height="6" fill="{colour}"/>'
                       f'<text x="{x + 16}" y="{y + 10}">{_esc(name)}</text>')
            x += 20 + 7 * len(name)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _tick(wall: float) -> float:
    for step in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if wall / step <= 12:
            return float(step)
    return 1200.0

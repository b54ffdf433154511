"""What each action's last build was made of, so hermetic can say why an
action ran (``hermetic why``, ``build --explain``) without a second execution
log to diff.

Under the store root::

    history.db    SQLite, two tables: ``explain``, each action key's
                  ingredients spelled out (each input's digest, argv, env,
                  toolchain identities, ...), written once per key; and
                  ``actions``, per action id its last key, the key before
                  that, the outcome and why it ran. A build writes its rows
                  in one transaction at its end.

An action's *reasons* compare the ingredients of the key it has now with those
of the key it had the last time it was built. An input made by another action
that ran in the same build is traced back to that action's own reasons, so a
link step names the C file that was edited, not just the object file.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hermetic.model import Action, sha256_json

VERSION = 1
#: records and ingredients held before they are written
BATCH = 2000


def ingredients(action: Action, inputs: Mapping[str, Any], sandbox_profile: Any, sde: int | None) -> dict[str, Any]:
    """Everything that went into *action*'s key, readable: the key has only
    the inputs' Merkle root and the toolchains' fingerprints."""
    d: dict[str, Any] = {
        "kind": action.kind,
        "params": action.params,
        "inputs": {p: e.to_json() for p, e in sorted(inputs.items())},
        "outputs": sorted(o.path for o in action.outputs),
    }
    if action.kind == "run":
        d["toolchains"] = {t.kind: {"fingerprint": t.fingerprint, "identity": t.identity, "tools": t.tools,
                                    "hermetic": t.hermetic,
                                    "wrappers": sha256_json(t.wrappers) if t.wrappers else None}
                           for t in sorted(action.toolchains, key=lambda t: t.kind)}
        d["platform"] = str(action.platform) if action.platform else None
        d["sandbox"] = sandbox_profile
        d["source_date_epoch"] = sde
    return d


def _short(h: str | None) -> str:
    return h[:12] if h else "-"


def _dict_changes(what: str, old: Mapping[str, Any], new: Mapping[str, Any], **extra: Any) -> list[dict[str, Any]]:
    out = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            out.append({"type": what, "name": name, "old": old.get(name), "new": new.get(name), **extra})
    return out


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What differs between two actions' ingredients, most specific first."""
    changes: list[dict[str, Any]] = []
    oi, ni = old.get("inputs", {}), new.get("inputs", {})
    for path in sorted(set(oi) | set(ni)):
        a, b = oi.get(path), ni.get(path)
        if a == b:
            continue
        kind = "input-added" if a is None else "input-removed" if b is None else "input"
        changes.append({"type": kind, "path": path, "old": a, "new": b})
    op, np = old.get("params") or {}, new.get("params") or {}
    if isinstance(op, dict) and isinstance(np, dict):
        changes += _dict_changes("env", op.get("env") or {}, np.get("env") or {})
        if op.get("argv") != np.get("argv"):
            changes.append(_argv_change(op.get("argv") or [], np.get("argv") or []))
        rest_o = {k: v for k, v in op.items() if k not in ("env", "argv")}
        rest_n = {k: v for k, v in np.items() if k not in ("env", "argv")}
        changes += _dict_changes("param", rest_o, rest_n)
    elif op != np:
        changes.append({"type": "param", "name": "params", "old": op, "new": np})
    ot, nt = old.get("toolchains") or {}, new.get("toolchains") or {}
    for kind in sorted(set(ot) | set(nt)):
        a, b = ot.get(kind), nt.get(kind)
        if (a or {}).get("fingerprint") == (b or {}).get("fingerprint"):
            continue
        detail = []
        if a and b:
            detail = _dict_changes("identity", a.get("identity", {}), b.get("identity", {}))
            detail += _dict_changes("tool", a.get("tools", {}), b.get("tools", {}))
            if a.get("wrappers") != b.get("wrappers"):
                detail.append({"type": "wrappers", "name": "wrappers", "old": a.get("wrappers"),
                               "new": b.get("wrappers")})
        changes.append({"type": "toolchain", "name": kind, "old": (a or {}).get("fingerprint"),
                        "new": (b or {}).get("fingerprint"), "changes": detail})
    for field in ("kind", "outputs", "platform", "source_date_epoch"):
        if old.get(field) != new.get(field):
            changes.append({"type": field, "old": old.get(field), "new": new.get(field)})
    if old.get("sandbox") != new.get("sandbox"):
        changes.append({"type": "sandbox", "changes": _dict_changes("sandbox", old.get("sandbox") or {},
                                                                    new.get("sandbox") or {})})
    return changes


def _argv_change(old: list[Any], new: list[Any]) -> dict[str, Any]:
    if len(old) == len(new):
        diffs = [[i, a, b] for i, (a, b) in enumerate(zip(old, new)) if a != b]
        return {"type": "argv", "positions": diffs}
    return {"type": "argv", "old": old, "new": new}


def describe(reason: Mapping[str, Any]) -> str:
    """One line for a reason (or a root cause)."""
    t = reason["type"]
    if t == "new":
        return "never built before (no history for this action in the store)"
    if t == "not-cached":
        return "same inputs as its last build, but the result is no longer in the cache (evicted or damaged)"
    if t == "failed-before":
        return "it failed in its last build and nothing it depends on changed since"
    if t == "no-cache":
        return "the cache was not used (verify's rebuild)"
    if t in ("input", "input-added", "input-removed"):
        path = reason["path"]
        shown = path[4:] if path.startswith("src/") else path
        what = "source file" if path.startswith("src/") else "input"
        a, b = reason.get("old") or {}, reason.get("new") or {}
        if t == "input-added":
            return f"{what} {shown} is new ({_short(b.get('hash'))}, {b.get('size')} bytes)"
        if t == "input-removed":
            return f"{what} {shown} is no longer an input"
        made = f", made by {reason['producer']}" if reason.get("producer") else ""
        return (f"{what} {shown} changed{made}: sha256 {_short(a.get('hash'))} ({a.get('size')} bytes) -> "
                f"{_short(b.get('hash'))} ({b.get('size')} bytes)")
    if t == "env":
        return f"environment variable {reason['name']} changed: {_val(reason['old'])} -> {_val(reason['new'])}"
    if t == "argv":
        if "positions" in reason:
            shown = "; ".join(f"argument {i}: {_val(a)} -> {_val(b)}" for i, a, b in reason["positions"][:5])
            return f"command line changed: {shown}"
        return f"command line changed: {len(reason['old'])} -> {len(reason['new'])} arguments"
    if t == "param":
        return f"parameter {reason['name']} changed: {_val(reason['old'])} -> {_val(reason['new'])}"
    if t == "toolchain":
        if reason.get("old") is None:
            return f"uses toolchain {reason['name']} now"
        if reason.get("new") is None:
            return f"no longer uses toolchain {reason['name']}"
        parts = "; ".join(f"{c['type']} {c['name']}: {_val(c['old'])} -> {_val(c['new'])}"
                          for c in reason.get("changes", [])[:4])
        return f"toolchain {reason['name']} changed identity ({_short(reason['old'])} -> " \
               f"{_short(reason['new'])})" + (f": {parts}" if parts else "")
    if t == "sandbox":
        parts = "; ".join(f"{c['name']}: {_val(c['old'])} -> {_val(c['new'])}" for c in reason.get("changes", []))
        return f"sandbox profile changed: {parts}"
    if t == "key-schema":
        return "hermetic's key encoding changed (new hermetic version)"
    return f"{t} changed: {_val(reason.get('old'))} -> {_val(reason.get('new'))}"


def _val(v: Any, limit: int = 60) -> str:
    text = json.dumps(v) if not isinstance(v, str) else repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def root_causes(reasons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reasons with every input made upstream replaced by what made that
    action run (deduplicated, in order)."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for r in reasons:
        for c in r.get("because") or [r]:
            k = json.dumps(c, sort_keys=True)
            if k not in seen:
                seen.add(k)
                out.append(c)
    return out


def _entry(outcome: str | None, text: str) -> dict[str, Any]:
    """A row as a record; the outcome column wins (mark_cached sets only it)."""
    e = json.loads(text)
    if outcome == "cached" and e.get("outcome") != "cached":
        e.update(outcome="cached", reasons=[], seconds=None, where="cache")
        e.pop("log", None)
    return e  # type: ignore[no-any-return]


class History:
    """The per-action history in one store: an SQLite table (one row per
    action id), so a build reads only the rows of the actions it runs and
    writes only the rows that change, whatever the size of the graph."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / "history.db"
        self._db: sqlite3.Connection | None = None
        self._old: dict[str, dict[str, Any] | None] = {}  # rows read, as of this build's start
        self._new: dict[str, Any] = {}
        self._keep: dict[str, Mapping[str, Any]] = {}  # key -> ingredients, this build
        self._empty: bool | None = None  # the table had no row when this build started
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection | None:
        if self._db is None:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("CREATE TABLE IF NOT EXISTS actions (id TEXT PRIMARY KEY, outcome TEXT, entry TEXT)")
                db.execute("CREATE TABLE IF NOT EXISTS explain (key TEXT PRIMARY KEY, ingredients TEXT)")
                (version,) = db.execute("PRAGMA user_version").fetchone()
                if version != VERSION:
                    db.execute("DELETE FROM actions")
                    db.execute("DELETE FROM explain")
                    db.execute(f"PRAGMA user_version={VERSION}")
            except sqlite3.Error:
                return None
            self._db = db
        return self._db

    def _row(self, action_id: str) -> dict[str, Any] | None:
        if action_id not in self._old:
            db, found = self._conn(), None
            if self._empty is None and db is not None:  # a new store: no row to look for, ever
                with contextlib.suppress(sqlite3.Error), self._lock:
                    self._empty = db.execute("SELECT 1 FROM actions LIMIT 1").fetchone() is None
            if db is not None and not self._empty:
                with contextlib.suppress(sqlite3.Error, ValueError), self._lock:
                    row = db.execute("SELECT outcome, entry FROM actions WHERE id=?", (action_id,)).fetchone()
                    found = _entry(*row) if row else None
            self._old[action_id] = found if isinstance(found, dict) else None
        return self._old[action_id]

    def _all(self) -> dict[str, dict[str, Any]]:
        db = self._conn()
        if db is None:
            return {}
        with contextlib.suppress(sqlite3.Error):
            return {i: _entry(o, e) for i, o, e in db.execute("SELECT id, outcome, entry FROM actions")}
        return {}

    def outcomes(self) -> dict[str, str]:
        """Action id -> its outcome in its last build."""
        db = self._conn()
        if db is None:
            return {}
        with contextlib.suppress(sqlite3.Error):
            return {i: str(o or "") for i, o in db.execute("SELECT id, outcome FROM actions")}
        return {}

    def keys_in_use(self) -> set[str]:
        """Every action's last and previous key."""
        return {k for e in self._all().values() for k in (e.get("key"), e.get("previous_key")) if k}

    def entry(self, action_id: str) -> dict[str, Any] | None:
        """The action's record as of the start of this build (or just made)."""
        return self._new.get(action_id) or self._row(action_id)

    def ingredients_of(self, key: str) -> dict[str, Any] | None:
        if key in self._keep:
            return dict(self._keep[key])
        db, data = self._conn(), None
        if db is not None:
            with contextlib.suppress(sqlite3.Error, ValueError), self._lock:
                row = db.execute("SELECT ingredients FROM explain WHERE key=?", (key,)).fetchone()
                data = json.loads(row[0]) if row else None
        return data if isinstance(data, dict) else None

    def keep(self, key: str, ingr: Mapping[str, Any]) -> None:
        """Keep a key's ingredients (written with the build's other rows,
        in batches: a large build does not hold them all)."""
        with self._lock:
            self._keep.setdefault(key, ingr)
            full = len(self._keep) + len(self._new) >= BATCH
        if full:
            self.save()

    def explained(self) -> set[str]:
        """Every key whose ingredients are kept."""
        db = self._conn()
        if db is None:
            return set()
        with contextlib.suppress(sqlite3.Error):
            return {k for (k,) in db.execute("SELECT key FROM explain")}
        return set()

    def forget(self, keys: Iterable[str]) -> None:
        db = self._conn()
        if db is not None:
            with contextlib.suppress(sqlite3.Error), self._lock:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("DELETE FROM explain WHERE key=?", [(k,) for k in keys])
                db.execute("COMMIT")

    def reasons(self, action_id: str, key: str, ingr: Mapping[str, Any], *, cache_used: bool = True,
                upstream: Mapping[str, tuple[str, list[dict[str, Any]]]] | None = None) -> list[dict[str, Any]]:
        """Why *action_id* with *key* has to run. *upstream* maps an input
        path to (the action that made it in this build, that action's root
        causes)."""
        if not cache_used:
            return [{"type": "no-cache"}]
        prev = self._row(action_id)
        if prev is None:
            return [{"type": "new"}]
        if prev.get("key") == key:
            return [{"type": "failed-before" if prev.get("outcome") == "failed" else "not-cached"}]
        old = self.ingredients_of(prev["key"])
        if old is None:
            return [{"type": "new"}]
        changes = compare(old, ingr) or [{"type": "key-schema"}]
        for c in changes:
            up = (upstream or {}).get(c.get("path", ""))
            if c["type"] == "input" and up is not None:
                c["producer"], causes = up
                if causes:
                    c["because"] = causes
        return changes

    def record(self, action: Action, key: str, outcome: str, reasons: list[dict[str, Any]] | None = None,
               seconds: float | None = None, where: str | None = None, log: str | None = None) -> None:
        """*log*: "sha256:size" of a failed run's output (a result's log is in its action-cache entry)."""
        prev = self._row(action.id) or {}
        self._new[action.id] = {
            "key": key,
            "previous_key": prev.get("key") if prev.get("key") != key else prev.get("previous_key"),
            "outcome": outcome, "time": time.time(), "describe": action.describe(),
            "reasons": reasons or [], "seconds": seconds,
        }
        if where is not None:
            self._new[action.id]["where"] = where
        if log is not None:
            self._new[action.id]["log"] = log
        if len(self._keep) + len(self._new) >= BATCH:
            self.save()

    def mark_cached(self, ids: Iterable[str]) -> None:
        """Record that *ids* came from the cache in this build with the key
        they had (an unchanged subgraph the build skipped without looking at
        each action): one UPDATE of the outcome column, which overrides the
        stored record's outcome when read (its time stays when it last ran)."""
        wanted = json.dumps(list(ids))
        db = self._conn()
        if db is None or wanted == "[]":
            return
        with contextlib.suppress(sqlite3.Error), self._lock:
            db.execute("UPDATE actions SET outcome='cached' WHERE outcome!='cached' AND id IN "
                       "(SELECT value FROM json_each(?))", (wanted,))

    def save(self) -> None:
        """Write this build's records (only the rows it made), in one transaction."""
        if not self._new and not self._keep:
            return
        db = self._conn()
        if db is None:
            return
        with self._lock:
            keep, new = self._keep, self._new
            self._keep, self._new = {}, {}
        with contextlib.suppress(sqlite3.Error), self._lock:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR IGNORE INTO explain (key, ingredients) VALUES (?, ?)",
                           [(k, json.dumps(v, sort_keys=True, separators=(",", ":"))) for k, v in keep.items()])
            db.executemany("INSERT OR REPLACE INTO actions (id, outcome, entry) VALUES (?, ?, ?)",
                           [(i, e["outcome"], json.dumps(e, sort_keys=True)) for i, e in new.items()])
            db.execute("COMMIT")


def prune(root: Path, live: set[str]) -> int:
    """Delete the ingredients of keys that are neither in the action cache
    (*live*) nor an action's last or previous key in the history."""
    h = History(root)
    keep = live | h.keys_in_use()
    gone = h.explained() - keep
    if gone:
        h.forget(gone)
    return len(gone)

"""Not doing again what an unchanged workspace already did: Bazel keeps its
graph in a server's memory, ninja keeps a log beside the outputs; hermetic
starts from nothing on every invocation, so it keeps three small records in
the store (``<store>/incremental/``) and checks them with one comparison
each instead of re-deriving them:

- **the analysis** of a set of targets (actions, action graph, providers),
  with its *stamp*: everything analysis read. That is the code of hermetic
  and of every plugin, each BUILD file (or its absence) of the packages
  loaded, each file list and glob, each client environment variable a rule
  read, each toolchain a rule resolved, SOURCE_DATE_EPOCH and the Python.
  If the stamp still holds, the pickled analysis is the analysis.
- **the action log** of that analysis: per action, the digests of the
  inputs its key hashed, its key and its outputs. An action whose inputs are
  the logged ones is done without computing its key or reading the action
  cache; only the actions under a changed input reach the scheduler, where
  early cutoff works as before.
- **the build record** of one ``hermetic build``: the stamp, every source
  file's digest (and executable bit), each action's key, what was delivered
  to the output directory. When all of it still holds the build is a no-op
  without loading the analysis at all. When only some sources changed, the
  build schedules just the actions downstream of them (:func:`prune`); the
  rest are the record's, each checked by one comparison and one stat.

Every record names what it depends on; anything that is not the same makes
the record unused (never wrong): the full path runs and writes a new one.
``hermetic cache gc`` drops the logs and records (a collected blob must not
be taken for present)."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import marshal
import os
import pickle
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from hermetic._keys import Entry

#: bump when a record's layout changes
SCHEMA = 3

DIR = "incremental"


#: a graph this large is moved out of the cyclic collector's reach once made
FREEZE_AT = 10_000


@contextlib.contextmanager
def gc_paused(size: Any = None) -> Iterator[None]:
    """Building or loading a graph of 100,000 actions makes millions of
    objects that live for the whole build; the cyclic collector would walk
    them again and again (it took most of the time). Pause it meanwhile; a
    large graph (``size()`` at least FREEZE_AT) is then moved out of its
    reach for the rest of the process (``gc.freeze``: a command line tool's
    process ends with its build)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if size is not None and size() >= FREEZE_AT:
            gc.freeze()
        if was:
            gc.enable()


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _write_atomic(path: Path, data: bytes | Callable[[IO[bytes]], Any]) -> None:
    """*data* (or what the function *data* writes to the file: no copy of a
    large record in memory) at *path*, whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp.")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def stat_sig(path: str) -> list[Any] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


# -- what the analysis read ----------------------------------------------------------


def code_signature(modules: Iterable[Any]) -> str:
    """The code analysis runs: every ``.py`` file of hermetic and of each
    plugin's top-level package, by (path, size, mtime), and the Python
    running it. Editing a rule, installing another version of a plugin or of
    hermetic changes it."""
    roots: set[str] = set()
    for mod in modules:
        f = getattr(mod, "__file__", None) or getattr(sys.modules.get(getattr(mod, "__module__", "") or ""),
                                                      "__file__", None)
        if not f:
            continue
        d = os.path.dirname(os.path.abspath(f))
        if os.path.basename(f) != "__init__.py" and not os.path.isfile(os.path.join(d, "__init__.py")):
            roots.add(os.path.abspath(f))  # a plugin that is one module
            continue
        while os.path.isfile(os.path.join(os.path.dirname(d), "__init__.py")):
            d = os.path.dirname(d)
        roots.add(d)
    sig: list[Any] = [sys.version, SCHEMA]
    for root in sorted(roots):
        if os.path.isfile(root):
            sig.append([root, stat_sig(root)])
            continue
        for dirpath, dirnames, files in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
            for name in sorted(files):
                if name.endswith(".py"):
                    p = os.path.join(dirpath, name)
                    sig.append([p, stat_sig(p)])
    return _digest(sig)


class Reads:
    """What one analysis read, filled in while it runs (the workspace's
    BUILD files and globs, the rules' client environment, the toolchains)."""

    def __init__(self) -> None:
        self.build_files: dict[str, str | None] = {}  # package -> sha256 of its BUILD file, None: none
        self.globs: dict[tuple[str, str], list[str]] = {}  # (package, pattern) -> files matched
        self.env: dict[str, str | None] = {}
        self.toolchains: dict[tuple[str, str], str] = {}  # (kind, platform) -> digest of what the hook said

    def to_json(self) -> dict[str, Any]:
        return {"build_files": self.build_files, "globs": [[p, g, fs] for (p, g), fs in sorted(self.globs.items())],
                "env": self.env, "toolchains": [[k, p, d] for (k, p), d in sorted(self.toolchains.items())]}


def toolchain_digest(tc: Any) -> str:
    return "-" if tc is None else hashlib.sha256(repr(tc).encode()).hexdigest()


class AnalysisCache:
    """One set of targets' analysis, kept with the stamp of what it read."""

    def __init__(self, store_root: Path, name: Mapping[str, Any]) -> None:
        self.id = _digest(name)[:32]
        self.dir = Path(store_root) / DIR / "analysis"
        self.stamp_path = self.dir / f"{self.id}.json"
        self.pickle_path = self.dir / f"{self.id}.pickle"

    def valid_stamp(self, code: str, sde: int, current: Any) -> str | None:
        """The stored stamp's digest if everything it names is as it was;
        *current* answers for the workspace: ``build_file(package)``,
        ``glob(package, pattern)``, ``toolchain(kind, platform)``."""
        try:
            stamp = json.loads(self.stamp_path.read_text())
        except (OSError, ValueError):
            return None
        if stamp.get("schema") != SCHEMA or stamp.get("code") != code or stamp.get("sde") != sde:
            return None
        reads = stamp["reads"]
        for name, value in reads["env"].items():
            if os.environ.get(name) != value:
                return None
        for package, digest in reads["build_files"].items():
            if current.build_file(package) != digest:
                return None
        for package, pattern, files in reads["globs"]:
            if current.glob(package, pattern) != files:
                return None
        for kind, platform, digest in reads["toolchains"]:
            if current.toolchain(kind, platform) != digest:
                return None
        return str(stamp["digest"])

    def load(self) -> Any:
        """The stored analysis, or None if it cannot be read."""
        try:
            value: list[Any] = []
            with self.pickle_path.open("rb") as f, gc_paused(lambda: len(value[0][0].actions) if value else 0):
                value.append(pickle.load(f))
            return value[0]
        except Exception:  # noqa: BLE001 -- a stale or damaged pickle is only a miss
            return None

    def save(self, code: str, sde: int, reads: Reads, value: Any) -> str | None:
        """Keep *value* with its stamp; its digest (None: it cannot be pickled)."""
        body = {"schema": SCHEMA, "code": code, "sde": sde, "reads": reads.to_json()}
        digest = _digest(body)
        try:  # streamed: a pickle of 100,000 actions in memory at once was the build's peak
            _write_atomic(self.pickle_path, lambda f: pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL))
            _write_atomic(self.stamp_path, json.dumps({**body, "digest": digest}).encode())
        except Exception:  # noqa: BLE001 -- a provider holding a lambda, or no room: analysis is not kept
            return None
        return digest


# -- the action log ----------------------------------------------------------------


def fingerprint(entries: Iterable[Entry]) -> bytes:
    """The inputs an action's key hashed, by content, in order (a 16-byte
    digest of them: one per action in memory and in the log)."""
    text = "".join(e.hash + ("x" if e.executable else "") + ("t" if e.tree else "") for e in entries)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class ActionLog:
    """Per action id of one analysis: (inputs' fingerprint, key, the size of
    its action-cache entry, outputs)."""

    def __init__(self, store_root: Path, stamp: str, sandbox_profile: Any, sde: int) -> None:
        self.path = Path(store_root) / DIR / "log" / f"{_digest([stamp, sandbox_profile, sde])[:32]}"
        self.entries: dict[str, tuple[bytes, str, int, tuple[tuple[Any, ...], ...]]] = {}
        try:  # SCHEMA, then the entries in chunks (see save)
            with gc_paused(), self.path.open("rb") as f:
                if marshal.load(f) == SCHEMA:
                    entries: dict[str, Any] = {}
                    while chunk := _next_chunk(f):
                        entries.update(chunk)
                    self.entries = entries
        except (OSError, ValueError, EOFError, TypeError, IndexError):
            pass
        self._changed = False
        #: every logged action's action-cache entry was looked at this build (prune); those
        #: not found as logged are *stale*
        self.sizes_checked = False
        self.stale: set[str] = set()

    def lookup(self, action_id: str, fp: bytes) -> tuple[str, int, dict[str, Entry]] | None:
        """(key, size of its action-cache entry, outputs) if *fp* is the logged one."""
        hit = self.entries.get(action_id)
        if hit is None or hit[0] != fp:
            return None
        return hit[1], hit[2], {o[0]: Entry(o[1], o[2], o[3], o[4]) for o in hit[3]}

    def add(self, action_id: str, fp: bytes, key: str, size: int, outputs: Mapping[str, Entry]) -> None:
        rec = (fp, key, size, tuple((p, e.hash, e.size, e.tree, e.executable) for p, e in sorted(outputs.items())))
        if self.entries.get(action_id) != rec:
            self.entries[action_id] = rec
            self._changed = True

    def save(self) -> None:
        """Written in chunks of :data:`LOG_CHUNK` entries: marshal encodes a
        whole object in memory before writing it, and the log of 100,000
        actions in one piece (~20 MB) was the cold build's peak."""
        if self._changed:
            def write(f: IO[bytes]) -> None:
                marshal.dump(SCHEMA, f)
                items = iter(self.entries.items())
                while chunk := dict(itertools.islice(items, LOG_CHUNK)):
                    marshal.dump(chunk, f)

            with contextlib.suppress(OSError):
                _write_atomic(self.path, write)
            self._changed = False


LOG_CHUNK = 2000


def _next_chunk(f: IO[bytes]) -> dict[str, Any] | None:
    try:
        chunk = marshal.load(f)
    except EOFError:  # the end
        return None
    if not isinstance(chunk, dict):
        raise ValueError("not an action log")
    return chunk


def from_log(ex: Any, a: Any) -> bool:
    """Do action *a* from *ex*'s action log if its inputs are the logged
    ones: its key and outputs are the logged ones once the action cache
    still holds that result (same size) and the store its outputs, as on
    the cache's path (an output the user asked for is re-hashed). No key
    is computed, no thread is used: the scheduler asks this as *a* becomes
    ready, so an unchanged subgraph costs one comparison per action and
    early cutoff still stops a change where outputs come out the same."""
    from hermetic.errors import HermeticError

    arts, store = ex.artifacts, ex.store
    entries, sources = arts.entries, arts.sources
    ins = []
    for i in a.key_inputs:
        e = entries.get(i.path)
        if e is None:
            if i.path not in sources:
                return False
            try:
                e = arts.entry(i)
            except HermeticError:
                return False  # the scheduled run says what is wrong
        ins.append(e)
    hit = ex.log.lookup(a.id, fingerprint(ins))
    if hit is None:
        return False
    key, size, outputs = hit
    stale = a.id in ex.log.stale if ex.log.sizes_checked else store.action_size(key) != size
    if stale or not all(store.has_blob(e.digest) for e in outputs.values()):
        return False
    if ex.goals.intersection(outputs) and not arts.intact(ex.goals, outputs):
        return False
    arts.record(outputs, key)
    ex.keys[a.id] = key
    ex.where[a.id] = "cache"
    ex.seconds[a.id] = 0.0
    ex.out_bytes[a.id] = sum(e.size for e in outputs.values())
    ex.logged.add(a.id)
    return True


def update_log(ex: Any, ran: Sequence[Any]) -> None:
    """Log what the scheduled actions of *ex* turned out to be (those that
    ended well, with every output and their action-cache entry here)."""
    if ex.log is None:
        return
    entries = ex.artifacts.entries
    remote_only = set(ex.artifacts.remote_only)
    for a in ran:
        key, fp = ex.keys.get(a.id), ex.fingerprints.get(a.id)
        if key is None or fp is None or a.id not in ex.where or a.id in ex.logged:
            continue
        outs = {o.path: entries[o.path] for o in a.outputs if o.path in entries}
        size = ex.store.action_size(key)
        if size is not None and len(outs) == len(a.outputs) and not remote_only.intersection(outs):
            ex.log.add(a.id, fp, key, size, outs)
    ex.log.save()


# -- the build record -----------------------------------------------------------------


class BuildRecord:
    """What one build of a set of targets into one output directory
    depended on and delivered (marshal: a record of 100,000 actions is
    read and written in tens of milliseconds, JSON took ten times that)."""

    def __init__(self, store_root: Path, name: Mapping[str, Any]) -> None:
        self.path = Path(store_root) / DIR / "builds" / f"{_digest(name)[:32]}"

    def read(self) -> dict[str, Any] | None:
        try:
            with gc_paused():
                data = marshal.loads(self.path.read_bytes())
        except (OSError, ValueError, EOFError, TypeError):
            return None
        return data if isinstance(data, dict) and data.get("schema") == SCHEMA else None

    def write(self, data: dict[str, Any]) -> None:
        with contextlib.suppress(OSError, ValueError):
            _write_atomic(self.path, marshal.dumps({**data, "schema": SCHEMA}))

    def drop(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def source_entry(store: Any, host: Path) -> Entry | None:
    """A source file's entry as :class:`hermetic._artifacts.Artifacts`
    makes it (digest and executable bit: both are in the keys of the
    actions that read it); None if it cannot be read."""
    try:
        d = store.source_digest(host)
    except OSError:
        return None
    return Entry(d.hash, d.size, False, os.access(host, os.X_OK))


def source_state(e: Entry | None) -> str | None:
    """How a build record keeps a source's entry."""
    return None if e is None else e.hash + ("x" if e.executable else "")


#: more changed actions than this at the start: schedule everything downstream of them
#: (each visited once, cheaply); fewer: only what their changed outputs reach
ACTIVATE_AT_MOST = 64


class Frontier:
    """What a build of *order* (the same analysis as *record*'s build) has
    to do again, found as it goes, like Skyframe's change pruning and
    Buck2's early cutoff with ninja's restat:

    - every action is first taken as the record and the log have it (its
      key and outputs), without a key, a thread or the scheduler;
    - an action is *activated* (scheduled) if a source its key reads is not
      the recorded one, if its logged key is not the record's or its
      action-cache entry not the logged one, if the user asked for its
      outputs and they are not intact, or if a scheduled action reads its
      outputs and the store no longer holds them;
    - when an activated action finishes with outputs other than the ones
      the record's keys were made from, the actions that read them are
      activated (:meth:`more`); one that finishes with the same outputs
      stops the change there. An activated action waits for every
      activated, unfinished action upstream of it, direct or not.

    With more than ACTIVATE_AT_MOST actions changed at the start, their
    whole downstream is scheduled at once instead (each is then one cheap
    comparison in :func:`from_log`)."""

    def __init__(self, ex: Any, order: Sequence[Any], graph: Any, record: Mapping[str, Any]) -> None:
        arts, store = ex.artifacts, ex.store
        self.ex, self.graph = ex, graph
        self.logged, self.keys = ex.log.entries, record["keys"]
        changed = set()
        for rel, host in arts.sources.items():
            e = source_entry(store, host)
            if e is None or source_state(e) != record["sources"].get(str(host)):
                changed.add(rel)  # (unreadable: the scheduled run says so)
            if e is not None:  # what arts.entry would make of it, known now for every key and provenance
                arts.entries[rel] = e
        self.rank = {a.id: i for i, a in enumerate(order)}
        stale, logged, keys = ex.log.stale, self.logged, self.keys
        seeds = []
        for a in order:
            e = logged.get(a.id)
            if e is not None and store.action_size(e[1]) != e[2]:
                stale.add(a.id)
            if e is None or a.id in stale or e[1] != keys.get(a.id) or \
                    (changed and any(i.path in changed for i in a.key_inputs)):
                seeds.append(a.id)
                continue
            ex.keys[a.id] = e[1]
            ex.where[a.id] = "cache"
            ex.seconds[a.id] = 0.0
            ex.out_bytes[a.id] = sum(o[2] for o in e[3])
            ex.logged.add(a.id)
        ex.log.sizes_checked = True
        self.active: set[str] = set()
        self.pending: set[str] = set()  # active, not finished
        self.read: set[str] = set()  # not active, their logged outputs recorded
        goal_makers = {p.id for p in (graph.producer.get(g) for g in ex.goals) if p is not None}
        for g in sorted(goal_makers.difference(seeds)):
            if not self._read(g, ex.goals):
                seeds.append(g)
        self.dynamic = len(seeds) <= ACTIVATE_AT_MOST
        if not self.dynamic:
            seeds = self._downstream(seeds)
        new: list[str] = []
        for aid in sorted(set(seeds), key=self.rank.__getitem__):
            self._activate(aid, new)
        self.initial, self.waits = self._place(new)

    def _read(self, aid: str, paths: Iterable[str] = ()) -> bool:
        """Record *aid*'s logged outputs as what it made, if the store still
        holds them (and those named in *paths* re-hash to their names)."""
        from hermetic.errors import HermeticError

        _fp, key, _size, logged = self.logged[aid]
        outs = {o[0]: Entry(o[1], o[2], o[3], o[4]) for o in logged}
        store, arts = self.ex.store, self.ex.artifacts
        try:
            if not all(store.has_blob(e.digest) for e in outs.values()) or not arts.intact(paths, outs):
                return False
        except HermeticError:
            return False
        arts.record(outs, key)
        self.read.add(aid)
        return True

    def _downstream(self, seeds: Iterable[str]) -> list[str]:
        cone: set[str] = set()
        stack = list(seeds)
        while stack:
            n = stack.pop()
            if n not in cone and n in self.rank:
                cone.add(n)
                stack.extend(self.graph.succs[n])
        return sorted(cone, key=self.rank.__getitem__)

    def _activate(self, aid: str, new: list[str]) -> None:
        """Schedule *aid*: the actions whose outputs it reads are recorded
        as logged, or scheduled first if the store lost those outputs."""
        if aid in self.active:
            return
        self.active.add(aid)
        self.pending.add(aid)
        self.ex.logged.discard(aid)
        for p in self.graph.preds[aid]:
            if p not in self.active and p not in self.read and not self._read(p):
                self._activate(p, new)
        new.append(aid)

    def _reaches(self, u: str, v: str) -> bool:
        """Whether *v* is downstream of *u* (only actions ranked before *v* can be on the way)."""
        limit, rank, succs = self.rank[v], self.rank, self.graph.succs
        seen, stack = set(), [u]
        while stack:
            n = stack.pop()
            for s in succs[n]:
                if s == v:
                    return True
                if s not in seen and rank.get(s, limit) < limit:
                    seen.add(s)
                    stack.append(s)
        return False

    def _place(self, new: list[str]) -> tuple[list[Any], dict[str, list[str]]]:
        """The newly activated actions in order, and what each must wait for:
        each activated, unfinished action upstream of it."""
        rank, actions = self.rank, self.graph.actions
        waits: dict[str, list[str]] = {}
        for aid in new:
            if self.dynamic:
                waits[aid] = [u for u in self.pending if rank[u] < rank[aid] and self._reaches(u, aid)]
            else:  # everything downstream is active: the direct ones are enough
                waits[aid] = [p for p in self.graph.preds[aid] if p in self.pending]
        return [actions[a] for a in sorted(new, key=rank.__getitem__)], waits

    def changed(self, aid: str) -> bool:
        """Whether finished *aid* made other outputs than the ones the
        record's keys downstream were made from."""
        e = self.logged.get(aid)
        if e is None or e[1] != self.keys.get(aid):
            return True
        entries = self.ex.artifacts.entries
        return any(entries.get(o[0]) != Entry(o[1], o[2], o[3], o[4]) for o in e[3])

    def more(self, a: Any) -> tuple[list[Any], dict[str, list[str]]]:
        """For the scheduler, as *a* finishes: the actions its changed
        outputs activate, what each waits for, and (under the same key)
        what already scheduled actions must now wait for too."""
        self.pending.discard(a.id)
        if not self.dynamic or not self.changed(a.id):
            return [], {}
        new: list[str] = []
        for s in self.graph.succs[a.id]:
            if s in self.rank:
                self._activate(s, new)
        actions, waits = self._place(new)
        fresh = set(new)
        for x in self.pending - fresh:  # a scheduled action downstream of a new one waits for it too
            later = [n for n in new if self.rank[n] < self.rank[x] and self._reaches(n, x)]
            if later:
                waits.setdefault(x, []).extend(later)
        return actions, waits


def delivered_files(paths: Iterable[Path]) -> dict[str, list[Any] | None]:
    """Every file under *paths* (files or trees) -> its stat signature."""
    out: dict[str, list[Any] | None] = {}
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            for dirpath, _dirs, files in os.walk(p):
                for name in files:
                    f = os.path.join(dirpath, name)
                    out[f] = stat_sig(f)
            out[str(p)] = ["dir", sorted(os.listdir(p))]
        else:
            out[str(p)] = stat_sig(str(p))
    return out


def still_delivered(files: Mapping[str, Any]) -> bool:
    for f, sig in files.items():
        if sig and sig[0] == "dir":
            try:
                if sorted(os.listdir(f)) != sig[1]:
                    return False
            except OSError:
                return False
        elif sig is None or stat_sig(f) != sig:
            return False
    return True


def forget(store_root: Path) -> None:
    """Drop every action log and build record (after blobs were collected)."""
    import shutil

    for sub in ("log", "builds"):
        shutil.rmtree(Path(store_root) / DIR / sub, ignore_errors=True)

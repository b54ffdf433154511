"""What each artifact of a build turned out to be, and getting its bytes
where they are needed: into an action's input root, or to the user.

Outputs adopted from a remote cache may stay remote until something here
needs them (:meth:`Artifacts.ensure_local`); if the remote cannot serve them
then, the action that makes them runs here instead."""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from hermetic._cache import Store
from hermetic._keys import ActionResult, Entry
from hermetic.errors import CacheError, HermeticError
from hermetic.model import Action, Artifact, Digest

#: runs *action* here and returns its outputs' entries (the build's fallback
#: when a remote hit's outputs cannot be downloaded)
Fallback = Callable[[Action, str], Mapping[str, Entry]]


class Artifacts:
    """Artifact path -> :class:`Entry`, for source files (hashed on first
    use) and for outputs (recorded as actions finish or hit the cache)."""

    def __init__(self, store: Store, sources: Mapping[str, Path], *, remote: Any = None,
                 producer: Callable[[str], Action | None] | None = None) -> None:
        self.store = store
        self.sources = sources
        self.remote = remote
        self.producer = producer or (lambda path: None)
        self.entries: dict[str, Entry] = {}
        #: output path -> key of the result it came from (dropped when found damaged)
        self.producer_keys: dict[str, str] = {}
        # outputs of remote hits not downloaded yet: path -> key; their results wait
        # for every output before they enter the local action cache
        self._remote_only: dict[str, str] = {}
        self._pending: dict[str, tuple[dict[str, Any], set[str]]] = {}
        self._path_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.fallback: Fallback | None = None

    # -- what things are --------------------------------------------------------

    def entry(self, art: Artifact) -> Entry:
        with self._lock:
            e = self.entries.get(art.path)
        if e is not None:
            return e
        host = self.sources.get(art.path)
        if host is None:
            raise HermeticError(f"{art.path} has no producing action and is not a source file",
                                reason="dangling-input")
        try:
            d = self.store.source_digest(host)
        except OSError as exc:
            raise HermeticError(f"source file {host} cannot be read: {exc}", reason="missing-source") from exc
        e = Entry(d.hash, d.size, False, os.access(host, os.X_OK))
        with self._lock:
            self.entries[art.path] = e
        return e

    def known(self, path: str) -> bool:
        """Whether *path*'s digest is known without running anything."""
        return path in self.entries or path in self.sources

    def record(self, outputs: Mapping[str, Entry], key: str) -> None:
        with self._lock:
            for p, e in outputs.items():
                self.entries[p] = e
                self.producer_keys[p] = key

    def source_hashes(self, paths: Iterable[str]) -> dict[str, str]:
        """The digests read for those of *paths* that are source files."""
        return {p: self.entries[p].hash for p in paths if p in self.sources and p in self.entries}

    def intact(self, paths: Iterable[str], outputs: Mapping[str, Entry]) -> bool:
        """Whether every blob of *outputs* named in *paths* re-hashes to its name."""
        for path in paths:
            e = outputs.get(path)
            if e is None:
                continue
            blobs = self.store.tree_blobs(e.digest) if e.tree else [e.digest]
            if not all(self.store.verify_blob(b) for b in blobs):
                return False
        return True

    def local(self, e: Entry) -> bool:
        return self.store.has_blob(e.digest) and (not e.tree or all(
            self.store.has_blob(b) for b in self.store.tree_blobs(e.digest)))

    # -- remote outputs ------------------------------------------------------------

    def adopt_remote(self, action: Action, key: str, result: Mapping[str, Any], goals: set[str]) -> bool:
        """Take a remote hit's *result* for *action* if it is well formed:
        outputs the user asked for (*goals*) are downloaded now, the rest
        stay remote until something here needs them; the result enters the
        local action cache once all of its outputs are here."""
        try:
            outputs = dict(ActionResult.from_json(result).outputs)
        except (KeyError, TypeError, AttributeError):
            return False
        if set(outputs) != {o.path for o in action.outputs}:
            return False
        missing = set()
        for path, e in outputs.items():
            if self.local(e):
                continue
            if path in goals:
                if not self.remote.fetch(e.digest, e.tree, action.describe()):
                    return False
                continue
            missing.add(path)
        adopted = ActionResult(outputs, None, action.mnemonic, str(action.owner), remote=True).to_json()
        with self._lock:
            for path in missing:
                self._remote_only[path] = key
            if missing:
                self._pending[key] = (adopted, set(missing))
        if not missing:
            self.store.put_action(key, adopted)
        self.record(outputs, key)
        return True

    @property
    def remote_only(self) -> list[str]:
        """Outputs known by digest but not downloaded yet."""
        with self._lock:
            return sorted(self._remote_only)

    def ensure_all_local(self) -> None:
        for path in self.remote_only:
            self.ensure_local(path)

    def ensure_local(self, path: str) -> None:
        """A remote hit's output is needed here: download it, or if the
        remote cannot serve it (gone, corrupt, down), run its action here."""
        if path not in self._remote_only:
            return
        with self._lock:
            lock = self._path_locks.setdefault(path, threading.Lock())
        with lock:
            key = self._remote_only.get(path)
            if key is None:
                return
            e = self.entries[path]
            producer = self.producer(path)
            label = producer.describe() if producer else path
            if self.remote.fetch(e.digest, e.tree, label):
                with self._lock:
                    del self._remote_only[path]
                    adopted, waiting = self._pending.get(key, ({}, set()))
                    waiting.discard(path)
                    done = key in self._pending and not waiting
                    if done:
                        del self._pending[key]
                if done:
                    self.store.put_action(key, adopted)
                return
            if producer is None or self.fallback is None:
                raise CacheError(f"{path} is neither on the remote nor buildable here", reason="remote")
            outputs = self.fallback(producer, key)
            got = outputs.get(path)
            if got is None or got.hash != e.hash:
                raise CacheError(f"{label} built here gives different bytes than the remote's result for the "
                                 "same key", reason="remote-mismatch",
                                 hint="the remote holds an unreproducible or tampered result; "
                                      "`hermetic verify --against-cache` shows which")
            with self._lock:
                for p in [p for p, k in self._remote_only.items() if k == key]:
                    del self._remote_only[p]
                self._pending.pop(key, None)

    # -- placing bytes -----------------------------------------------------------

    def stage(self, art: Artifact, dest: str | Path, *, link: bool) -> None:
        """Put input *art* at *dest* in an action's input root (hard-linked from
        the store when *link*, else copied), re-hashing what it uses. The
        caller has made *dest*'s directory."""
        self.ensure_local(art.path)
        e = self.entry(art)
        if e.tree:
            try:
                self.store.materialize_tree(e.digest, Path(dest), verify=True)
            except CacheError as exc:
                # the tree's result is unusable: drop it so the next build re-creates it
                self.store.drop_action(self.producer_keys.get(art.path, ""))
                raise CacheError(f"input {art.path}: {exc}", reason=exc.reason,
                                 hint="build again: the damaged result was discarded and will be rebuilt") from exc
            return
        if art.path in self.sources and not self.store.has_blob(e.digest):
            # a source file: stored first, so what runs is what was hashed
            if self.store.put_file(self.sources[art.path]) != e.digest:
                raise HermeticError(f"{self.sources[art.path]} changed during the build", reason="source-changed")
        elif not self.store.verify_blob(e.digest):
            raise CacheError(f"input {art.path} ({e.digest}) is missing or corrupt in the store",
                             reason="corrupt-blob")
        if link:
            self.store.link_blob(e.digest, dest, executable=e.executable)
        else:
            shutil.copyfile(self.store.blob_path(e.hash), dest)
            os.chmod(dest, 0o755 if e.executable else 0o644)

    def deliver(self, art: Artifact, dest: Path) -> bool:
        """Place *art* at *dest* (atomically); False if it already was there."""
        self.ensure_local(art.path)
        e = self.entries[art.path]
        if not e.tree and dest.is_file() and not dest.is_symlink():
            with contextlib.suppress(OSError):
                if self.store.source_digest(dest) == e.digest:
                    return False
        if e.tree and self._tree_in_place(e, dest):
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.hermetic-tmp"
        rmtree(tmp)
        if e.tree:
            self.store.materialize_tree(e.digest, tmp, verify=True, writable=True)
            rmtree(dest)
        else:
            if not self.store.verify_blob(e.digest):
                raise CacheError(f"{art.path} is corrupt in the store; it was removed", reason="corrupt-blob")
            shutil.copyfile(self.store.blob_path(e.hash), tmp)
            os.chmod(tmp, 0o755 if e.executable else 0o644)
        os.replace(tmp, dest)
        return True


    def _tree_in_place(self, e: Entry, dest: Path) -> bool:
        """Whether *dest* already holds exactly tree *e* (files by digest,
        from the digest cache; modes; directories; links)."""
        try:
            m = self.store.tree_manifest(e.digest)
            if not dest.is_dir() or dest.is_symlink():
                return False
            files, dirs, links = {}, set(), {}
            for root, dnames, fnames in os.walk(dest):
                for name in (*dnames, *fnames):
                    p = Path(root) / name
                    rel = str(p.relative_to(dest))
                    if p.is_symlink():
                        links[rel] = os.readlink(p)
                    elif p.is_dir():
                        dirs.add(rel)
                    else:
                        files[rel] = p
            if set(files) != {f[0] for f in m["files"]} or dirs != set(m["dirs"]) or \
                    links != {rel: tgt for rel, tgt in m["links"]}:
                return False
            for rel, h, size, x in m["files"]:
                p = files[rel]
                if os.access(p, os.X_OK) != bool(x) or self.store.source_digest(p) != Digest(h, size):
                    return False
            return True
        except (OSError, ValueError, KeyError, TypeError, CacheError):
            return False


def rmtree(p: Path) -> None:
    """Remove *p* whatever it is, including read-only trees; missing is fine."""
    def onerror(func, path, exc_info):  # type: ignore[no-untyped-def]
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(path), 0o755)
            func(path)

    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, onerror=onerror)
    else:
        with contextlib.suppress(OSError):
            p.unlink()


class Trash:
    """Deletes private directories (an action's staging area) on a thread
    of its own, so the next action does not wait for it: removing a tree
    costs a system call per entry, and on a journaled disk rmdir alone was
    a third of the engine's time per action (Bazel's async tree delete).
    What arrives within GATHER seconds of the first goes to one ``rm``:
    one process per staging area was a third of a fast build's time.
    :meth:`drain` waits until everything handed over is gone."""

    GATHER = 0.1
    BATCH = 1000

    def __init__(self) -> None:
        self._queue: queue.Queue[Path] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._hurry = threading.Event()  # set while someone waits in drain: no gathering

    def put(self, path: Path) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="hermetic-trash", daemon=True)
                self._thread.start()
        self._queue.put(path)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            self._hurry.wait(self.GATHER)
            while len(batch) < self.BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                _remove(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def drain(self) -> None:
        self._hurry.set()
        try:
            self._queue.join()
        finally:
            self._hurry.clear()


def _remove(paths: list[Path]) -> None:
    """``rm -rf`` in a process of its own (no Python loop holding the GIL
    while the build's threads work); what it leaves (a read-only directory
    of a non-root user) is removed here."""
    import subprocess

    with contextlib.suppress(OSError):
        subprocess.run(["rm", "-rf", "--", *map(str, paths)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    for p in paths:
        if os.path.lexists(p):
            rmtree(p)


#: the process's one deleter
trash = Trash()

"""Executing the action graph: keys, cache lookups, sandboxed runs, a parallel
scheduler, and materializing what the user asked for."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import attrs

from hermetic import _archive
from hermetic._cache import Store
from hermetic._fetch import FetchResolver
from hermetic._history import History, ingredients, root_causes
from hermetic.errors import ActionFailed, BuildFailed, CacheError, HermeticError
from hermetic.model import Action, Artifact, Digest, canonical_json, sha256_json
from hermetic.sandbox import Sandbox, SandboxRequest, Variation, base_environment, shuffled_view, terminate_all

KEY_SCHEMA = 1
HOSTILE = {"path-escape", "link-escape", "special-file", "bomb"}
Report = Callable[..., None]


@attrs.frozen
class Entry:
    """What an artifact turned out to be: a file blob or a tree manifest."""

    hash: str
    size: int
    tree: bool = False
    executable: bool = False

    @property
    def digest(self) -> Digest:
        return Digest(self.hash, self.size)

    def to_json(self) -> dict[str, Any]:
        return {"hash": self.hash, "size": self.size, "tree": self.tree, "x": self.executable}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Entry:
        return cls(d["hash"], d["size"], bool(d.get("tree")), bool(d.get("x")))


def input_root_digest(inputs: dict[str, Entry]) -> str:
    """Merkle digest of an action's inputs: each file by content, each tree by
    its manifest's digest (itself a digest over its files)."""
    return sha256_json(sorted([p, e.hash, e.size, e.tree, e.executable] for p, e in inputs.items()))


def action_key(action: Action, inputs: dict[str, Entry], sandbox_profile: dict[str, Any] | None,
               source_date_epoch: int | None) -> tuple[str, dict[str, Any]]:
    """The sha256 that identifies *action*'s result, and what it was made of.

    Everything that can change the outputs is in it; nothing else is (not the
    mnemonic, the job count or where the workspace lives)."""
    material: dict[str, Any] = {
        "schema": KEY_SCHEMA,
        "kind": action.kind,
        "params": action.params,
        "inputs": input_root_digest(inputs),
        "outputs": sorted([o.path, o.is_tree] for o in action.outputs),
    }
    if action.kind == "run":
        material["toolchains"] = sorted(t.fingerprint for t in action.toolchains)
        material["platform"] = str(action.platform) if action.platform else None
        material["sandbox"] = sandbox_profile
        material["source_date_epoch"] = source_date_epoch
    return sha256_json(material), material


@attrs.frozen
class BuildStats:
    executed: int = 0
    cached: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    remote: int = 0  # of the cached: served by the remote cache


class Executor:
    def __init__(self, *, store: Store, sandbox: Sandbox, fetcher: FetchResolver, sources: dict[str, Path],
                 jobs: int, keep_going: bool = False, source_date_epoch: int = 315532800,
                 report: Report | None = None, use_cache: bool = True,
                 goals: Sequence[Artifact] = (), variation: Variation | None = None,
                 remote: Any = None, producer: Callable[[str], Action | None] | None = None,
                 history: History | None = None) -> None:
        self.goals = {a.path for a in goals}
        self.store = store
        self.sandbox = sandbox
        self.fetcher = fetcher
        self.sources = sources
        self.jobs = max(1, jobs)
        self.keep_going = keep_going
        self.sde = source_date_epoch
        self.report = report or (lambda *a, **k: None)
        self.use_cache = use_cache
        self.variation = variation
        self.remote = remote  # a hermetic._remote.RemoteCache, or None
        self.producer = producer or (lambda path: None)
        self.materials: dict[str, bytes] = {}
        # outputs of remote hits not downloaded yet: path -> (key, label); fetched when needed
        self.remote_only: dict[str, tuple[str, str]] = {}
        self._pending: dict[str, tuple[dict[str, Any], set[str]]] = {}
        self._path_locks: dict[str, threading.Lock] = {}
        self.remote_hits = 0
        self.remote_ids: set[str] = set()
        self.extra_executed = 0
        self.entries: dict[str, Entry] = {}
        self.stats = BuildStats()
        self.producer_keys: dict[str, str] = {}
        self.keys: dict[str, str] = {}
        self.history = history
        #: why each action that ran this build ran (action id -> reasons), its seconds and output bytes
        self.why: dict[str, list[dict[str, Any]]] = {}
        self.seconds: dict[str, float] = {}
        self.out_bytes: dict[str, int] = {}
        self._ingredients: dict[str, dict[str, Any]] = {}
        self._profile = sandbox.profile()
        self._lock = threading.Lock()

    @property
    def sandbox_profile(self) -> dict[str, Any]:
        """What the sandbox enforces: part of every run action's key."""
        return self._profile

    # -- inputs ---------------------------------------------------------------

    def _entry(self, art: Artifact) -> Entry:
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
            raise HermeticError(f"source file {host} cannot be read: {exc}", reason="missing-source",
                                hint="it was listed when the BUILD file was loaded; was it deleted?") from exc
        e = Entry(d.hash, d.size, False, os.access(host, os.X_OK))
        with self._lock:
            self.entries[art.path] = e
        return e

    def key_of(self, action: Action) -> str:
        inputs = {a.path: self._entry(a) for a in action.inputs}
        profile = self._profile if action.kind == "run" else None
        sde = self.sde if action.kind == "run" else None
        key, material = action_key(action, inputs, profile, sde)
        with self._lock:
            self.materials[action.id] = canonical_json(material)
        if self.history is not None:
            ingr = ingredients(action, inputs, profile, sde)
            self.history.keep(key, ingr)
            with self._lock:
                self._ingredients[action.id] = ingr
        return key

    def _reasons(self, action: Action, key: str) -> list[dict[str, Any]]:
        """Why *action* has to run: what changed since its last build."""
        if self.history is None:
            return [{"type": "no-cache"}] if not self.use_cache else []
        upstream = {}
        for art in action.inputs:
            producer = self.producer(art.path)
            if producer is not None and producer.id in self.why:
                upstream[art.path] = (producer.describe(), root_causes(self.why[producer.id]))
        return self.history.reasons(action.id, key, self._ingredients.get(action.id, {}),
                                    cache_used=self.use_cache, upstream=upstream)

    def plan(self, order: Sequence[Action]) -> dict[str, dict[str, Any]]:
        """What a build would do, without running anything: each action's
        key where its inputs are known (sources, outputs of cached actions)
        and whether the cache has it; otherwise what it waits for."""
        out: dict[str, dict[str, Any]] = {}
        for a in order:
            waits = sorted({p.describe() for p in (self.producer(i.path) for i in a.inputs
                                                    if i.path not in self.entries and i.path not in self.sources)
                            if p is not None})
            if waits:
                out[a.id] = {"key": None, "status": "would-run", "waits_for": waits}
                continue
            key = self.key_of(a)
            hit = self.store.get_action(key)
            if hit is not None:
                self._record(a, hit["outputs"], key)
            out[a.id] = {"key": key, "status": "cached" if hit is not None else "would-run", "waits_for": []}
        return out

    # -- one action -----------------------------------------------------------

    def _execute_one(self, action: Action) -> bool:
        """Bring *action*'s outputs into the store; True if it ran."""
        key = self.key_of(action)
        self.keys[action.id] = key
        if self.use_cache:
            hit = self.store.get_action(key)
            if hit is not None and self._deliverable(hit["outputs"]):
                self._record(action, hit["outputs"], key)
                if self.remote is not None:
                    self.remote.share_local_hit(key, self.materials[action.id], hit, action.describe())
                self._outcome(action, key, "cached")
                return False
            if self.remote is not None and self._remote_hit(action, key):
                self._outcome(action, key, "remote")
                return False
        reasons = self._reasons(action, key)
        with self._lock:
            self.why[action.id] = reasons
        self.report("action-start", action=action, key=key, reasons=reasons)
        t0 = time.monotonic()
        self._run_and_store(action, key)
        self._outcome(action, key, "executed", reasons, time.monotonic() - t0)
        return True

    def _outcome(self, action: Action, key: str, outcome: str, reasons: list[dict[str, Any]] | None = None,
                 seconds: float = 0.0) -> None:
        with self._lock:
            self.seconds[action.id] = seconds
            self.out_bytes[action.id] = sum(self.entries[o.path].size for o in action.outputs
                                            if o.path in self.entries)
        if self.history is not None:
            self.history.record(action, key, outcome, reasons, seconds if outcome == "executed" else None)

    def _run_and_store(self, action: Action, key: str) -> dict[str, Any]:
        for art in action.inputs:
            self._ensure_local(art.path)
        handler = getattr(self, f"_run_{action.kind}")
        outputs, log = handler(action)
        result = {"outputs": {p: e.to_json() for p, e in outputs.items()},
                  "log": {"hash": log.hash, "size": log.size} if log else None, "mnemonic": action.mnemonic,
                  "owner": str(action.owner)}
        self.store.put_action(key, result)
        self._record(action, result["outputs"], key)
        if self.remote is not None:
            self.remote.upload(key, self.materials[action.id], result, action.describe())
        return result

    # -- remote results ---------------------------------------------------------

    def _remote_hit(self, action: Action, key: str) -> bool:
        """Use the remote's result for *action* if it is trusted and well
        formed; outputs the user asked for are downloaded now, the rest only
        if a later action runs here and needs them."""
        result = self.remote.lookup(key, len(self.materials[action.id]), action.describe())
        if result is None:
            return False
        try:
            outputs = {p: Entry.from_json(e) for p, e in result["outputs"].items()}
        except (KeyError, TypeError, AttributeError):
            return False
        if set(outputs) != {o.path for o in action.outputs}:
            return False
        missing = set()
        for path, e in outputs.items():
            local = self.store.has_blob(e.digest) and (not e.tree or all(
                self.store.has_blob(b) for b in self.store.tree_blobs(e.digest)))
            if local:
                continue
            if path in self.goals:
                if not self.remote.fetch(e.digest, e.tree, action.describe()):
                    return False
                continue
            missing.add(path)
        adopted = {"outputs": {p: e.to_json() for p, e in outputs.items()}, "log": None,
                   "mnemonic": action.mnemonic, "owner": str(action.owner), "remote": True}
        with self._lock:
            for path in missing:
                self.remote_only[path] = (key, action.id)
            if missing:
                self._pending[key] = (adopted, set(missing))
            self.remote_hits += 1
            self.remote_ids.add(action.id)
        if not missing:
            self.store.put_action(key, adopted)
        self._record(action, adopted["outputs"], key)
        return True

    def _ensure_local(self, path: str) -> None:
        """A remote hit's output is needed here: download it, or if the
        remote cannot serve it (gone, corrupt, down), run its action here."""
        if path not in self.remote_only:
            return
        with self._lock:
            lock = self._path_locks.setdefault(path, threading.Lock())
        with lock:
            if path not in self.remote_only:
                return
            key, _ = self.remote_only[path]
            e = self.entries[path]
            producer = self.producer(path)
            label = producer.describe() if producer else path
            if not self.remote.fetch(e.digest, e.tree, label):
                if producer is None:
                    raise CacheError(f"{path} is neither on the remote nor buildable here", reason="remote")
                self.report("note", message=f"running {label} here: its remote outputs are not usable")
                self.report("action-start", action=producer)
                result = self._run_and_store(producer, key)
                self.extra_executed += 1
                if result["outputs"].get(path, {}).get("hash") != e.hash:
                    raise CacheError(
                        f"{label} built here gives different bytes than the remote's result for the same key",
                        hint="the remote holds an unreproducible or tampered result; "
                             "`hermetic verify --against-cache` shows which", reason="remote-mismatch")
                with self._lock:
                    for p in [p for p, (k, _) in self.remote_only.items() if k == key]:
                        del self.remote_only[p]
                    self._pending.pop(key, None)
                return
            with self._lock:
                del self.remote_only[path]
                adopted, waiting = self._pending.get(key, ({}, set()))
                waiting.discard(path)
                done = key in self._pending and not waiting
                if done:
                    del self._pending[key]
            if done:
                self.store.put_action(key, adopted)

    def _deliverable(self, outputs: dict[str, Any]) -> bool:
        """Outputs the user asked for are re-hashed before a hit is accepted,
        so a damaged blob means a rebuild, not a failed build."""
        for path, e in outputs.items():
            if path in self.goals:
                entry = Entry.from_json(e)
                blobs = self.store.tree_blobs(entry.digest) if entry.tree else [entry.digest]
                if not all(self.store.verify_blob(b) for b in blobs):
                    return False
        return True

    def _record(self, action: Action, outputs: dict[str, Any], key: str) -> None:
        with self._lock:
            for p, e in outputs.items():
                self.entries[p] = Entry.from_json(e)
                self.producer_keys[p] = key

    def _run_write(self, action: Action) -> tuple[dict[str, Entry], None]:
        out = action.outputs[0]
        d = self.store.put_bytes(action.params["content"].encode())
        return {out.path: Entry(d.hash, d.size, False, bool(action.params.get("executable")))}, None

    def _run_fetch(self, action: Action) -> tuple[dict[str, Entry], None]:
        key_path = None
        if action.inputs:
            key_path = self.sources.get(action.inputs[0].path)
        try:
            d = self.fetcher.fetch(action.params, key_path)
        except HermeticError as exc:
            raise ActionFailed(str(exc), hint=exc.hint, action=action.describe(),
                               reason=exc.reason) from exc
        return {action.outputs[0].path: Entry(d.hash, d.size)}, None

    def _run_extract(self, action: Action) -> tuple[dict[str, Entry], None]:
        archive = self._entry(action.inputs[0])
        if not self.store.verify_blob(archive.digest):
            raise CacheError(f"{action.inputs[0].path} is missing or corrupt in the store",
                             hint="build again", reason="corrupt-blob")
        staging = self.store.staging_dir("extract.")
        try:
            dest = staging / "tree"
            dest.mkdir()
            try:
                _archive.extract(self.store.blob_path(archive.hash), dest,
                                 strip_prefix=action.params["strip_prefix"], name=action.inputs[0].name,
                                 subdir=action.params.get("subdir", ""))
            except HermeticError as exc:
                if exc.reason in HOSTILE:
                    # the pinned bytes are hostile: keep nothing of them
                    self.store.blob_path(archive.hash).unlink(missing_ok=True)
                raise ActionFailed(str(exc), hint=exc.hint, action=action.describe(),
                                   reason=exc.reason) from exc
            d = self.store.put_tree(dest, move=True)
        finally:
            _rmtree(staging)
        return {action.outputs[0].path: Entry(d.hash, d.size, True)}, None

    def _materialize_input(self, art: Artifact, dest: Path, link: bool) -> None:
        self._ensure_local(art.path)
        e = self._entry(art)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if e.tree:
            try:
                self.store.materialize_tree(e.digest, dest, verify=True)
            except CacheError as exc:
                # the tree's result is unusable: drop it so the next build re-creates it
                self.store.drop_action(self.producer_keys.get(art.path, ""))
                raise CacheError(f"input {art.path}: {exc}", hint="build again: the damaged result was "
                                 "discarded and will be rebuilt", reason=exc.reason) from exc
            return
        if art.path in self.sources and not self.store.has_blob(e.digest):
            # a source file: stored first, so what runs is what was hashed
            got = self.store.put_file(self.sources[art.path])
            if got != e.digest:
                raise HermeticError(f"{self.sources[art.path]} changed during the build",
                                    hint="build again", reason="source-changed")
        elif not self.store.verify_blob(e.digest):
            raise CacheError(f"input {art.path} ({e.digest}) is missing or corrupt in the store",
                             hint="build again: the damaged entry was removed", reason="corrupt-blob")
        if link:
            self.store.link_blob(e.digest, dest, executable=e.executable)
        else:
            shutil.copyfile(self.store.blob_path(e.hash), dest)
            os.chmod(dest, 0o755 if e.executable else 0o644)

    def _run_run(self, action: Action) -> tuple[dict[str, Entry], Digest | None]:
        staging = self.store.staging_dir("action.")
        try:
            dirs = (staging / "in", staging / "out", staging / "work")
            for d in dirs:
                d.mkdir()
            # the directories a declared file output lives in exist (as in Bazel);
            # tree outputs are the command's to create
            prefix = action.output_dir + "/"
            for out in action.outputs:
                rel = out.path[len(prefix):]
                if not out.is_tree and "/" in rel:
                    (dirs[1] / rel).parent.mkdir(parents=True, exist_ok=True)
            link = self.sandbox.name != "none"
            for art in action.inputs:
                self._materialize_input(art, dirs[0] / art.path, link)
            for tc in action.toolchains:
                for name, script in tc.wrappers.items():
                    w = dirs[0] / tc.bin_dir / tc.wrapper_name(name)
                    w.parent.mkdir(parents=True, exist_ok=True)
                    w.write_text(script)
                    w.chmod(0o555)
            with shuffled_view(dirs[0], enabled=bool(self.variation and self.variation.shuffle_dirs)) as view:
                return self._run_in(action, staging, (view, dirs[1], dirs[2]))
        finally:
            _rmtree(staging)

    def _run_in(self, action: Action, staging: Path,
                dirs: tuple[Path, Path, Path]) -> tuple[dict[str, Entry], Digest | None]:
        v = self.variation
        layout = self.sandbox.layout(dirs, v)
        argv = []
        for a in action.params["argv"]:
            if isinstance(a, dict):
                if "in" in a:
                    argv.append(f"{layout.inputs}/{a['in']}")
                elif "out" in a:
                    argv.append(f"{layout.outputs}/{a['out']}" if a["out"] else layout.outputs)
                else:
                    argv.append(f"{layout.work}/{a['work']}" if a["work"] else layout.work)
            else:
                argv.append(a)
        env = base_environment(layout, self.sde, v)
        env.update(action.params["env"])
        bins = [f"{layout.inputs}/{tc.bin_dir}" for tc in action.toolchains if tc.wrappers]
        if bins:
            env["PATH"] = ":".join([*bins, env["PATH"]])
        # volatile: not in the key
        env["HERMETIC_JOBS"] = str(v.jobs if v else min(action.cpus, self.jobs))
        mounts = sorted({m for t in action.toolchains for m in t.mounts})
        binds = []
        for tc in action.toolchains:
            if tc.root:  # volatile like HERMETIC_JOBS: the key holds the toolchain's identity, not its place
                inside = tc.root if self.sandbox.name == "none" or not getattr(self.sandbox, "can_bind", True) else \
                    f"{layout.inputs.rsplit('/', 1)[0]}/toolchains/{tc.kind}"
                binds.append((tc.root, inside))
                env[tc.root_env] = inside
        log = staging / "log"
        t0 = time.monotonic()
        done = self.sandbox.run(SandboxRequest(tuple(argv), env, dirs[0], dirs[1], dirs[2],
                                               tuple(mounts), log, variation=v, binds=tuple(binds)))
        secs = time.monotonic() - t0
        if done.exit_code != 0:
            free = _free_bytes(staging)
            if free is not None and free < 1 << 20:
                raise ActionFailed(
                    f"exit code {done.exit_code}: no space left on device where the store keeps its work "
                    f"({self.store.root}: {free} bytes free)", action=action.describe(),
                    command=_shell_join(argv), exit_code=done.exit_code, output_tail=_tail(log),
                    hint="free disk space, or run `hermetic cache gc --max-size SIZE`", reason="disk-full")
            raise ActionFailed(
                "timed out" if done.timed_out else f"exit code {done.exit_code} after {secs:.1f}s",
                action=action.describe(), command=_shell_join(argv), exit_code=done.exit_code,
                output_tail=_tail(log), hint="see the command and output above",
                reason="action-failed")
        outputs: dict[str, Entry] = {}
        prefix = action.output_dir + "/"
        for out in action.outputs:
            host = dirs[1] / out.path[len(prefix):]
            if out.is_tree:
                if not host.is_dir() or host.is_symlink():
                    raise self._missing(action, out, argv, log)
                d = self.store.put_tree(host, move=True)
                outputs[out.path] = Entry(d.hash, d.size, True)
            else:
                if not host.is_file() or host.is_symlink():
                    raise self._missing(action, out, argv, log)
                x = os.access(host, os.X_OK)
                d = self.store.put_file(host, move=True)
                outputs[out.path] = Entry(d.hash, d.size, False, x)
        logd = self.store.put_file(log, move=True) if log.exists() else None
        return outputs, logd

    def _missing(self, action: Action, out: Artifact, argv: list[str], log: Path) -> ActionFailed:
        return ActionFailed(f"did not produce its declared output {out.path}", action=action.describe(),
                            command=_shell_join(argv), output_tail=_tail(log), reason="missing-output",
                            hint="the rule declares an output its command does not write")

    # -- the scheduler --------------------------------------------------------

    def execute(self, order: Sequence[Action], deps: Callable[[Action], list[Action]]) -> BuildStats:
        """Run *order* (topologically sorted) with up to ``jobs`` slots."""
        t0 = time.monotonic()
        waiting = {a.id: {d.id for d in deps(a)} for a in order}
        dependants: dict[str, list[str]] = {}
        for aid, ds in waiting.items():
            for d in ds:
                dependants.setdefault(d, []).append(aid)
        by_id = {a.id: a for a in order}
        rank = {a.id: i for i, a in enumerate(order)}
        ready = sorted((aid for aid, ds in waiting.items() if not ds), key=rank.__getitem__)
        running: dict[Future[bool], tuple[str, int]] = {}
        free = self.jobs
        failures: list[HermeticError] = []
        failed: set[str] = set()
        executed = cached = 0
        done_ids: set[str] = set()

        def need(a: Action) -> int:
            return max(1, min(a.cpus, self.jobs))

        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            try:
                while ready or running:
                    stop = failures and not self.keep_going
                    while ready and not stop:
                        a = by_id[ready[0]]
                        if need(a) > free and running:
                            break
                        ready.pop(0)
                        free -= need(a)
                        running[pool.submit(self._execute_one, a)] = (a.id, need(a))
                    if not running:
                        break
                    finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for fut in finished:
                        aid, slots = running.pop(fut)
                        free += slots
                        a = by_id[aid]
                        try:
                            ran = fut.result()
                        except HermeticError as exc:
                            failures.append(exc)
                            failed.add(aid)
                            if self.history is not None and aid in self.keys:
                                self.history.record(a, self.keys[aid], "failed", self.why.get(aid))
                            self.report("action-failed", action=a, error=exc, key=self.keys.get(aid))
                            self._block(aid, dependants, failed)
                            continue
                        done_ids.add(aid)
                        if ran:
                            executed += 1
                        else:
                            cached += 1
                        self.report("action-done", action=a, cached=not ran, done=len(done_ids), total=len(order),
                                    key=self.keys.get(aid), seconds=self.seconds.get(aid, 0.0),
                                    bytes=self.out_bytes.get(aid, 0), remote=ran is False and aid in self.remote_ids)
                        for nxt in dependants.get(aid, ()):
                            waiting[nxt].discard(aid)
                            if not waiting[nxt] and nxt not in failed:
                                ready.append(nxt)
                        ready.sort(key=rank.__getitem__)
            except BaseException:  # Ctrl-C, or a bug: stop every running action now
                terminate_all()
                for f in running:
                    f.cancel()
                raise
            finally:
                if self.history is not None:
                    self.history.save()
        self.store.save_digests()
        stats = self.stats = BuildStats(executed + self.extra_executed, cached - self.extra_executed, len(failures),
                                        len(order) - len(done_ids) - len(failures), time.monotonic() - t0,
                                        self.remote_hits - self.extra_executed)
        if failures:
            raise BuildFailed(f"build failed: {len(failures)} action(s) failed, {executed} ran, "
                              f"{cached} cached, {stats.skipped} not started", failures=tuple(failures),
                              hint="fix the first failure above" + ("" if self.keep_going else
                                   "; --keep-going builds everything that does not depend on it"))
        return stats

    def _block(self, aid: str, dependants: dict[str, list[str]], failed: set[str]) -> None:
        stack = list(dependants.get(aid, ()))
        while stack:
            n = stack.pop()
            if n not in failed:
                failed.add(n)
                stack.extend(dependants.get(n, ()))

    # -- delivering outputs -------------------------------------------------------

    def materialize(self, art: Artifact, dest: Path) -> bool:
        """Place *art* at *dest* (atomically); False if it already was there."""
        self._ensure_local(art.path)
        e = self.entries[art.path]
        if not e.tree and dest.is_file() and not dest.is_symlink():
            with contextlib.suppress(OSError):
                if self.store.source_digest(dest) == e.digest:
                    return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.hermetic-tmp"
        _rmtree(tmp)
        if e.tree:
            self.store.materialize_tree(e.digest, tmp, verify=True, writable=True)
            _rmtree(dest)
        else:
            if not self.store.verify_blob(e.digest):
                raise CacheError(f"{art.path} is corrupt in the store; it was removed",
                                 hint="build again", reason="corrupt-blob")
            shutil.copyfile(self.store.blob_path(e.hash), tmp)
            os.chmod(tmp, 0o755 if e.executable else 0o644)
        os.replace(tmp, dest)
        return True


def _free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _tail(log: Path, lines: int = 40) -> str:
    try:
        data = log.read_bytes()[-16384:]
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def _shell_join(argv: list[str]) -> str:
    import shlex

    text = shlex.join(argv)
    return text if len(text) < 2000 else text[:2000] + " ..."


def _rmtree(p: Path) -> None:
    def onerror(func, path, exc_info):  # type: ignore[no-untyped-def]
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(path), 0o755)
            func(path)

    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, onerror=onerror)
    else:
        with contextlib.suppress(OSError):
            p.unlink()


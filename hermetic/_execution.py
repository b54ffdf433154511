"""Executing the action graph: each action's key, the local and remote
caches, its runner when neither has it, the history of why it ran.

The parts live apart: :mod:`hermetic._keys` (the key encoding),
:mod:`hermetic._artifacts` (what each artifact is and where its bytes are),
:mod:`hermetic._runners` (one per action kind), :mod:`hermetic._scheduler`
(order, ``-j``, ``--keep-going``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import attrs

from hermetic import _profile
from hermetic._artifacts import Artifacts, trash
from hermetic._cache import Store
from hermetic._fetch import FetchResolver
from hermetic._history import History, ingredients, root_causes
from hermetic._incremental import fingerprint, from_log, update_log
from hermetic._keys import ActionResult, Entry, action_key
from hermetic._runners import Runners, RunResult
from hermetic._scheduler import Finished, Scheduler
from hermetic.errors import BuildFailed, HermeticError
from hermetic.events import ActionFailure, ActionFinished, ActionStarted, Note, Report, ignore
from hermetic.model import Action, Artifact, canonical_json
from hermetic.sandbox import Sandbox, Variation


@attrs.frozen
class BuildStats:
    executed: int = 0
    cached: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    remote: int = 0  # of the cached: served by the remote cache


class Planned(NamedTuple):
    """What a build would do with one action (``aquery``)."""

    key: str | None
    status: str  # cached | would-run
    waits_for: tuple[str, ...] = ()


class Executor:
    """Brings actions' outputs into the store: from the local cache, the
    remote cache, or by running them; one instance per build."""

    def __init__(self, *, store: Store, sandbox: Sandbox, fetcher: FetchResolver, sources: Mapping[str, Path],
                 jobs: int, keep_going: bool = False, source_date_epoch: int = 315532800,
                 report: Report | None = None, use_cache: bool = True, goals: Sequence[Artifact] = (),
                 variation: Variation | None = None, remote: Any = None,
                 producer: Callable[[str], Action | None] | None = None, history: History | None = None,
                 artifacts: Artifacts | None = None, remote_executor: Any = None,
                 local_jobs: int | None = None, log: Any = None) -> None:
        self.store = store
        self.goals = {a.path for a in goals}
        self.sde = source_date_epoch
        self.report = report or ignore
        self.use_cache = use_cache
        self.remote = remote  # a hermetic._remote.RemoteCache, or None
        self.producer = producer or (lambda path: None)
        self.history = history
        self.sandbox_profile: dict[str, Any] = sandbox.profile()
        if artifacts is None:  # else another build's (verify rebuilds from the reference build's inputs)
            artifacts = Artifacts(store, sources, remote=remote, producer=self.producer)
            artifacts.fallback = self._run_after_remote_failed
        self.artifacts = artifacts
        self.remote_executor = remote_executor  # a hermetic._remote_exec.RemoteExecutor, or None
        self.runners = Runners(store=store, sandbox=sandbox, fetcher=fetcher, source_date_epoch=source_date_epoch,
                               jobs=jobs, variation=variation, remote_executor=remote_executor,
                               local_jobs=local_jobs)
        self.scheduler = Scheduler(jobs=jobs, keep_going=keep_going, remote_kinds=self.runners.remote_kinds,
                                   on_interrupt=remote_executor.cancel_all if remote_executor is not None else None)
        self.stats = BuildStats()
        self.keys: dict[str, str] = {}  # action id -> key, this build
        self.materials: dict[str, bytes] = {}  # action id -> the key's canonical encoding
        self.why: dict[str, list[dict[str, Any]]] = {}  # action id -> why it ran
        self.seconds: dict[str, float] = {}
        self.out_bytes: dict[str, int] = {}
        self.remote_ids: set[str] = set()
        #: action id -> where it was done: cache, remote-cache, local, remote:<worker>
        self.where: dict[str, str] = {}
        self._extra_executed = 0  # remote hits whose outputs could not be downloaded
        #: action id -> its key's ingredients, until asked why it runs
        self.ingredients: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        #: the action log of this analysis (hermetic._incremental.ActionLog), or None
        self.log = log
        self.fingerprints: dict[str, bytes] = {}  # action id -> its inputs' fingerprint (with a log)
        self.logged: set[str] = set()  # actions done from the log

    @property
    def entries(self) -> dict[str, Entry]:
        return self.artifacts.entries

    # -- keys ------------------------------------------------------------------

    def key_of(self, action: Action) -> str:
        # (one dict item set per action id: atomic, so no lock)
        inputs = {a.path: self.artifacts.entry(a) for a in action.key_inputs}
        if self.log is not None:
            self.fingerprints[action.id] = fingerprint(inputs[a.path] for a in action.key_inputs)
        profile = self.sandbox_profile if action.kind == "run" else None
        sde = self.sde if action.kind == "run" else None
        key, material = action_key(action, inputs, profile, sde)
        if self.remote is not None or self.remote_executor is not None:  # only a remote reads them
            self.materials[action.id] = canonical_json(material)
        if self.history is not None:
            ingr = self.ingredients[action.id] = ingredients(action, inputs, profile, sde)
            self.history.keep(key, ingr)
        return key

    # -- one action -----------------------------------------------------------

    def _execute(self, action: Action) -> bool:
        """Bring *action*'s outputs into the store; True if it ran."""
        with _profile.phase("key"):
            key = self.key_of(action)
        with self._lock:
            self.keys[action.id] = key
        if self.use_cache:
            with _profile.phase("cache lookup"):
                hit = self.store.get_action(key)
                cached = ActionResult.from_json(hit) if hit is not None else None
                # outputs the user asked for are re-hashed first: a damaged blob means a rebuild
                usable = cached is not None and self.artifacts.intact(self.goals, cached.outputs)
            if cached is not None and usable:
                self.artifacts.record(cached.outputs, key)
                if self.remote is not None:
                    self.remote.share_local_hit(key, self.materials[action.id], hit, action.describe())
                self._outcome(action, key, "cached", where="cache")
                return False
            if self.remote is not None and self._remote_hit(action, key):
                self._outcome(action, key, "remote", where="remote-cache")
                return False
        reasons = _reasons(self, action, key)
        with self._lock:
            self.why[action.id] = reasons
        self.report(ActionStarted(action, key, reasons))
        t0 = time.monotonic()
        done = self._run_and_store(action, key)
        if done.where == "remote-cache":  # the remote executor's own action cache had it
            with self._lock:
                self.remote_ids.add(action.id)
            self._outcome(action, key, "remote", where=done.where)
            return False
        self._outcome(action, key, "executed", reasons, time.monotonic() - t0, where=done.where)
        return True

    def _outcome(self, action: Action, key: str, outcome: str, reasons: list[dict[str, Any]] | None = None,
                 seconds: float = 0.0, where: str = "local") -> None:
        entries = self.artifacts.entries
        with self._lock:
            self.where[action.id] = where
            self.seconds[action.id] = seconds
            self.out_bytes[action.id] = sum(entries[o.path].size for o in action.outputs if o.path in entries)
        if self.history is not None:
            self.history.record(action, key, outcome, reasons, seconds if outcome == "executed" else None, where)

    def _run_and_store(self, action: Action, key: str, local: bool = False) -> RunResult:
        done = (self.runners.run_local if local else self.runners.run)(action, self.artifacts)
        result = ActionResult(done.outputs, done.log, action.mnemonic, str(action.owner)).to_json()
        if self.remote is not None:  # the team cache learns the result under hermetic's key
            with _profile.phase("upload"):
                self.remote.upload(key, self.materials[action.id], result, action.describe())
        if done.where == "local":
            self.store.put_action(key, result)
            self.artifacts.record(done.outputs, key)
        elif not self.artifacts.adopt_remote(action, key, result, self.goals):
            # made on the cluster, its bytes stay there until needed here, unless they cannot be had
            self.report(Note(f"running {action.describe()} here: its remote outputs cannot be downloaded"))
            return self._run_and_store(action, key, local=True)
        return done

    def _run_after_remote_failed(self, action: Action, key: str) -> Mapping[str, Entry]:
        self.report(Note(f"running {action.describe()} here: its remote outputs are not usable"))
        self.report(ActionStarted(action))
        done = self._run_and_store(action, key)
        with self._lock:
            if action.id in self.remote_ids:  # counted as a remote hit: it ran after all
                self._extra_executed += 1
        return done.outputs

    def _remote_hit(self, action: Action, key: str) -> bool:
        """Use the remote's result for *action* if it is trusted and well formed."""
        with _profile.phase("remote lookup"):
            result = self.remote.lookup(key, len(self.materials[action.id]), action.describe())
            if result is None or not self.artifacts.adopt_remote(action, key, result, self.goals):
                return False
        with self._lock:
            self.remote_ids.add(action.id)
        return True

    def rebuild(self, action: Action) -> dict[str, Entry]:
        """Run *action* again from the inputs this build recorded, without
        looking at or writing the action cache (``verify``)."""
        return self.runners.run(action, self.artifacts).outputs

    def deliver(self, art: Artifact, dest: Path) -> bool:
        """Place *art* at *dest* (atomically); False if it already was there."""
        return self.artifacts.deliver(art, dest)

    # -- the whole graph --------------------------------------------------------

    def execute(self, order: Sequence[Action], deps: Callable[[Action], list[Action]],
                frontier: Any = None) -> BuildStats:
        """Run *order* (topological) and what a _incremental.Frontier adds; what it took as logged is cached."""
        pre = set(self.logged)

        def finished(f: Finished, done: int) -> None:
            a, key, n = f.action, self.keys.get(f.action.id), len(self.scheduler.actions)
            if f.error is not None:
                if self.history is not None and key is not None:
                    self.history.record(a, key, "failed", self.why.get(a.id), log=getattr(f.error, "log", "") or None)
                self.report(ActionFailure(a, f.error, key))
                return
            self.report(ActionFinished(a, not f.ran, done, n, key, self.seconds.get(a.id, 0.0),
                                       self.out_bytes.get(a.id, 0), not f.ran and a.id in self.remote_ids,
                                       self.where.get(a.id, "local")))

        _profile.note_deps(order, deps)
        quick = (lambda a: from_log(self, a)) if self.log is not None else None
        try:
            run = self.scheduler.run(order, deps, lambda a: _profile.traced(a, self._execute, self.where),
                                     finished, quick, *((frontier.more, frontier.rank) if frontier else ()))
        finally:
            if self.history is not None:
                self.history.mark_cached(self.logged)
                self.history.save()
            update_log(self, list(self.scheduler.actions.values()))
            trash.drain()  # no staging area outlives its build
        self.store.save_digests()
        extra, before = self._extra_executed, len(pre.difference(run.done))
        self.stats = BuildStats(run.executed + extra, run.cached - extra + before, len(run.failures),
                                run.skipped, run.seconds, len(self.remote_ids) - extra)
        if run.failures:
            first = run.failures[0]
            raise BuildFailed(f"build failed: {len(run.failures)} action(s) failed, {run.executed} ran, "
                              f"{run.cached} cached, {run.skipped} not started", failures=run.failures,
                              hint=(first.hint or "fix the first failure above") + (
                                  "" if self.scheduler.keep_going else
                                  "; --keep-going builds everything that does not depend on it"))
        return self.stats


def _reasons(ex: Executor, action: Action, key: str) -> list[dict[str, Any]]:
    """Why *action* has to run: what changed since its last build."""
    if ex.history is None:
        return [{"type": "no-cache"}] if not ex.use_cache else []
    upstream = {}
    for art in action.key_inputs:
        producer = ex.producer(art.path)
        if producer is not None and producer.id in ex.why:
            upstream[art.path] = (producer.describe(), root_causes(ex.why[producer.id]))
    return ex.history.reasons(action.id, key, ex.ingredients.pop(action.id, {}),
                                cache_used=ex.use_cache, upstream=upstream)


def plan(ex: Executor, order: Sequence[Action]) -> dict[str, Planned]:
    """What a build would do, without running anything: each action's key
    where its inputs are known (sources, outputs of cached actions) and
    whether the cache has it; otherwise what it waits for (``aquery``)."""
    out: dict[str, Planned] = {}
    for a in order:
        waits = sorted({p.describe() for p in (ex.producer(i.path) for i in a.needs
                                                if not ex.artifacts.known(i.path)) if p is not None})
        if waits:
            out[a.id] = Planned(None, "would-run", tuple(waits))
            continue
        key = ex.key_of(a)
        hit = ex.store.get_action(key)
        if hit is not None:
            ex.artifacts.record(ActionResult.from_json(hit).outputs, key)
        out[a.id] = Planned(key, "cached" if hit is not None else "would-run")
    return out

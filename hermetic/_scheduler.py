"""The scheduler: runs a topologically ordered list of actions on up to
``jobs`` slots (an action may take several: its ``cpus``), in a stable order,
stopping at the first failure unless ``keep_going``, and never starting what
depends on a failed action. Early cutoff needs nothing here: an action's key
is computed when it starts, from its inputs' actual bytes."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import NamedTuple

from hermetic.errors import HermeticError
from hermetic.model import Action
from hermetic.sandbox import terminate_all


class Finished(NamedTuple):
    """One action's end: it *ran* (else the cache served it), or *error*."""

    action: Action
    ran: bool = False
    error: HermeticError | None = None


#: given a finished action: actions to add, and by id what each (or one already scheduled) waits for
More = Callable[[Action], tuple[Sequence[Action], Mapping[str, Sequence[str]]]]


class Schedule(NamedTuple):
    """What a scheduled run did."""

    done: tuple[str, ...]
    executed: int
    cached: int
    failures: tuple[HermeticError, ...]
    skipped: int
    seconds: float


class Scheduler:
    def __init__(self, *, jobs: int, keep_going: bool = False,
                 on_interrupt: Callable[[], None] | None = None, remote_kinds: frozenset[str] = frozenset()) -> None:
        self.jobs = max(1, jobs)
        self.keep_going = keep_going
        #: action kinds a remote executor runs: one slot each here, whatever their cpus (the
        #: worker's cores do the work; a local fallback is held to the local cores by its runner)
        self.remote_kinds = remote_kinds
        #: called when the build is interrupted, before local processes are killed
        #: (a remote executor cancels its operations)
        self.on_interrupt = on_interrupt

    def slots(self, action: Action) -> int:
        if action.kind in self.remote_kinds:
            return 1
        return max(1, min(action.cpus, self.jobs))

    def run(self, order: Sequence[Action], deps: Callable[[Action], list[Action]],
            step: Callable[[Action], bool], finished: Callable[[Finished, int], None],
            quick: Callable[[Action], bool] | None = None, more: More | None = None,
            rank: dict[str, int] | None = None) -> Schedule:
        """Call ``step(action)`` (True if it ran, False if cached; raises
        HermeticError on failure) for each action once its dependencies are
        done; ``finished(result, done_so_far)`` after each. *quick*: tried
        first, here, as an action becomes ready; True means it is done
        (cached) without a slot or a thread (an input-unchanged action of
        the action log: most of a re-check). *more*: asked as each action
        finishes, returns actions to run too and, by id, what each (or one
        already here) must also wait for (hermetic._incremental.Frontier);
        *rank*: the order of every action it may add (default: *order*'s)."""
        t0 = time.monotonic()
        waiting = {a.id: {d.id for d in deps(a)} for a in order}
        dependants: dict[str, list[str]] = {}
        for aid, ds in waiting.items():
            for d in ds:
                dependants.setdefault(d, []).append(aid)
        #: every action of this run (with those *more* added), by id
        self.actions = by_id = {a.id: a for a in order}
        rank = rank or {a.id: i for i, a in enumerate(order)}
        ready = [(rank[aid], aid) for aid, ds in waiting.items() if not ds]
        heapq.heapify(ready)
        running: dict[Future[bool], tuple[str, int]] = {}
        free = self.jobs
        failures: list[HermeticError] = []
        blocked: set[str] = set()
        done: list[str] = []
        finished_ids: set[str] = set()
        counts = [0, 0]  # executed, cached
        slow: set[str] = set()  # quick said no
        started: set[str] = set()

        def complete(a: Action, ran: bool) -> None:
            done.append(a.id)
            finished_ids.add(a.id)
            counts[not ran] += 1
            finished(Finished(a, ran=ran), len(done))
            if more is not None:
                added, waits = more(a)
                for b in added:
                    by_id[b.id] = b
                    waiting[b.id] = set()
                for aid, ds in waits.items():
                    for d in ds:
                        if d not in finished_ids and d not in waiting[aid]:
                            waiting[aid].add(d)
                            dependants.setdefault(d, []).append(aid)
                for b in added:
                    if not waiting[b.id]:
                        heapq.heappush(ready, (rank[b.id], b.id))
            for nxt in dependants.get(a.id, ()):
                w = waiting[nxt]
                w.discard(a.id)
                if not w and nxt not in blocked:
                    heapq.heappush(ready, (rank[nxt], nxt))

        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            try:
                while ready or running:
                    stop = failures and not self.keep_going
                    while ready and not stop:
                        a = by_id[ready[0][1]]
                        if waiting[a.id] or a.id in started:  # made to wait since (more), or a repeat
                            heapq.heappop(ready)
                            continue
                        if quick is not None and a.id not in slow:
                            if quick(a):
                                heapq.heappop(ready)
                                started.add(a.id)
                                complete(a, False)
                                continue
                            slow.add(a.id)
                        if self.slots(a) > free and running:
                            break
                        heapq.heappop(ready)
                        started.add(a.id)
                        free -= self.slots(a)
                        running[pool.submit(step, a)] = (a.id, self.slots(a))
                    if not running:
                        break
                    completed, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for fut in completed:
                        aid, slots = running.pop(fut)
                        free += slots
                        a = by_id[aid]
                        try:
                            ran = fut.result()
                        except HermeticError as exc:
                            failures.append(exc)
                            blocked.add(aid)
                            blocked |= _downstream(aid, dependants)
                            finished(Finished(a, error=exc), len(done))
                            continue
                        complete(a, ran)
            except BaseException:  # Ctrl-C, or a bug: stop every running action now
                if self.on_interrupt is not None:
                    self.on_interrupt()
                terminate_all()
                for f in running:
                    f.cancel()
                raise
        return Schedule(tuple(done), counts[0], counts[1], tuple(failures),
                        len(by_id) - len(done) - len(failures), time.monotonic() - t0)


def _downstream(aid: str, dependants: dict[str, list[str]]) -> set[str]:
    """Every action that depends on *aid*, directly or not (networkx: only
    imported once something failed)."""
    import networkx as nx

    g = nx.DiGraph((u, v) for u, vs in dependants.items() for v in vs)
    g.add_node(aid)
    return set(nx.descendants(g, aid))

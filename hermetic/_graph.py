"""Build graphs: the target graph and the action DAG (producer -> consumer).

Two libraries, each where it is the better tool: the standard library's
graphlib orders actions and detects cycles on every build (importing networkx
costs ~0.1 s, which a no-op build must not pay); networkx does the analyses a
person asks for: the whole cycle in an error, the critical path, pictures
(and the query language, :mod:`hermetic._query`)."""

from __future__ import annotations

import graphlib
import heapq
from collections.abc import Iterable
from typing import Any

from hermetic.errors import CycleError
from hermetic.model import Action, Artifact, Label


def _cycle(edges: dict[Any, list[Any]]) -> list[Any] | None:
    """A cycle (first node repeated at the end) if *edges* has one: graphlib
    tells whether there is one (cheap, every build); networkx finds it,
    starting from the smallest node on it, so the report is stable."""
    ts: graphlib.TopologicalSorter[Any] = graphlib.TopologicalSorter()
    for src, dsts in edges.items():
        ts.add(src, *dsts)
    try:
        ts.prepare()
    except graphlib.CycleError:
        pass
    else:
        return None
    import networkx as nx

    g = nx.DiGraph((u, v) for u, vs in edges.items() for v in vs)
    cycle = min(nx.simple_cycles(g), key=lambda c: (len(c), sorted(map(str, c))))
    start = cycle.index(min(cycle, key=str))
    cycle = cycle[start:] + cycle[:start]
    return [*cycle, cycle[0]]


def check_acyclic(edges: dict[Label, list[Label]], where: dict[Label, str]) -> None:
    """Raise CycleError naming the cycle's path if the target graph has one."""
    path = _cycle(edges)
    if path is None:
        return
    lines = " -> ".join(str(p) for p in path)
    detail = "; ".join(f"{p} at {where.get(p, '?')}" for p in path[:-1])
    raise CycleError(f"dependency cycle: {lines}", hint=f"break the cycle ({detail})")


class ActionGraph:
    """Actions and their edges u -> v when v reads what u writes."""

    def __init__(self, actions: Iterable[Action]) -> None:
        self.producer: dict[str, Action] = {}
        self.actions: dict[str, Action] = {}
        for a in actions:
            self.actions[a.id] = a
            for o in a.outputs:
                self.producer[o.path] = a
        preds: dict[str, set[str]] = {}
        succs: dict[str, set[str]] = {i: set() for i in self.actions}
        for a in self.actions.values():
            ps = {p.id for p in (self.producer.get(i.path) for i in a.needs) if p is not None}
            preds[a.id] = ps
            for p in ps:
                succs[p].add(a.id)
        # kept as sorted tuples: a set costs four times a small tuple, twice per action
        self.preds: dict[str, tuple[str, ...]] = {i: tuple(sorted(ps)) for i, ps in preds.items()}
        self.succs: dict[str, tuple[str, ...]] = {i: tuple(sorted(ss)) for i, ss in succs.items()}
        del preds, succs
        cyc = _cycle(dict(self.preds))
        if cyc is not None:
            raise CycleError("action cycle: " + " -> ".join(cyc))

    @property
    def edges(self) -> list[tuple[str, str]]:
        return sorted((p, a) for a, ps in self.preds.items() for p in ps)

    def closure(self, goals: Iterable[Artifact]) -> list[Action]:
        """The actions needed for *goals*, in a deterministic topological
        order (lexicographically smallest ready action first); kept per set
        of goals (the analysis cache keeps it with the graph)."""
        goals = list(goals)
        memo = self.__dict__.setdefault("_closures", {})
        name = tuple(sorted(g.path for g in goals))
        if name not in memo:
            memo[name] = self._closure(goals)
        return list(memo[name])

    def _closure(self, goals: list[Artifact]) -> list[Action]:
        need: set[str] = set()
        stack = [p.id for p in (self.producer.get(art.path) for art in goals) if p is not None]
        while stack:
            n = stack.pop()
            if n not in need:
                need.add(n)
                stack.extend(self.preds[n])
        indegree = {n: sum(1 for p in self.preds[n] if p in need) for n in need}
        ready = [n for n, d in indegree.items() if d == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            n = heapq.heappop(ready)
            order.append(self.actions[n])
            for s in self.succs[n]:
                if s in need:
                    indegree[s] -= 1
                    if indegree[s] == 0:
                        heapq.heappush(ready, s)
        return order

    def deps(self, action: Action) -> list[Action]:
        return [self.actions[i] for i in self.preds[action.id]]

    def digraph(self, actions: list[Action], status: dict[str, str] | None = None) -> Any:
        """*actions* and the edges between them as a networkx DiGraph whose
        nodes carry what a picture shows (label, last outcome)."""
        import networkx as nx

        g = nx.DiGraph()
        for a in actions:
            g.add_node(a.id, label=f"{a.mnemonic}\\n{a.owner}" + (f"\\n[{a.config}]" if a.config else ""),
                       outcome=(status or {}).get(a.id, "never-built"))
        g.add_edges_from((u, v) for u, v in self.edges if u in g and v in g)
        return g

    def to_json(self, actions: list[Action], status: dict[str, str] | None = None) -> dict[str, Any]:
        g = self.digraph(actions, status)
        return {
            "actions": [
                {"id": a.id, "kind": a.kind, "mnemonic": a.mnemonic, "owner": str(a.owner), "config": a.config,
                 "inputs": [i.path for i in a.inputs], "outputs": [o.path for o in a.outputs],
                 "last_build": g.nodes[a.id]["outcome"]}
                for a in actions
            ],
            "edges": sorted([u, v] for u, v in g.edges),
        }

    def to_dot(self, actions: list[Action], status: dict[str, str] | None = None) -> str:
        """DOT text; with *status* (action id -> last outcome) nodes are
        coloured by what they did in their last build, with a legend."""
        return dot(self.digraph(actions, status), legend=status is not None)


def critical_path(order: list[Action], deps: Any, seconds: dict[str, float]) -> tuple[list[Action], float]:
    """The chain of dependent actions whose durations (*seconds*, by action
    id; 0 for what was cached) add up to the most: no amount of parallelism
    makes the build faster than this."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_node("", cost=0.0)
    for a in order:
        g.add_edge("", a.id, w=seconds.get(a.id, 0.0))
        for d in deps(a):
            g.add_edge(d.id, a.id, w=seconds.get(a.id, 0.0))
    path = [n for n in nx.dag_longest_path(g, weight="w", default_weight=0.0) if n]
    by_id = {a.id: a for a in order}
    return [by_id[n] for n in path], sum(seconds.get(n, 0.0) for n in path)


#: fill colours by last outcome (Okabe-Ito-ish, readable in grey too)
_COLOURS = {"executed": "#f4a259", "cached": "#a6cee3", "remote": "#b2df8a", "failed": "#e31a1c",
            "never-built": "#ffffff"}


def _style(outcome: str | None) -> str:
    return f'style=filled, fillcolor="{_COLOURS.get(outcome or "never-built", "#ffffff")}"'


def dot(g: Any, *, legend: bool) -> str:
    """DOT text for a networkx DiGraph whose nodes have ``label`` and
    ``outcome``, in a stable order; with a legend of the outcome colours."""
    lines = ["digraph hermetic {", "  rankdir=LR;", '  node [shape=box, fontname="monospace", fontsize=10];']
    for n in sorted(g.nodes, key=str):
        lines.append(f'  "{n}" [label="{g.nodes[n]["label"]}", {_style(g.nodes[n]["outcome"])}];')
    for u, v in sorted(g.edges, key=lambda e: (str(e[0]), str(e[1]))):
        lines.append(f'  "{u}" -> "{v}";')
    if legend:
        lines.append("  subgraph cluster_legend {")
        lines.append('    label="last build"; fontname="monospace"; fontsize=10;')
        for name in _COLOURS:
            lines.append(f'    "legend:{name}" [label="{name}", {_style(name)}];')
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def target_digraph(deps: dict[Label, list[Label]], kinds: dict[Label, str], roots: set[Label],
                   outcomes: dict[str, set[str]]) -> Any:
    """The target graph below *roots*; a target's outcome is its actions'
    (executed if any of them ran)."""
    import networkx as nx

    full = nx.DiGraph((t, d) for t, ds in deps.items() for d in ds)
    full.add_nodes_from(roots)
    keep = set(roots).union(*(nx.descendants(full, r) for r in roots))
    g = full.subgraph(keep).copy()
    for t in g.nodes:
        got = outcomes.get(str(t), set())
        g.nodes[t]["label"] = f"{t}\\n{kinds.get(t, '')}"
        g.nodes[t]["outcome"] = next((o for o in ("failed", "executed", "remote", "cached") if o in got),
                                     "never-built")
    return g

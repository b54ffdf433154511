"""Build graphs: the target graph (cycle reporting) and the action DAG
(producer -> consumer), on the standard library's graphlib. (networkx was
here first; importing it cost 0.1 s of every no-op build.)"""

from __future__ import annotations

import graphlib
import heapq
from collections.abc import Iterable
from typing import Any

from hermetic.errors import CycleError
from hermetic.model import Action, Artifact, Label


def _cycle(edges: dict[Any, list[Any]]) -> list[Any] | None:
    """A cycle (first node repeated at the end) if *edges* has one."""
    ts: graphlib.TopologicalSorter[Any] = graphlib.TopologicalSorter()
    for src, dsts in edges.items():
        ts.add(src, *dsts)
    try:
        ts.prepare()
    except graphlib.CycleError as exc:
        path = list(exc.args[1])
        return list(reversed(path))  # graphlib lists it against the edge direction
    return None


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
        self.preds: dict[str, set[str]] = {}
        self.succs: dict[str, set[str]] = {i: set() for i in self.actions}
        for a in self.actions.values():
            ps = {p.id for p in (self.producer.get(i.path) for i in a.inputs) if p is not None}
            self.preds[a.id] = ps
            for p in ps:
                self.succs[p].add(a.id)
        cyc = _cycle({i: sorted(ps) for i, ps in self.preds.items()})
        if cyc is not None:
            raise CycleError("action cycle: " + " -> ".join(cyc))

    @property
    def edges(self) -> list[tuple[str, str]]:
        return sorted((p, a) for a, ps in self.preds.items() for p in ps)

    def closure(self, goals: Iterable[Artifact]) -> list[Action]:
        """The actions needed for *goals*, in a deterministic topological
        order (lexicographically smallest ready action first)."""
        need: set[str] = set()
        stack = [p.id for p in (self.producer.get(art.path) for art in goals) if p is not None]
        while stack:
            n = stack.pop()
            if n not in need:
                need.add(n)
                stack.extend(self.preds[n])
        indegree = {n: len(self.preds[n] & need) for n in need}
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
        return [self.actions[i] for i in sorted(self.preds[action.id])]

    def to_json(self, actions: list[Action], status: dict[str, str] | None = None) -> dict[str, Any]:
        ids = {a.id for a in actions}
        status = status or {}
        return {
            "actions": [
                {"id": a.id, "kind": a.kind, "mnemonic": a.mnemonic, "owner": str(a.owner), "config": a.config,
                 "inputs": [i.path for i in a.inputs], "outputs": [o.path for o in a.outputs],
                 "last_build": status.get(a.id, "never-built")}
                for a in actions
            ],
            "edges": [[u, v] for u, v in self.edges if u in ids and v in ids],
        }

    def to_dot(self, actions: list[Action], status: dict[str, str] | None = None) -> str:
        """DOT text; with *status* (action id -> last outcome) nodes are
        coloured by what they did in their last build, with a legend."""
        ids = {a.id for a in actions}
        lines = _dot_head()
        for a in actions:
            label = f"{a.mnemonic}\\n{a.owner}" + (f"\\n[{a.config}]" if a.config else "")
            lines.append(f'  "{a.id}" [label="{label}", {_style((status or {}).get(a.id))}];')
        for u, v in self.edges:
            if u in ids and v in ids:
                lines.append(f'  "{u}" -> "{v}";')
        if status is not None:
            lines += _legend()
        lines.append("}")
        return "\n".join(lines) + "\n"


#: fill colours by last outcome (Okabe-Ito-ish, readable in grey too)
_COLOURS = {"executed": "#f4a259", "cached": "#a6cee3", "remote": "#b2df8a", "failed": "#e31a1c",
            "never-built": "#ffffff"}


def _style(outcome: str | None) -> str:
    return f'style=filled, fillcolor="{_COLOURS.get(outcome or "never-built", "#ffffff")}"'


def _dot_head() -> list[str]:
    return ["digraph hermetic {", "  rankdir=LR;", '  node [shape=box, fontname="monospace", fontsize=10];']


def _legend() -> list[str]:
    lines = ["  subgraph cluster_legend {", '    label="last build"; fontname="monospace"; fontsize=10;']
    for name in _COLOURS:
        lines.append(f'    "legend:{name}" [label="{name}", {_style(name)}];')
    lines.append("  }")
    return lines


def target_dot(deps: dict[Label, list[Label]], kinds: dict[Label, str], keep: set[Label],
               outcomes: dict[str, set[str]]) -> str:
    """The target graph restricted to *keep*; a target is coloured by its
    actions' last outcomes (executed if any of them ran)."""
    lines = _dot_head()
    for t in sorted(keep):
        got = outcomes.get(str(t), set())
        outcome = next((o for o in ("failed", "executed", "remote", "cached") if o in got), None)
        lines.append(f'  "{t}" [label="{t}\\n{kinds.get(t, "")}", {_style(outcome)}];')
    for t in sorted(keep):
        for d in deps.get(t, ()):
            if d in keep:
                lines.append(f'  "{t}" -> "{d}";')
    lines += _legend()
    lines.append("}")
    return "\n".join(lines) + "\n"

"""Build graphs on networkx: the target graph (cycle reporting) and the
action DAG (producer -> consumer)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from hermetic.errors import CycleError
from hermetic.model import Action, Artifact, Label

if TYPE_CHECKING:
    import networkx as nx


def _nx():  # type: ignore[no-untyped-def]
    import networkx

    return networkx


def check_acyclic(edges: dict[Label, list[Label]], where: dict[Label, str]) -> None:
    """Raise CycleError naming the cycle's path if the target graph has one."""
    nx = _nx()
    g = nx.DiGraph()
    for src, dsts in edges.items():
        g.add_node(src)
        for d in dsts:
            g.add_edge(src, d)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return
    path = [u for u, _ in cycle] + [cycle[0][0]]
    lines = " -> ".join(str(p) for p in path)
    detail = "; ".join(f"{p} at {where.get(p, '?')}" for p in path[:-1])
    raise CycleError(f"dependency cycle: {lines}", hint=f"break the cycle ({detail})")


class ActionGraph:
    """Actions as a networkx DiGraph; edge u -> v when v reads what u writes."""

    def __init__(self, actions: Iterable[Action]) -> None:
        nx = _nx()
        self.g: nx.DiGraph = nx.DiGraph()
        self.producer: dict[str, Action] = {}
        self.actions: dict[str, Action] = {}
        for a in actions:
            self.actions[a.id] = a
            self.g.add_node(a.id)
            for o in a.outputs:
                self.producer[o.path] = a
        for a in self.actions.values():
            for i in a.inputs:
                p = self.producer.get(i.path)
                if p is not None:
                    self.g.add_edge(p.id, a.id)
        if not nx.is_directed_acyclic_graph(self.g):
            cyc = nx.find_cycle(self.g)
            raise CycleError("action cycle: " + " -> ".join(u for u, _ in [*cyc, cyc[0]]))

    def closure(self, goals: Iterable[Artifact]) -> list[Action]:
        """The actions needed for *goals*, in a deterministic topological order."""
        nx = _nx()
        need: set[str] = set()
        for art in goals:
            p = self.producer.get(art.path)
            if p is not None:
                need.add(p.id)
                need |= nx.ancestors(self.g, p.id)
        sub = self.g.subgraph(need)
        return [self.actions[i] for i in nx.lexicographical_topological_sort(sub)]

    def deps(self, action: Action) -> list[Action]:
        return [self.actions[i] for i in sorted(self.g.predecessors(action.id))]

    def to_json(self, actions: list[Action]) -> dict[str, Any]:
        ids = {a.id for a in actions}
        return {
            "actions": [
                {"id": a.id, "kind": a.kind, "mnemonic": a.mnemonic, "owner": str(a.owner),
                 "inputs": [i.path for i in a.inputs], "outputs": [o.path for o in a.outputs]}
                for a in actions
            ],
            "edges": [[u, v] for u, v in sorted(self.g.edges) if u in ids and v in ids],
        }

    def to_dot(self, actions: list[Action]) -> str:
        ids = {a.id for a in actions}
        lines = ["digraph hermetic {", "  rankdir=LR;", '  node [shape=box, fontname="monospace"];']
        for a in actions:
            lines.append(f'  "{a.id}" [label="{a.mnemonic}\\n{a.owner}"];')
        for u, v in sorted(self.g.edges):
            if u in ids and v in ids:
                lines.append(f'  "{u}" -> "{v}";')
        lines.append("}")
        return "\n".join(lines) + "\n"


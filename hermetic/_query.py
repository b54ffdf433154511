"""``hermetic query EXPR``: Bazel's query language over the (unconfigured)
target graph.

    EXPR := LABEL | //... | //pkg/... | //pkg:all (unless a target is named all) | //pkg:*
          | deps(EXPR [, DEPTH]) | rdeps(UNIVERSE, EXPR [, DEPTH]) | rdeps(EXPR)
          | kind(REGEX, EXPR) | filter(REGEX, EXPR) | attr(NAME, REGEX, EXPR)
          | somepath(FROM, TO) | allpaths(FROM, TO)
          | EXPR + EXPR | EXPR - EXPR | EXPR ^ EXPR   (also: union, except, intersect)
          | ( EXPR )

``deps`` includes its argument (as in Bazel); ``somepath`` returns one path
in order from FROM to TO, empty if there is none.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hermetic.errors import HermeticError, did_you_mean
from hermetic.model import Label

_TOKEN = re.compile(r"""\s*(?:(?P<op>[(),+^-])|(?P<str>"[^"]*"|'[^']*')|(?P<word>[^\s(),+^'"]+))""")
FUNCTIONS = ("deps", "rdeps", "kind", "filter", "attr", "somepath", "allpaths")
_WORD_ARGS = {"deps": {1}, "rdeps": {2}, "kind": {0}, "filter": {0}, "attr": {0, 1}, "somepath": set(),
              "allpaths": set()}
_SET_WORDS = {"union": "+", "except": "-", "intersect": "^"}


def _error(message: str, expr: str, pos: int | None = None, hint: str | None = None) -> HermeticError:
    where = f" at column {pos + 1}" if pos is not None else ""
    return HermeticError(f"query {expr!r}{where}: {message}", hint=hint or "see `hermetic query --help` for the "
                         "grammar, e.g. 'deps(//wheel:linux-x86_64)' or 'somepath(//a:b, //c:d)'",
                         reason="bad-query")


def _tokens(expr: str) -> list[tuple[str, str, int]]:
    out = []
    pos = 0
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise _error(f"unexpected {expr[pos:pos + 10]!r}", expr, pos)
        start = m.start(m.lastgroup or 0)
        if m.group("op"):
            out.append(("op", m.group("op"), start))
        elif m.group("str"):
            out.append(("word", m.group("str")[1:-1], start))
        else:
            word = m.group("word")
            out.append(("op", _SET_WORDS[word], start) if word in _SET_WORDS else ("word", word, start))
        pos = m.end()
    return out


class Query:
    """Evaluates expressions over *deps* (label -> direct deps) with *kinds*
    (label -> rule name) and *attrs* (label -> attribute values)."""

    def __init__(self, deps: dict[Label, list[Label]], kinds: dict[Label, str],
                 attrs: dict[Label, dict[str, Any]], parse_label: Callable[[str], Label]) -> None:
        self.deps = deps
        self.kinds = kinds
        self.attrs = attrs
        self.parse_label = parse_label
        import networkx as nx

        #: the target graph: an edge t -> d when t depends on d directly
        self.graph = nx.DiGraph()
        self.graph.add_nodes_from(deps)
        self.graph.add_edges_from((t, d) for t, ds in deps.items() for d in ds)
        self.back = self.graph.reverse(copy=False)

    def evaluate(self, expr: str) -> list[Label]:
        self.expr = expr
        self.toks = _tokens(expr)
        self.i = 0
        if not self.toks:
            raise _error("empty expression", expr)
        result = self._expr()
        if self.i < len(self.toks):
            raise _error(f"unexpected {self.toks[self.i][1]!r}", expr, self.toks[self.i][2])
        return result if isinstance(result, list) else sorted(result)

    # -- parsing --------------------------------------------------------------

    def _peek(self) -> tuple[str, str, int] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _take(self, value: str | None = None) -> tuple[str, str, int]:
        tok = self._peek()
        if tok is None:
            raise _error(f"expected {value!r}, found the end" if value else "unexpected end", self.expr)
        if value is not None and tok[1] != value:
            raise _error(f"expected {value!r}, found {tok[1]!r}", self.expr, tok[2])
        self.i += 1
        return tok

    def _expr(self) -> set[Label] | list[Label]:
        left = self._primary()
        while (tok := self._peek()) is not None and tok[0] == "op" and tok[1] in "+-^":
            self.i += 1
            right = set(self._primary())
            a = set(left)
            left = a | right if tok[1] == "+" else a - right if tok[1] == "-" else a & right
        return left

    def _primary(self) -> set[Label] | list[Label]:
        tok = self._take()
        if tok[1] == "(":
            inner = self._expr()
            self._take(")")
            return inner
        if tok[0] != "word":
            raise _error(f"unexpected {tok[1]!r}", self.expr, tok[2])
        nxt = self._peek()
        if nxt is not None and nxt[1] == "(":
            return self._call(tok)
        return self._pattern(tok)

    def _args(self, words: set[int]) -> list[tuple[str, Any, int]]:
        """The arguments of a call; those at positions *words* are plain
        words (a regex, a depth, an attribute name), the others expressions."""
        self._take("(")
        args: list[tuple[str, Any, int]] = []
        while True:
            tok = self._peek()
            if tok is None:
                raise _error("missing ')'", self.expr)
            if len(args) in words and tok[0] == "word":
                self.i += 1
                args.append(("word", tok[1], tok[2]))
            else:
                args.append(("set", self._expr(), tok[2]))
            sep = self._take()
            if sep[1] == ")":
                return args
            if sep[1] != ",":
                raise _error(f"expected ',' or ')', found {sep[1]!r}", self.expr, sep[2])

    def _call(self, name_tok: tuple[str, str, int]) -> set[Label] | list[Label]:
        name = name_tok[1]
        if name not in FUNCTIONS:
            raise _error(f"unknown function {name!r}", self.expr, name_tok[2],
                         hint=did_you_mean(name, FUNCTIONS) or f"functions: {', '.join(FUNCTIONS)}")
        args = self._args(_WORD_ARGS[name])

        def as_set(a: tuple[str, Any, int]) -> set[Label]:
            if a[0] == "set":
                return set(a[1])
            return set(self._pattern(("word", a[1], a[2])))

        def as_int(a: tuple[str, Any, int]) -> int:
            if a[0] != "word" or not a[1].isdigit():
                raise _error(f"{name}: depth must be a number", self.expr, a[2])
            return int(a[1])

        def as_text(a: tuple[str, Any, int]) -> str:
            if a[0] != "word":
                raise _error(f"{name}: expected a word or pattern here", self.expr, a[2])
            return str(a[1])

        def arity(*ok: int) -> None:
            if len(args) not in ok:
                raise _error(f"{name}() takes {' or '.join(map(str, ok))} arguments, not {len(args)}",
                             self.expr, name_tok[2])

        if name == "deps":
            arity(1, 2)
            return closure(self.graph, as_set(args[0]), as_int(args[1]) if len(args) > 1 else None)
        if name == "rdeps":
            arity(1, 2, 3)
            if len(args) == 1:
                universe, of, depth = set(self.deps), as_set(args[0]), None
            else:
                universe, of = as_set(args[0]), as_set(args[1])
                depth = as_int(args[2]) if len(args) > 2 else None
            return closure(self.back, of, depth) & (closure(self.graph, universe) | of)
        if name in ("kind", "filter"):
            arity(2)
            rx = self._regex(as_text(args[0]), args[0][2])
            items = as_set(args[1])
            if name == "kind":
                return {t for t in items if rx.search(f"{self.kinds.get(t, 'source file')} rule")}
            return {t for t in items if rx.search(str(t))}
        if name == "attr":
            arity(3)
            attr_name = as_text(args[0])
            rx = self._regex(as_text(args[1]), args[1][2])
            return {t for t in as_set(args[2]) if attr_name in self.attrs.get(t, {})
                    and rx.search(_attr_text(self.attrs[t][attr_name]))}
        arity(2)
        src, dst = as_set(args[0]), as_set(args[1])
        if name == "somepath":
            return self._somepath(src, dst)
        return closure(self.graph, src) & closure(self.back, dst)

    def _regex(self, text: str, pos: int) -> re.Pattern[str]:
        try:
            return re.compile(text)
        except re.error as exc:
            raise _error(f"bad regular expression {text!r}: {exc}", self.expr, pos) from exc

    def _pattern(self, tok: tuple[str, str, int]) -> list[Label]:
        text = tok[1]
        if text in ("//...", "..."):
            return sorted(self.deps)
        wildcard = text.endswith(("/...", ":*")) or (text.endswith(":all") and not self._is_target(text))
        if wildcard:
            pkg = text.removesuffix("/...").removesuffix(":all").removesuffix(":*").removeprefix("//")
            deep = text.endswith("/...")
            found = sorted(t for t in self.deps if t.package == pkg or (deep and t.package.startswith(pkg + "/")))
            if not found:
                raise _error(f"no targets match {text}", self.expr, tok[2])
            return found
        try:
            label = self.parse_label(text)
        except HermeticError as exc:
            raise _error(str(exc), self.expr, tok[2], hint=exc.hint) from exc
        if label not in self.deps:
            raise _error(f'no target "{label}"', self.expr, tok[2],
                         hint=did_you_mean(str(label), [str(t) for t in self.deps])
                         or "`hermetic query //...` lists every target")
        return [label]

    def _is_target(self, text: str) -> bool:
        try:
            return self.parse_label(text) in self.deps
        except HermeticError:
            return False

    def _somepath(self, src: set[Label], dst: set[Label]) -> list[Label]:
        """The shortest path from any of *src* to any of *dst* (the first in
        label order among equally short ones), in dependency order."""
        import networkx as nx

        best: list[Label] = []
        for s in sorted(src & set(self.graph)):
            lengths, paths = nx.single_source_dijkstra(self.graph, s)
            for d in sorted(dst & set(paths), key=lambda d: (lengths[d], d)):
                if not best or len(paths[d]) < len(best):
                    best = paths[d]
                break
        return list(best)


def closure(graph: Any, start: set[Label], depth: int | None = None) -> set[Label]:
    """*start* and every node reachable from it in *graph* (a networkx
    DiGraph) within *depth* edges (any number when None)."""
    import networkx as nx

    seen = set(start)
    for s in start:
        if s in graph:
            seen.update(nx.single_source_shortest_path_length(graph, s, cutoff=depth))
    return seen


def _attr_text(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(map(str, value))
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    return str(value)

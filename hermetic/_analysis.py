"""Loading checks and analysis: targets -> validated attributes -> rules ->
actions and providers. Nothing here runs a command or reads a file that is
not declared (source files are only listed and globbed, never read)."""

from __future__ import annotations

import sys

import glob as globmod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs

from hermetic._buildfile import COMMON_ATTRS, TargetDecl, Workspace
from hermetic.errors import (AnalysisError, BuildFileError, HermeticError, Location, ToolchainError,
                             did_you_mean)
from hermetic.model import ANY, UNPACK_TOOLCHAIN, Action, Artifact, Label, Platform, Provider, Toolchain
from hermetic.rules import Attr, DefaultInfo, RuleContext, RuleRegistry, Target

_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "string_list": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "string_dict": lambda v: isinstance(v, dict),
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "label": lambda v: isinstance(v, str),
    "label_list": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "files": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
}
_TYPE_WORDS = {"string": "a string", "string_list": "a list of strings", "string_dict": "a table",
               "bool": "true or false", "int": "an integer", "label": 'a label ("//pkg:name")',
               "label_list": "a list of labels", "files": "a list of files, globs or labels"}


def _is_label(text: str) -> bool:
    return text.startswith("//") or text.startswith(":")


@attrs.frozen
class Loaded:
    """The validated closure of the requested targets."""

    decls: dict[Label, TargetDecl]
    deps: dict[Label, list[Label]]


def load(ws: Workspace, registry: RuleRegistry, roots: Iterable[Label], where: str = "command line") -> Loaded:
    """Check every target reachable from *roots*; raise one ExceptionGroup
    naming every problem, or a CycleError."""
    problems: list[HermeticError] = []
    decls: dict[Label, TargetDecl] = {}
    deps: dict[Label, list[Label]] = {}
    todo: list[tuple[Label, Location | None]] = [(r, None) for r in roots]
    while todo:
        label, referrer = todo.pop()
        if label in decls:
            continue
        decl = ws.get(label)
        if decl is None:
            if referrer is None:
                ws.load_all()
                problems.append(HermeticError(f'no target "{label}" ({where})', reason="unknown-target",
                                              hint=did_you_mean(str(label), [str(t) for t in ws.targets])
                                              or "`hermetic query targets` lists every target"))
            else:
                problems.append(ws.missing(label, referrer))
            continue
        decls[label] = decl
        found = _check_decl(decl, registry, ws, problems)
        deps[label] = [d for d, _ in found]
        todo.extend(found)
    if problems:
        raise ExceptionGroup(f"{len(problems)} problem(s) in BUILD files", problems)
    from hermetic._graph import check_acyclic

    check_acyclic(deps, {k: str(v.where) for k, v in decls.items()})
    return Loaded(decls, deps)


def _check_decl(decl: TargetDecl, registry: RuleRegistry, ws: Workspace,
                problems: list[HermeticError]) -> list[tuple[Label, Location]]:
    rule = registry.get(decl.rule)
    if rule is None:
        problems.append(BuildFileError(f'target {decl.label}: unknown rule "{decl.rule}"', where=decl.at("rule"),
                                       hint=did_you_mean(decl.rule, registry.names())
                                       or f"known rules: {', '.join(registry.names())}",
                                       reason="unknown-rule"))
        return []
    found: list[tuple[Label, Location]] = []
    for name, value in decl.values.items():
        if name in COMMON_ATTRS:
            if name == "platform":
                try:
                    Platform.parse(str(value))
                except HermeticError as exc:
                    problems.append(BuildFileError(f"target {decl.label}: {exc}", where=decl.at(name),
                                                   reason="bad-platform"))
            continue
        spec = rule.attrs.get(name)
        if spec is None:
            problems.append(BuildFileError(
                f'target {decl.label}: rule "{rule.name}" has no attribute "{name}"', where=decl.at(name),
                hint=did_you_mean(name, list(rule.attrs)) or f"its attributes: {', '.join(sorted(rule.attrs))}",
                reason="unknown-attribute"))
            continue
        if not _TYPES[spec.type](value):
            problems.append(BuildFileError(f'target {decl.label}: "{name}" must be {_TYPE_WORDS[spec.type]}',
                                           where=decl.at(name), reason="bad-attribute-type"))
            continue
        if spec.is_dep:
            items = [value] if spec.type == "label" else value
            for item in items:
                if spec.type == "files" and not _is_label(item):
                    err = _check_files(ws, decl, name, item)
                    if err:
                        problems.append(err)
                    continue
                try:
                    dep = Label.parse(item, decl.label.package)
                except HermeticError as exc:
                    problems.append(BuildFileError(f"target {decl.label}: {exc}", hint=exc.hint,
                                                   where=decl.at(name), reason="bad-label"))
                    continue
                found.append((dep, decl.at(name)))
    for name, spec in rule.attrs.items():
        if spec.mandatory and name not in decl.values:
            problems.append(BuildFileError(f'target {decl.label}: missing mandatory attribute "{name}"',
                                           where=decl.where, reason="missing-attribute",
                                           hint=spec.doc or None))
    return found


def _check_files(ws: Workspace, decl: TargetDecl, attr_name: str, pattern: str) -> BuildFileError | None:
    if pattern.startswith("/") or ".." in pattern.split("/"):
        return BuildFileError(f"target {decl.label}: file {pattern!r} must stay inside package "
                              f"//{decl.label.package}", where=decl.at(attr_name), reason="bad-path")
    if not _expand(ws, decl.label.package, pattern):
        return BuildFileError(f"target {decl.label}: no file matches {pattern!r} in "
                              f"{decl.label.package or '.'}/", where=decl.at(attr_name), reason="missing-file")
    return None


def _expand(ws: Workspace, package: str, pattern: str) -> list[Path]:
    base = ws.root / package
    if any(c in pattern for c in "*?["):
        hits = globmod.glob(pattern, root_dir=base, recursive=True)
        found = sorted(base / h for h in hits if (base / h).is_file() and "__pycache__" not in h)
    else:
        p = base / pattern
        found = [p] if p.is_file() else []
    ws.globs[(package, pattern)] = [str(f.relative_to(base)) for f in found]
    return found


def expand_now(ws: Workspace, package: str, pattern: str) -> list[str]:
    """What *pattern* matches in *package* now (package-relative paths)."""
    return [str(f.relative_to(ws.root / package)) for f in _expand(ws, package, pattern)]


# -- analysis -----------------------------------------------------------------


@attrs.frozen
class Analysis:
    """Everything execution needs: actions, where source files live on the
    host, and each analysed target's providers."""

    actions: list[Action]
    sources: dict[str, Path]
    providers: dict[tuple[Label, Platform], list[Provider]]
    top: dict[Label, tuple[Artifact, ...]]


def _package_path(path: Path) -> str:
    """*path* relative to the directory holding its top-level Python package
    (``recipes/wheel/wheeltest.py``); a file outside any package is named by
    its directory and name."""
    top = path.parent
    while (top / "__init__.py").is_file() and (top.parent / "__init__.py").is_file():
        top = top.parent
    if not (top / "__init__.py").is_file():
        return f"{path.parent.name}/{path.name}"
    return str(path.relative_to(top.parent))


class Analyzer:
    def __init__(self, ws: Workspace, registry: RuleRegistry,
                 toolchain: Callable[[str, Platform], Toolchain | None], host: Platform) -> None:
        self.ws = ws
        self.registry = registry
        self.host = host
        self._toolchain_hook = toolchain
        self._toolchains: dict[tuple[str, Platform], Toolchain] = {}
        self.sources: dict[str, Path] = {}
        self.actions: list[Action] = []
        self.providers: dict[tuple[Label, Platform], list[Provider]] = {}
        self._by_id: dict[str, Action] = {}
        #: what the rules read: client environment variables, toolchains (kind, platform) -> digest
        self.env_reads: dict[str, str | None] = {}
        self.toolchain_reads: dict[tuple[str, str], str] = {}

    def toolchain(self, kind: str, platform: Platform) -> Toolchain:
        key = (kind, platform)
        if key not in self._toolchains:
            tc = self._toolchain_hook(kind, platform)
            from hermetic._incremental import toolchain_digest

            self.toolchain_reads[(kind, str(platform))] = toolchain_digest(tc)
            if tc is None:
                raise ToolchainError(f'no plugin provides a "{kind}" toolchain that builds for {platform} '
                                     f"on {self.host}", hint="install a platform plugin that does, or build for "
                                     "another platform", reason="no-toolchain")
            if tc.package is not None:
                tc = attrs.evolve(tc, tree=self._package_tree(tc))
            self._toolchains[key] = tc
        return self._toolchains[key]

    def _package_tree(self, tc: Toolchain) -> Artifact:
        """Declare (once) the fetch and unpack of *tc*'s package; its tree."""
        pkg = tc.package
        assert pkg is not None
        if pkg.sha256 not in tc.identity.values():
            raise ToolchainError(f"the {tc.kind} toolchain's package {pkg.filename} (sha256 {pkg.sha256}) is not "
                                 "in the toolchain's identity, so not in the keys of the actions it runs",
                                 hint="its plugin must put the package's sha256 into identity", reason="toolchain")
        base = f"out/.toolchains/{pkg.name}-{pkg.version}"
        archive, tree = Artifact(f"{base}/{pkg.filename}"), Artifact(f"{base}/root", is_tree=True)
        if archive.path not in {o.path for a in self.actions for o in a.outputs}:
            fetch = Action("fetch", pkg.label, "FetchToolchain", outputs=[archive], params={
                "name": pkg.filename, "sha256": pkg.sha256, "size": pkg.size, "urls": list(pkg.urls),
                "mirrors": []})
            unpack = Action("extract", pkg.label, UNPACK_TOOLCHAIN, inputs=[archive], outputs=[tree],
                            params={"strip_prefix": pkg.strip_prefix})
            for a in (fetch, unpack):
                self.actions.append(a)
                self._by_id[a.id] = a
        return tree

    def source(self, path: Path, tool: bool = False) -> Artifact:
        """The input artifact of a file: ``src/<path in the workspace>``; a
        file a rule plugin ships (*tool*) is ``tool/<path in its Python
        package>``, wherever the plugin is installed (a checkout inside the
        workspace, a wheel in site-packages), so the keys of the actions that
        read it are the same for every teammate."""
        path = path.resolve()
        if tool:
            rel = "tool/" + _package_path(path)
        else:
            try:
                rel = "src/" + str(path.relative_to(self.ws.root.resolve()))
            except ValueError:
                rel = f"tool/{path.parent.name}/{path.name}"
        prev = self.sources.get(rel)
        if prev is not None and prev != path:
            raise AnalysisError(f"two different files both map to {rel}: {prev} and {path}")
        self.sources[rel] = path
        return Artifact(rel)

    def run(self, loaded: Loaded, roots: Iterable[Label], platform: Platform | None = None) -> Analysis:
        top: dict[Label, tuple[Artifact, ...]] = {}
        # analysis recurses along dependency chains (a few frames per level):
        # a graph 1,000 targets deep must not hit Python's default limit
        # (since 3.11, Python-to-Python calls do not grow the C stack)
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 10 * len(loaded.decls) + 1000))
        try:
            for r in roots:
                top[r] = self._analyze(loaded, r, self._platform_of(loaded.decls[r], platform or self.host)).files
        finally:
            sys.setrecursionlimit(limit)
        return Analysis(self.actions, self.sources, self.providers, top)

    def _platform_of(self, decl: TargetDecl, inherited: Platform) -> Platform:
        p = decl.values.get("platform")
        return Platform.parse(p) if isinstance(p, str) else inherited

    def _analyze(self, loaded: Loaded, label: Label, platform: Platform) -> Target:
        decl = loaded.decls[label]
        rule = self.registry.get(decl.rule)
        assert rule is not None
        if rule.platform_independent:
            platform = ANY
        key = (label, platform)
        if key in self.providers:
            return Target(label, self.providers[key])
        values: dict[str, Any] = {}
        for name, spec in rule.attrs.items():
            raw = decl.values.get(name, spec.default)
            values[name] = self._resolve(loaded, decl, spec, raw, platform)
        ctx = RuleContext(label, rule, values, platform, self.toolchain, self.source, decl.where, self.host)
        ctx.env_reads = self.env_reads
        try:
            providers = list(rule.impl(ctx))
        except (AnalysisError, ToolchainError):
            raise
        except HermeticError as exc:
            raise AnalysisError(f"target {label}: {exc}", hint=exc.hint, where=decl.where,
                                reason=exc.reason) from exc
        if not any(isinstance(p, DefaultInfo) for p in providers):
            providers.append(DefaultInfo(tuple(a for act in ctx.declared_actions for a in act.outputs)))
        for action in ctx.declared_actions:
            seen = self._by_id.get(action.id)
            if seen is None:
                self._by_id[action.id] = action
                self.actions.append(action)
            elif seen != action:  # a shared action must be the same in every configuration
                raise AnalysisError(f"target {label}: action {action.id} is shared between platforms but "
                                    f"declared differently for {platform}", where=decl.where,
                                    hint="a shared output may depend only on platform-independent inputs")
        self.providers[key] = providers
        return Target(label, providers)

    def _resolve(self, loaded: Loaded, decl: TargetDecl, spec: Attr, raw: Any, platform: Platform) -> Any:
        pkg = decl.label.package
        if spec.cfg == "exec":
            platform = self.host
        if spec.type == "label":
            if raw is None:
                return None
            dep_label = Label.parse(raw, pkg)
            return self._dep(loaded, decl, spec, dep_label, platform)
        if spec.type == "label_list":
            return [self._dep(loaded, decl, spec, Label.parse(x, pkg), platform) for x in raw]
        if spec.type == "files":
            out: list[Artifact] = []
            for item in raw:
                if _is_label(item):
                    out.extend(self._dep(loaded, decl, spec, Label.parse(item, pkg), platform).files)
                else:
                    out.extend(self.source(p) for p in _expand(self.ws, pkg, item))
            return out
        if spec.type == "string_list":
            return list(raw)
        return raw

    def _dep(self, loaded: Loaded, decl: TargetDecl, spec: Attr, dep: Label, platform: Platform) -> Target:
        dplatform = self._platform_of(loaded.decls[dep], platform)
        t = self._analyze(loaded, dep, dplatform)
        for prov in spec.providers:
            if prov not in t:
                raise AnalysisError(f"target {decl.label}: {dep} does not provide {prov.__name__}",
                                    where=decl.where, reason="missing-provider",
                                    hint=f"depend on a target whose rule returns {prov.__name__}")
        return t


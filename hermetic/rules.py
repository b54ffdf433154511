"""The rule-author API: attribute schemas, RuleContext, DepSet, RuleRegistry.

A rule is a function ``impl(ctx) -> list[Provider]``. It reads its target's
attributes and its dependencies' providers from *ctx*, declares outputs and the
actions that produce them, and returns providers. It runs no command and reads
no file: the engine does that later, with caching and sandboxing.
"""

from __future__ import annotations

import weakref

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar, final

import attrs

from hermetic.errors import AnalysisError, HermeticError, Location
from hermetic.model import Action, Artifact, Label, Output, Platform, Provider, Toolchain, Work, pickled_as_tuple

__all__ = [
    "Attr", "attr", "DefaultInfo", "DepSet", "Rule", "RuleContext", "RuleRegistry",
    "Target", "Output", "Work",
]

T = TypeVar("T")


@final
class DepSet(Generic[T]):
    """An immutable set built from direct items and other DepSets, flattened
    lazily (preorder, first occurrence wins) only when someone needs the list."""

    __slots__ = ("_direct", "_transitive", "_flat")

    def __init__(self, direct: Iterable[T] = (), transitive: Iterable[DepSet[T]] = ()) -> None:
        self._direct = tuple(direct)
        self._transitive = tuple(transitive)
        self._flat: tuple[T, ...] | None = None

    def to_list(self) -> list[T]:
        if self._flat is None:
            seen: set[Any] = set()
            out: list[T] = []
            stack: list[DepSet[T] | tuple[T]] = [self]
            while stack:
                node = stack.pop()
                if isinstance(node, DepSet):
                    stack.extend(reversed([*((x,) for x in node._direct), *node._transitive]))
                    continue
                item = node[0]
                if item not in seen:
                    seen.add(item)
                    out.append(item)
            self._flat = tuple(out)
        return list(self._flat)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.to_list())


@pickled_as_tuple
@attrs.frozen
class DefaultInfo(Provider):
    """The files a target hands to the user when it is built directly."""

    files: tuple[Artifact, ...] = attrs.field(converter=tuple, default=())


# -- attribute schemas -------------------------------------------------------


@attrs.frozen
class Attr:
    """Declares one attribute of a rule: its type, default and whether it is
    mandatory. Types: string, string_list, string_dict, bool, int, label,
    label_list, files (workspace files, globs or labels)."""

    type: str
    mandatory: bool = False
    default: Any = None
    doc: str = ""
    providers: tuple[type, ...] = attrs.field(converter=tuple, default=())
    #: "target": deps are built for the depending target's platform;
    #: "exec": for the host, because an action runs them (Bazel's cfg)
    cfg: str = "target"

    @property
    def is_dep(self) -> bool:
        return self.type in ("label", "label_list", "files")


class _AttrFactory:
    def string(self, *, mandatory: bool = False, default: str | None = None, doc: str = "") -> Attr:
        return Attr("string", mandatory, default, doc)

    def string_list(self, *, mandatory: bool = False, default: Sequence[str] = (), doc: str = "") -> Attr:
        return Attr("string_list", mandatory, tuple(default), doc)

    def string_dict(self, *, mandatory: bool = False, doc: str = "") -> Attr:
        return Attr("string_dict", mandatory, {}, doc)

    def bool(self, *, default: bool = False, doc: str = "") -> Attr:
        return Attr("bool", False, default, doc)

    def int(self, *, default: int = 0, doc: str = "") -> Attr:
        return Attr("int", False, default, doc)

    def label(self, *, mandatory: bool = False, providers: Sequence[type] = (), doc: str = "",
              cfg: str = "target") -> Attr:
        return Attr("label", mandatory, None, doc, providers, cfg)

    def label_list(self, *, mandatory: bool = False, providers: Sequence[type] = (), doc: str = "",
                   cfg: str = "target") -> Attr:
        return Attr("label_list", mandatory, (), doc, providers, cfg)

    def files(self, *, mandatory: bool = False, doc: str = "") -> Attr:
        return Attr("files", mandatory, (), doc)


attr = _AttrFactory()


@attrs.frozen
class Rule:
    """A rule kind: its name in BUILD.toml, attribute schema and implementation."""

    name: str
    impl: Callable[[RuleContext], Sequence[Provider]] = attrs.field(eq=False)
    attrs: Mapping[str, Attr] = attrs.field(factory=dict, eq=False)
    doc: str = ""
    plugin: str = ""
    #: its outputs do not depend on the target platform (a fetch, a file
    #: group): analysed once for every platform that needs it
    platform_independent: bool = False


@final
class RuleRegistry:
    """Filled in by ``hermetic_register_rules`` hooks."""

    def __init__(self) -> None:
        self._rules: dict[str, Rule] = {}

    def add(self, rule: Rule) -> None:
        if rule.name in self._rules and self._rules[rule.name].impl is not rule.impl:
            raise HermeticError(
                f'rule "{rule.name}" is registered twice '
                f"({self._rules[rule.name].plugin or '?'} and {rule.plugin or '?'})",
                hint="rename one of them",
                reason="duplicate-rule",
            )
        self._rules[rule.name] = rule

    def rule(
        self, name: str, *, attrs: Mapping[str, Attr] | None = None, doc: str = "",
        platform_independent: bool = False,
    ) -> Callable[[Callable[[RuleContext], Sequence[Provider]]], Callable[[RuleContext], Sequence[Provider]]]:
        """Decorator form of :meth:`add`."""

        def deco(fn: Callable[[RuleContext], Sequence[Provider]]) -> Callable[[RuleContext], Sequence[Provider]]:
            self.add(Rule(name, fn, dict(attrs or {}), doc or (fn.__doc__ or "").strip(), fn.__module__,
                          platform_independent))
            return fn

        return deco

    def get(self, name: str) -> Rule | None:
        return self._rules.get(name)

    def names(self) -> list[str]:
        return sorted(self._rules)


# -- analysis-time view of a dependency ---------------------------------------


@final
class Target:
    """A dependency as a rule sees it: label plus providers, indexable by type."""

    def __init__(self, label: Label, providers: Sequence[Provider]) -> None:
        self.label = label
        self._providers = {type(p): p for p in providers}

    def __getitem__(self, key: type[T]) -> T:
        try:
            return self._providers[key]  # type: ignore[return-value]
        except KeyError:
            raise AnalysisError(
                f"{self.label} does not provide {key.__name__}",
                hint="depend on a target whose rule returns it",
                reason="missing-provider",
            ) from None

    def get(self, key: type[T]) -> T | None:
        return self._providers.get(key)  # type: ignore[return-value]

    @property
    def providers(self) -> tuple[Provider, ...]:
        return tuple(self._providers.values())

    def __contains__(self, key: type) -> bool:
        return key in self._providers

    @property
    def files(self) -> tuple[Artifact, ...]:
        info = self._providers.get(DefaultInfo)
        return info.files if info else ()  # type: ignore[union-attr]


ToolchainResolver = Callable[[str, Platform], Toolchain]


@final
class Actions:
    """``ctx.actions``: how a rule declares work."""

    def __init__(self, ctx: RuleContext) -> None:
        # not a reference cycle: a graph of 100,000 targets is analysed with the
        # cyclic collector paused, and each context would outlive its analysis
        self._ctx = weakref.proxy(ctx)

    def run(
        self,
        argv: Sequence[str | Artifact | Output | Work],
        *,
        inputs: Iterable[Artifact] = (),
        outputs: Sequence[Artifact],
        mnemonic: str,
        env: Mapping[str, str] | None = None,
        toolchains: Sequence[Toolchain] = (),
        cpus: int = 1,
    ) -> Action:
        """Run *argv* in the sandbox.

        Items of *argv* that are artifacts are replaced by their path in the
        sandbox; ``Output(name)`` by the path of the action's output directory
        (joined with *name*), ``Work(name)`` likewise for its scratch
        directory. The environment is *env* plus the sandbox's fixed one.
        ``cpus`` > 1 lets the action use that many jobs (``$HERMETIC_JOBS``).
        """
        args: list[Any] = []
        ins = list(inputs)
        for a in argv:
            if isinstance(a, Artifact):
                args.append({"in": a.path})
                if a not in ins:
                    ins.append(a)
            elif isinstance(a, Output):
                args.append({"out": a.name})
            elif isinstance(a, Work):
                args.append({"work": a.name})
            else:
                args.append(str(a))
        params = {"argv": args, "env": dict(sorted((env or {}).items()))}
        return self._ctx._add(Action("run", self._ctx.label, mnemonic, ins, outputs, params,
                                     toolchains, cpus, self._ctx.platform))

    def fetch(
        self,
        output: Artifact,
        *,
        sha256: str,
        urls: Sequence[str] = (),
        mirrors: Sequence[str] = (),
        size: int | None = None,
        signature: Mapping[str, Any] | None = None,
        mnemonic: str = "Fetch",
    ) -> Action:
        """Obtain the blob with *sha256*: from the store, distdirs, *mirrors*,
        then *urls*. *signature*: ``{"kind": "openpgp", "sha256": ..., "urls":
        [...], "mirrors": [...], "key": Artifact, "fingerprint": ...}`` is
        checked before anything reaches the store."""
        params: dict[str, Any] = {"sha256": sha256.lower(), "urls": list(urls), "mirrors": list(mirrors),
                                  "size": size, "name": output.name}
        inputs: list[Artifact] = []
        if signature is not None:
            sig = dict(signature)
            key = sig.pop("key")
            inputs.append(key)
            sig["key"] = key.path
            params["signature"] = sig
        return self._ctx._add(Action("fetch", self._ctx.label, mnemonic, inputs, [output], params))

    def extract(
        self, archive: Artifact, output: Artifact, *, strip_prefix: str = "", mnemonic: str = "Extract",
        subdir: str = "",
    ) -> Action:
        """Unpack a tar or zip *archive* into tree *output*, refusing any entry
        that would land outside it. Every entry must be under *strip_prefix*;
        with *subdir*, only that directory below it is extracted."""
        if not output.is_tree:
            raise AnalysisError("extract needs a tree output (declare_output(..., tree=True))")
        return self._ctx._add(Action("extract", self._ctx.label, mnemonic, [archive], [output],
                                     {"strip_prefix": (strip_prefix or "").strip("/"),
                                      **({"subdir": subdir.strip("/")} if subdir else {})}))

    def write(self, output: Artifact, content: str | bytes, *, executable: bool = False) -> Action:
        """Write *content* to *output* (no command runs)."""
        text = content.decode() if isinstance(content, bytes) else content
        return self._ctx._add(Action("write", self._ctx.label, f"Write[{output.name}]", [], [output],
                                     {"content": text, "executable": executable}))


@final
class RuleContext:
    """What a rule implementation gets: attributes, deps, toolchains, actions."""

    #: where client_env records what it read (set by the analyzer)
    env_reads: dict[str, str | None] | None = None

    def __init__(
        self,
        label: Label,
        rule: Rule,
        attrs_: Mapping[str, Any],
        platform: Platform,
        resolve_toolchain: ToolchainResolver,
        source_files: Callable[..., Artifact],
        where: Location | None = None,
        host: Platform | None = None,
    ) -> None:
        self.label = label
        self.rule = rule
        self.attr = _AttrView(attrs_)
        self.platform = platform
        #: the platform hermetic runs on: where build tools (the Python that
        #: runs code generators, packagers) come from
        self.host = host or platform
        self.where = where
        self.actions = Actions(self)
        self._resolve_toolchain = resolve_toolchain
        self._source_file = source_files
        self._actions: list[Action] = []
        self._outputs: dict[str, Artifact] = {}
        self._shared: set[str] = set()

    @property
    def declared_actions(self) -> tuple[Action, ...]:
        """The actions this rule declared so far, in order."""
        return tuple(self._actions)

    @property
    def package_dir(self) -> str:
        return self.label.package

    def toolchain(self, kind: str) -> Toolchain:
        """The *kind* toolchain for this target's platform."""
        return self._resolve_toolchain(kind, self.platform)

    def exec_toolchain(self, kind: str) -> Toolchain:
        """The *kind* toolchain that runs on the host and builds for it: for
        tools an action runs (a code generator, the wheel packer), whatever
        the target platform is."""
        return self._resolve_toolchain(kind, self.host)

    @property
    def config(self) -> str:
        """The configuration directory name: the platform, unless it is the
        host's or the target is platform-independent ("")."""
        return "" if self.platform.is_any or self.platform == self.host else str(self.platform)

    @property
    def output_dir(self) -> str:
        """Where this target's outputs go: ``out/<package>/<name>`` for the
        host platform and platform-independent targets, under
        ``out/<platform>/`` for any other platform (Bazel's configuration
        directory), so one target built for six platforms has six places."""
        return "/".join(p for p in ("out", self.config, self.label.package, self.label.name) if p)

    def declare_output(self, name: str, *, tree: bool = False, shared: bool = False) -> Artifact:
        """A new file (or, with *tree*, directory) this target produces.

        *shared*: the output does not depend on the target platform (a code
        generator run on the host, from platform-independent inputs): it goes
        to the unconfigured directory, and the action making it is analysed
        once for all platforms (every configuration must declare it
        identically). The action's outputs must all be shared or none."""
        if name in self._outputs:
            raise self.error(f'output "{name}" declared twice')
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise self.error(f'output name "{name}" must be a relative path inside the target')
        base = "/".join(p for p in ("out", self.label.package, self.label.name) if p) if shared else self.output_dir
        art = Artifact(f"{base}/{name}", tree, self.label)
        self._outputs[name] = art
        if shared:
            self._shared.add(art.path)
        return art

    def client_env(self, name: str) -> str | None:
        """A variable of the environment hermetic was started in (Bazel's
        ``--action_env``/``env_inherit``). A rule that passes it to an action
        puts its value in the action's env, hence in its key: changing it
        reruns exactly the actions that read it, and ``hermetic why`` names it."""
        import os

        value = os.environ.get(name)
        if self.env_reads is not None:  # the analysis cache's stamp names it
            self.env_reads[name] = value
        return value

    def tool_file(self, path: str | Path) -> Artifact:
        """A file shipped with a rule plugin (a helper script, a pinned key):
        an input like any source, keyed by its content and its path inside
        the plugin's package (``tool/recipes/wheel/wheeltest.py``), not by
        where the plugin is installed."""
        return self._source_file(Path(path), tool=True)

    def error(self, message: str, hint: str | None = None) -> AnalysisError:
        return AnalysisError(f"target {self.label}: {message}", hint=hint, where=self.where)

    def _add(self, action: Action) -> Action:
        shared = [o.path in self._shared for o in action.outputs]
        if any(shared) and not all(shared):
            raise self.error(f"action {action.mnemonic} writes shared and per-platform outputs",
                             hint="declare all of its outputs with shared=True, or none")
        if all(shared) and action.outputs:  # the same action for every platform: it runs on the host
            action = attrs.evolve(action, platform=self.host if action.platform else None)
        elif self.config:
            action = attrs.evolve(action, config=self.config)
        for out in action.outputs:
            if out.owner != self.label or out.path not in {a.path for a in self._outputs.values()}:
                raise self.error(f"action {action.mnemonic} writes {out.path}, which this target did not declare")
        for a in self._actions:
            clash = set(a.outputs) & set(action.outputs)
            if clash:
                raise self.error(f"{sorted(x.path for x in clash)} written by two actions")
        if any(a.mnemonic == action.mnemonic for a in self._actions):
            raise self.error(f'two actions named "{action.mnemonic}"', hint="give each action its own mnemonic")
        self._actions.append(action)
        return action


@final
class _AttrView:
    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"no attribute {name!r}")

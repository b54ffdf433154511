"""Frozen value types that cross phase boundaries: labels, platforms, digests,
artifacts, actions, providers and toolchains."""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import attrs

from hermetic.errors import LabelError, PlatformError

if TYPE_CHECKING:
    from hermetic.conventions import Conventions

C = TypeVar("C")

def pickled_as_tuple(cls: type[C]) -> type[C]:
    """Pickle a frozen attrs class's instances as a tuple of its fields,
    restored by one unrolled function: attrs pickles each as a dict by field
    name and restores it in a loop, and the 400,000 such objects of a
    100,000-action analysis took 0.7-1.3 s (CPU) to load, 0.5 s this way
    (and the pickle is an eighth smaller). For the classes an analysis
    holds by the hundred thousand."""
    names = [a.name for a in attrs.fields(cls)]  # type: ignore[arg-type]
    src = (f"def __getstate__(self):\n    return ({''.join(f'self.{n}, ' for n in names)})\n"
           "def __setstate__(self, state):\n"
           + "".join(f"    _set(self, {n!r}, state[{i}])\n" for i, n in enumerate(names)))
    ns: dict[str, Any] = {"_set": object.__setattr__}
    exec(src, ns)  # noqa: S102 -- generated from the class's own field names
    cls.__getstate__ = ns["__getstate__"]  # type: ignore[attr-defined]
    cls.__setstate__ = ns["__setstate__"]  # type: ignore[attr-defined]
    return cls


_PKG_RE = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-+]+$")


@pickled_as_tuple
@attrs.frozen(order=True)
class Label:
    """``//package:name``. ``package`` is a slash-separated path, "" for the root."""

    package: str
    name: str

    @classmethod
    def parse(cls, text: str, base: str | None = None) -> Label:
        """Parse *text*; ``:name`` is relative to package *base*."""
        raw = text.strip()
        if raw.startswith(":") and base is not None:
            pkg, name = base, raw[1:]
        elif raw.startswith("//"):
            body = raw[2:]
            if ":" in body:
                pkg, name = body.split(":", 1)
            else:
                pkg, name = body, body.rsplit("/", 1)[-1]
        else:
            raise LabelError(
                f'"{text}" is not a label',
                hint='labels look like "//package:name" (or ":name" in the same package)',
            )
        if (pkg and not _PKG_RE.match(pkg)) or not name or not _NAME_RE.match(name):
            raise LabelError(f'"{text}" is not a valid label', hint='use "//package:name"')
        return cls(pkg, name)

    def __str__(self) -> str:
        return f"//{self.package}:{self.name}"


_OS_ALIASES = {"macos": "darwin", "macosx": "darwin", "osx": "darwin", "win": "windows", "win32": "windows"}
_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}
_LIBC_OS = {"musllinux": "musl", "manylinux2014": "manylinux2014"}
_LINUX_LIBCS = ("glibc", "musl", "manylinux2014")


@attrs.frozen(order=True)
class Platform:
    """What code is built for (or on): os, cpu, libc."""

    os: str
    arch: str
    libc: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``os-arch[-libc]``: ``linux-x86_64``, ``linux-x86_64-musl``,
        ``linux-aarch64-manylinux2014``, ``darwin-aarch64``, ``windows-x86_64``.
        Wheel-style spellings are accepted too: ``macos-arm64``,
        ``musllinux-x86_64``, ``manylinux2014-x86_64``, ``win-amd64``."""
        parts = text.strip().lower().split("-")
        if len(parts) not in (2, 3) or not all(parts):
            raise PlatformError(f'"{text}" is not a platform',
                                hint='use "os-arch[-libc]", e.g. "linux-x86_64", "linux-x86_64-musl", "darwin-aarch64"')
        os_, arch = _OS_ALIASES.get(parts[0], parts[0]), _ARCH_ALIASES.get(parts[1], parts[1])
        libc = parts[2] if len(parts) == 3 else ""
        if os_ in _LIBC_OS:  # musllinux-x86_64, manylinux2014-x86_64
            if libc:
                raise PlatformError(f'"{text}" names its libc twice', hint=f'use "linux-{arch}-{_LIBC_OS[os_]}"')
            os_, libc = "linux", _LIBC_OS[os_]
        if os_ == "linux" and not libc:
            libc = "glibc"
        if os_ == "linux" and libc not in _LINUX_LIBCS:
            raise PlatformError(f'"{text}": unknown libc "{libc}"', hint=f"use one of {', '.join(_LINUX_LIBCS)}")
        if os_ in ("darwin", "windows") and libc:
            raise PlatformError(f'"{text}": {os_} has no libc variants', hint=f'use "{os_}-{arch}"')
        return cls(os_, arch, libc)

    @property
    def is_any(self) -> bool:
        return self.os == "any"

    def __str__(self) -> str:
        if self.libc and self.libc != "glibc":
            return f"{self.os}-{self.arch}-{self.libc}"
        return f"{self.os}-{self.arch}"


#: the platform of targets whose outputs are the same whatever is built for
#: (fetched sources, pinned wheels, file groups): analysed once, shared
ANY = Platform("any", "any")


@attrs.frozen(order=True)
class Digest:
    """sha256 and size of a blob, as in the Remote Execution API."""

    hash: str
    size: int

    @classmethod
    def of_bytes(cls, data: bytes) -> Digest:
        return cls(hashlib.sha256(data).hexdigest(), len(data))

    def __str__(self) -> str:
        return f"{self.hash}/{self.size}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        h, _, s = text.partition("/")
        return cls(h, int(s))


def canonical_json(value: Any) -> bytes:
    """The one canonical encoding used for every key and manifest."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sha256_json(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


@pickled_as_tuple
@attrs.frozen(order=True)
class Artifact:
    """A file or directory tree an action reads or writes.

    ``path`` is its place under the sandbox's input root: ``src/<workspace
    path>`` for sources, ``out/<package>/<target>/<name>`` for generated files,
    ``tool/<rule>/<name>`` for files a rule ships.
    """

    path: str
    is_tree: bool = False
    owner: Label | None = attrs.field(default=None, eq=False, order=False)

    @property
    def is_source(self) -> bool:
        return not self.path.startswith("out/")

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@attrs.frozen
class Output:
    """Placeholder in an argv for the action's own output directory (+ name)."""

    name: str = ""


@attrs.frozen
class Work:
    """Placeholder in an argv for the action's private scratch directory."""

    name: str = ""


@pickled_as_tuple
@attrs.frozen
class Action:
    """A declared unit of work. ``kind`` is "run", "fetch", "extract" or "write".

    ``params`` holds the kind's parameters as canonical JSON-able data; inputs
    and outputs are artifacts. ``volatile_env`` names environment variables the
    scheduler sets that by contract do not change outputs (e.g. job count).
    """

    kind: str
    owner: Label
    mnemonic: str
    inputs: tuple[Artifact, ...] = attrs.field(converter=tuple, default=())
    outputs: tuple[Artifact, ...] = attrs.field(converter=tuple, default=())
    params: Any = None
    toolchains: tuple[Toolchain, ...] = attrs.field(converter=tuple, default=())
    cpus: int = 1
    platform: Platform | None = None
    #: the configuration directory of a target built for a platform other
    #: than the host's (same as in its output paths); "" otherwise
    config: str = ""
    #: ``//pkg:name#Mnemonic[@config]``, unique in a build (made once: a
    #: re-check of 100,000 actions asks for it millions of times)
    id: str = attrs.field(init=False, eq=False, repr=False, order=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "id", f"{self.owner}#{self.mnemonic}" + (f"@{self.config}" if self.config else ""))

    @property
    def needs(self) -> tuple[Artifact, ...]:
        """What must exist before it runs: its inputs, and the unpacked trees
        of its toolchains' packages (shown to it, keyed by their identity)."""
        trees = tuple(t.tree for t in self.toolchains if t.tree is not None)
        return self.inputs + trees if trees else self.inputs

    @property
    def key_inputs(self) -> tuple[Artifact, ...]:
        """What its key hashes by content: its inputs, and the trees of
        toolchains a target built (a hermetic interpreter), whose identity is
        their digest. A package's tree is keyed by the package's pinned
        sha256 in the toolchain's identity instead."""
        built = tuple(t.tree for t in self.toolchains if t.tree is not None and t.package is None)
        return self.inputs + built if built else self.inputs

    @property
    def output_dir(self) -> str:
        """Where its owner's outputs live: what ``$OUT`` stands for."""
        return "/".join(p for p in ("out", self.config, self.owner.package, self.owner.name) if p)

    def describe(self) -> str:
        return f"{self.mnemonic} {self.owner}" + (f" [{self.config}]" if self.config else "")


class Provider:
    """Base class of the values rules hand to their dependants (``*Info``)."""

    __slots__: ClassVar[tuple[str, ...]] = ()


@attrs.frozen
class ToolchainPackage:
    """A whole toolchain as one pinned download (a wheel, a tarball): the
    engine fetches it like any source (store, distdirs, mirrors, URLs; its
    sha256 checked), unpacks it with the safe extractor, and shows the tree
    read-only to the actions that use the toolchain, at
    ``$HERMETIC_TOOLCHAIN_<KIND>``. Nothing is downloaded during analysis,
    and nothing when every action using it is cached. Its sha256 must be part
    of the toolchain's ``identity`` (so of every key it takes part in)."""

    name: str
    version: str
    filename: str
    sha256: str
    urls: tuple[str, ...] = attrs.field(converter=tuple, default=())
    size: int | None = None
    strip_prefix: str = ""

    @property
    def label(self) -> Label:
        """Who owns its fetch and unpack actions (``aquery``, ``why``)."""
        return Label(".toolchains", f"{self.name}-{self.version}")


@attrs.frozen
class ToolchainCache:
    """What a toolchain compiles for itself on first use and keeps in a cache
    (zig builds a target's libc stubs, compiler-rt and, for musl, the libc
    itself: 20 to 80 seconds in every action that links, since each starts
    with an empty ``$HOME``).

    ``script`` fills ``$OUT/cache``: a shell script run once per machine and
    toolchain, in the sandbox, with the toolchain's wrappers on ``PATH``. The
    engine then shows that tree read-only, at ``$HERMETIC_TOOLCHAIN_<KIND>_CACHE``,
    to every action that uses the toolchain; the toolchain's wrappers decide
    how to use it (zig's copy it, when linking, into a private writable
    cache).

    A cache, not an input: no key holds it. What it holds follows from the
    toolchain's identity, which every key it serves holds, while its bytes
    differ from one machine to the next (zig records inodes and times in it);
    keys that held it would never match between teammates. It is made where
    an action that needs it runs, never fetched from or sent to a remote, and
    ``verify`` compares what the actions that used it made."""

    #: what distinguishes it among the toolchain's caches (a zig target)
    name: str
    script: str


#: the mnemonic of the action that unpacks a toolchain's package: its tree is
#: kept as the store's checkout of it, which is what sandboxes are shown
UNPACK_TOOLCHAIN = "UnpackToolchain"


@attrs.frozen
class Toolchain:
    """A set of tools for one kind ("cc", "python"), fingerprinted.

    ``tools`` maps tool names to absolute paths; ``mounts`` are the host
    directories a sandbox must make visible (read-only) for them to run;
    ``identity`` is everything that identifies the tools' behaviour (binary
    digests, versions); ``info`` holds facts rules may use (triples, tags,
    extension conventions): a typed class of :mod:`hermetic.conventions`.

    ``wrappers`` maps tool names to small scripts that stand in for them: the
    engine writes them into each action's input root, puts their directory
    first on ``PATH``, and :meth:`tool` names the wrapper instead of the
    binary, so a command line records ``gcc``, never a host path. Wrappers
    are how a toolchain imposes flags (prefix maps, deterministic archives)
    without rules knowing, and they are part of the fingerprint.
    """

    kind: str
    tools: dict[str, str] = attrs.field(converter=lambda d: dict(sorted(d.items())))
    identity: dict[str, str] = attrs.field(converter=lambda d: dict(sorted(d.items())))
    mounts: tuple[str, ...] = attrs.field(converter=tuple, default=())
    #: what the toolchain tells rules (:mod:`hermetic.conventions`: one class per kind)
    info: Conventions | None = None
    hermetic: bool = False
    wrappers: dict[str, str] = attrs.field(factory=dict, converter=lambda d: dict(sorted(d.items())))
    #: a host directory holding the whole toolchain (a fetched package): the
    #: sandbox shows it at a place of its choosing, exported to the action as
    #: ``$HERMETIC_TOOLCHAIN_<KIND>``; ``tools`` are then relative to it, so
    #: where this machine keeps it is in no key
    root: str = attrs.field(default="", eq=False)
    #: the pinned download the whole toolchain comes from (then ``tools`` are
    #: relative to its unpacked tree), and that tree once analysis declared it
    package: ToolchainPackage | None = attrs.field(default=None, eq=False)
    tree: Artifact | None = attrs.field(default=None, eq=False)
    #: what the tools compile for themselves once per machine (not in the fingerprint: a cache)
    cache: ToolchainCache | None = attrs.field(default=None, eq=False)

    BIN: ClassVar[str] = ".toolchains"

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    @property
    def fingerprint(self) -> str:
        data: dict[str, Any] = {"kind": self.kind, "tools": self.tools, "identity": self.identity,
                                "hermetic": self.hermetic}
        if self.wrappers:
            data["wrappers"] = self.wrappers
        return sha256_json(data)

    @property
    def root_env(self) -> str:
        return f"HERMETIC_TOOLCHAIN_{self.kind.upper()}"

    @property
    def cache_env(self) -> str:
        """Where an action sees the toolchain's :class:`ToolchainCache`."""
        return f"HERMETIC_TOOLCHAIN_{self.kind.upper()}_CACHE"

    @property
    def bin_dir(self) -> str:
        """Where the wrappers live, relative to the action's input root."""
        return f"{self.BIN}/{self.kind}/bin"

    def conventions(self, cls: type[C]) -> C:
        """``info`` as *cls* (a class of :mod:`hermetic.conventions`); a
        toolchain whose plugin filled in something else is a plugin bug."""
        if not isinstance(self.info, cls):
            from hermetic.errors import ToolchainError

            raise ToolchainError(f"the {self.kind} toolchain ({self.identity}) gives {type(self.info).__name__} "
                                 f"where rules need {cls.__name__}", reason="toolchain",
                                 hint=f"its plugin must set info=hermetic.conventions.{cls.__name__}(...)")
        return self.info

    def wrapper_name(self, name: str) -> str:
        """The wrapper's file name: the binary's (``gcc``) unless the
        toolchain names them (one ``zig`` binary serves as cc, ar, ranlib)."""
        names = getattr(self.info, "wrapper_names", None) or {}
        return str(names.get(name) or self.tools[name].rsplit("/", 1)[-1])

    def tool(self, name: str) -> str:
        """How a command should invoke tool *name*: the wrapper's bare name
        (found on ``PATH``) when there is one, else the binary's path."""
        if name in self.wrappers:
            return self.wrapper_name(name)
        return self.tools[name]

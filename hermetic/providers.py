"""Providers that several rules share: what a source archive, a C library,
a pinned wheel, CPython's headers, an extension module and a wheel give the
rules that depend on them. A plugin's own rules may define more; these are
the common language, so they live here and not in one recipe."""

from __future__ import annotations

import attrs

from hermetic.model import Artifact, Platform, Provider, Toolchain
from hermetic.rules import DepSet

__all__ = ["BuiltWheelInfo", "CcInfo", "MatrixCell", "MatrixInfo", "PinnedWheel", "PyExtensionInfo", "PyHeadersInfo", "PyInterpreterInfo",
           "PyWheelInfo", "SourceInfo", "WheelInfo", "wheel_fits"]


@attrs.frozen
class SourceInfo(Provider):
    """A verified archive and its extracted tree."""

    archive: Artifact
    tree: Artifact
    #: the release's own timestamp, for builds of it to record (0: not pinned)
    source_date_epoch: int = 0


@attrs.frozen
class CcInfo(Provider):
    """Headers and static archives for compiling and linking against a C library."""

    includes: DepSet[Artifact]
    archives: DepSet[Artifact]
    version: str = ""
    #: a response file of what linking the archives also needs (-l flags), or None
    link_flags: Artifact | None = None


def wheel_fits(filename: str, tag: str, platform: Platform) -> bool:
    """Whether the wheel *filename* installs on the CPython whose interpreter
    tag is *tag* (``cp311``) on *platform*."""
    from packaging.utils import parse_wheel_filename

    _, _, _, tags = parse_wheel_filename(filename)
    major, minor = int(tag[2]), int(tag[3:])
    for t in tags:
        if t.abi == "abi3":  # the stable ABI of cp3X serves every CPython from 3.X on
            if not (t.interpreter.startswith("cp3") and int(t.interpreter[3:]) <= minor):
                continue
        elif t.interpreter not in (tag, f"py{major}", f"cp{major}") or t.abi not in (tag, "none"):
            continue
        if t.platform == "any":
            return True
        if platform.os == "linux" and t.platform.endswith("_" + platform.arch) and (
                t.platform.startswith("musllinux") if platform.libc == "musl" else
                t.platform.startswith("manylinux")):
            return True
    return False


@attrs.frozen
class PinnedWheel:
    """One pinned file of a wheel pin set, fetched and unpacked."""

    filename: str
    wheel: Artifact
    unpacked: Artifact


@attrs.frozen
class PyWheelInfo(Provider):
    """A pinned wheel, and the same wheel unpacked (for use on PYTHONPATH):
    the one for the interpreter and platform the target was analysed for;
    ``candidates`` holds every pinned file (each fetched only when an action
    that uses it runs), for rules that choose per interpreter (the matrix)."""

    distribution: str
    version: str
    wheel: Artifact
    unpacked: Artifact
    candidates: tuple[PinnedWheel, ...] = ()

    def for_python(self, tag: str, platform: Platform) -> PinnedWheel | None:
        """The pinned file that installs on CPython *tag* on *platform*: the
        most specific one (an interpreter's own build before abi3, before a
        pure-Python wheel), as pip would choose."""
        fits = [c for c in self.candidates if wheel_fits(c.filename, tag, platform)]

        def rank(c: PinnedWheel) -> int:
            name = c.filename
            return 0 if f"-{tag}-{tag}-" in name else 1 if "-abi3-" in name else 2

        return min(fits, key=rank) if fits else None


@attrs.frozen
class PyInterpreterInfo(Provider):
    """An interpreter a target built (``cpython``): the ``python`` toolchain
    that runs it, keyed by its tree's digest, for the platform it runs on."""

    toolchain: Toolchain
    version: str
    platform: Platform
    #: its install tree (for a cross build's sysconfig data and headers)
    tree: Artifact | None = None
    #: for an interpreter of another CPU: the same release for this machine, which runs the
    #: package's build backend (configured for this one, as crossenv does)
    build_python: Toolchain | None = None
    #: how it runs here (qemu-user), when it is another CPU's: actions that run it need it too
    emulator: Toolchain | None = None

    @property
    def toolchains(self) -> tuple[Toolchain, ...]:
        """What an action that runs this interpreter needs."""
        return (self.toolchain, self.emulator) if self.emulator is not None else (self.toolchain,)


@attrs.frozen
class PyHeadersInfo(Provider):
    """Headers (``include``: a tree with Python.h and pyconfig.h), the stable
    ABI level they are used at, and libraries an extension links (Windows)."""

    include: Artifact
    version: str
    limited_api: str
    libs: tuple[Artifact, ...] = ()

    @property
    def hex_version(self) -> str:
        major, minor = (int(x) for x in self.limited_api.split(".")[:2])
        return f"0x{major:02X}{minor:02X}0000"

    @property
    def python_tag(self) -> str:
        return "cp" + "".join(self.limited_api.split(".")[:2])


@attrs.frozen
class PyExtensionInfo(Provider):
    """A compiled extension module: dotted name, the shared object, its check."""

    module: str
    shared_object: Artifact
    check: Artifact
    runtime_wheels: tuple[Artifact, ...] = ()
    library_version: str = ""
    #: the wheel tag's interpreter and ABI parts (cp39, abi3)
    python_tag: str = ""
    abi_tag: str = ""
    #: the wheel platform tag family it was linked for (ExtensionConventions.wheel_platform)
    wheel_platform: str = ""
    #: the musl release it links, for a musllinux tag ("" for other libcs)
    musl: str = ""


@attrs.frozen
class WheelInfo(Provider):
    """A wheel built here, and its test report when its tests ran."""

    wheel: Artifact
    test_report: Artifact | None


@attrs.frozen
class BuiltWheelInfo(Provider):
    """A wheel hermetic built from someone's sdist: ``dist`` holds it, ``facts``
    what its extensions were found to be."""

    dist: Artifact
    facts: Artifact
    non_hermetic: tuple[str, ...] = ()


@attrs.frozen
class MatrixCell:
    """One cell of a wheel matrix: the wheel built for (or, abi3, reused by)
    one interpreter on one platform, and its test run. ``build`` and
    ``test`` are the ids of the actions that made them, for the summary's
    times and cache column."""

    name: str
    python: str
    platform: str
    dist: Artifact
    facts: Artifact
    report: Artifact | None
    build: tuple[str, ...]
    test: str = ""


@attrs.frozen
class MatrixInfo(Provider):
    """A wheel matrix (``wheel_matrix``): after a build of it, hermetic writes
    its summary table to ``summary`` (a path below the output directory)."""

    cells: tuple[MatrixCell, ...]
    summary: str

"""Providers that several rules share: what a source archive, a C library,
a pinned wheel, CPython's headers, an extension module and a wheel give the
rules that depend on them. A plugin's own rules may define more; these are
the common language, so they live here and not in one recipe."""

from __future__ import annotations

import attrs

from hermetic.model import Artifact, Provider
from hermetic.rules import DepSet

__all__ = ["BuiltWheelInfo", "CcInfo", "PyExtensionInfo", "PyHeadersInfo", "PyWheelInfo", "SourceInfo",
           "WheelInfo"]


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


@attrs.frozen
class PyWheelInfo(Provider):
    """A pinned wheel, and the same wheel unpacked (for use on PYTHONPATH)."""

    distribution: str
    version: str
    wheel: Artifact
    unpacked: Artifact


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

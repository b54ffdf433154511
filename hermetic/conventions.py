"""What a platform plugin tells the rules: the typed contract of each
toolchain kind (``Toolchain.info``).

A plugin author fills one of these for every toolchain it returns; a rule
reads its fields, never a platform name. None of it is in an action key by
itself: a value that changes outputs also appears in the toolchain's
``identity`` (which is), or in the command lines the rules derive from it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TypeAlias

import attrs

__all__ = ["CcConventions", "Conventions", "ExtensionConventions", "Exports", "PythonConventions"]


def _frozen_dict(d: Mapping[str, str] | None) -> dict[str, str]:
    return dict(sorted((d or {}).items()))


class Exports(enum.StrEnum):
    """How a linked extension module comes to export only ``PyInit_<name>``."""

    #: ELF: a linker version script (``global: PyInit_*; local: *;``)
    VERSION_SCRIPT = "version-script"
    #: Mach-O: the static libraries' symbols are made private extern before the link
    PRIVATE_EXTERN = "private-extern"
    #: PE: a module definition file naming the one export
    DEF_FILE = "def"


@attrs.frozen
class CcConventions:
    """A ``cc`` toolchain: a C compiler for one target."""

    #: the compiler's target triple (``x86_64-linux-gnu``, ``aarch64-macos.11.0``)
    triple: str
    #: "gcc" or "zig": flags only one family understands are chosen by it
    family: str
    #: OpenSSL's ``./Configure`` target for this compiler and platform ("" if none)
    openssl_target: str = ""
    #: GNU triplet for an autoconf ``--host`` when cross-compiling ("" if native)
    gnu_host: str = ""
    #: the musl release linked (``1.2``) for musl targets, else ""
    musl: str = ""
    #: tool name -> the wrapper's file name, where it differs from the binary's
    wrapper_names: dict[str, str] = attrs.field(factory=dict, converter=_frozen_dict)


@attrs.frozen
class ExtensionConventions:
    """A ``pyext`` toolchain: how a CPython extension module is made and
    packaged on one target OS."""

    #: "linux", "darwin" or "windows"
    os: str
    #: "elf", "macho" or "pe"
    binary_format: str
    #: the module's file name suffix (``.abi3.so``, ``.pyd``)
    ext_suffix: str
    #: flags for linking the module; ``{name}`` stands for its file name
    link_flags: tuple[str, ...] = attrs.field(converter=tuple)
    exports: Exports = attrs.field(converter=Exports)
    #: the wheel platform tag family: "linux" (manylinux/musllinux), "macosx", "win"
    wheel_platform: str
    #: "generate" (probe the target compiler) or a file of CPython's source to use
    pyconfig: str = "generate"
    #: compile flags every object of the module needs
    cflags: tuple[str, ...] = attrs.field(converter=tuple, default=("-fPIC",))
    #: NEEDED library name -> the name the target's loader knows it by (musl's libc)
    needed_renames: dict[str, str] = attrs.field(factory=dict, converter=_frozen_dict)
    #: PRIVATE_EXTERN: the helper script (standard library only) that hides symbols
    hide_helper: str = ""
    #: Windows: the stable-ABI DLL modules import from, and dlltool's machine name
    python_dll: str = ""
    dlltool_machine: str = ""


@attrs.frozen
class PythonConventions:
    """A ``python`` toolchain: an interpreter rules run (and build wheels for)."""

    version: str
    #: the interpreter tag (``cp311``)
    tag: str
    soabi: str = ""
    ext_suffix: str = ""


Conventions: TypeAlias = CcConventions | ExtensionConventions | PythonConventions

"""macOS: how CPython extension modules are linked for Darwin targets (from
any host), and the ``sandbox-exec`` sandbox for macOS hosts.

Linking conventions: a Mach-O bundle-like dylib named ``*.abi3.so``, linked
with ``-undefined dynamic_lookup`` (the interpreter provides the C API at
load time; nothing links libpython). Only ``PyInit_<name>`` may be exported:
the module's own code is compiled ``-fvisibility=hidden``, and the static
libraries' symbols are made *private extern* before linking
(:mod:`plugins.macho_hide`, what ld64's ``-hidden-l`` does), because zig's
Mach-O linker reads ``-exported_symbols_list`` but does not apply it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hermetic.conventions import Exports, ExtensionConventions
from hermetic.hookspecs import hookimpl
from hermetic.model import Platform, Toolchain
from plugins import macho_hide
from plugins.macho_hide import hide_archive_symbols, hide_object_symbols

__all__ = ["SandboxExec", "hide_archive_symbols", "hide_object_symbols", "sandbox_profile"]

# -- the pyext toolchain: extension-module conventions for Darwin targets ---------


@hookimpl
def hermetic_toolchain(kind: str, target: Platform, host: Platform) -> Toolchain | None:
    if kind != "pyext" or target.os != "darwin":
        return None
    helper = Path(macho_hide.__file__)  # runs inside the sandbox, standard library only
    from hermetic.toolchain import file_sha256

    info = ExtensionConventions(
        os="darwin", binary_format="macho", ext_suffix=".abi3.so", pyconfig="generate",
        # {name}: the module's file name; a dylib records an install name, and
        # the linker's default would be the output path in the sandbox
        link_flags=("-shared", "-Wl,-undefined,dynamic_lookup", "-Wl,-headerpad_max_install_names",
                    "-Wl,-install_name,@rpath/{name}"),
        exports=Exports.PRIVATE_EXTERN, hide_helper=str(helper), wheel_platform="macosx")
    identity = {"conventions": "darwin-2", "sha256:helper": file_sha256(helper)}
    return Toolchain("pyext", {}, identity, info=info, hermetic=True)


# -- sandbox-exec ----------------------------------------------------------------


def sandbox_profile(inputs: str, outputs: str, work: str, home: str, tmp: str,
                    system_read: tuple[str, ...] = ("/usr", "/bin", "/System", "/Library/Developer",
                                                    "/private/etc", "/dev", "/private/var/db/timezone"),
                    toolchain_dirs: tuple[str, ...] = ()) -> str:
    """An SBPL profile for ``sandbox-exec -p``: deny by default; read the
    system, the toolchains and the inputs; write only the outputs, the
    scratch directory, home and tmp; no network but nothing; processes may
    fork and exec (compilers do)."""

    def q(p: str) -> str:
        return '"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"'

    reads = " ".join(f"(subpath {q(p)})" for p in (*system_read, *toolchain_dirs, inputs))
    writes = " ".join(f"(subpath {q(p)})" for p in (outputs, work, home, tmp))
    return "\n".join([
        "(version 1)",
        "(deny default)",
        "(allow process-fork)",
        "(allow process-exec)",
        "(allow signal (target same-sandbox))",
        "(allow sysctl-read)",
        "(allow mach-lookup (global-name \"com.apple.system.logger\"))",
        f"(allow file-read* (literal \"/\") {reads} {writes})",
        f"(allow file-write* {writes} (literal \"/dev/null\"))",
        "(deny network*)",
        "",
    ])


class SandboxExec:
    """macOS: each action runs under ``sandbox-exec`` with a generated
    profile (see :func:`sandbox_profile`). Paths are the real ones (no mount
    namespace on macOS), so the layout is per-action directories; no pid or
    uid namespace, so the sandbox declares less than bubblewrap does."""

    name = "sandbox-exec"
    varies: frozenset[str] = frozenset()
    can_bind = False  # toolchain roots stay where they are (readable through the profile)

    def __init__(self, exe: str) -> None:
        self.exe = exe

    def profile(self) -> dict[str, Any]:
        return {"name": "sandbox-exec", "version": "1",
                "enforces": ["no-network", "read-only-inputs", "private-dirs", "clear-env", "no-home", "umask"],
                "does-not-enforce": ["fixed-paths", "pid-namespace", "hostname"]}

    def layout(self, req_dirs: tuple[Path, Path, Path], variation: Any = None) -> Any:
        from hermetic.sandbox import Layout

        ins, outs, work = req_dirs
        return Layout(str(ins), str(outs), str(work), str(work / ".home"), str(work / ".tmp"))

    def command(self, request: Any) -> list[str]:
        lay = self.layout((request.inputs, request.outputs, request.work))
        profile = sandbox_profile(lay.inputs, lay.outputs, lay.work, lay.home, lay.tmp,
                                  toolchain_dirs=tuple(request.mounts) + tuple(h for h, _ in request.binds))
        return [self.exe, "-p", profile, "/usr/bin/env", "-i",
                *(f"{k}={v}" for k, v in sorted(request.env.items())), *request.argv]

    def run(self, request: Any) -> Any:
        from hermetic.sandbox import UMASK, run_process

        Path(request.work, ".home").mkdir(exist_ok=True)
        Path(request.work, ".tmp").mkdir(exist_ok=True)
        return run_process(self.command(request), log=request.log, timeout=request.timeout,
                           env={"PATH": "/usr/bin:/bin"}, umask=UMASK)


@hookimpl
def hermetic_sandbox(host: Platform, config: Any) -> SandboxExec | None:
    if host.os != "darwin" or config.mode not in ("auto", "sandbox-exec"):
        return None
    exe = shutil.which("sandbox-exec", path="/usr/bin")
    return SandboxExec(exe) if exe else None

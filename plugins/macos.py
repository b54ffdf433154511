"""macOS: how CPython extension modules are linked for Darwin targets (from
any host), and the ``sandbox-exec`` sandbox for macOS hosts.

Linking conventions: a Mach-O bundle-like dylib named ``*.abi3.so``, linked
with ``-undefined dynamic_lookup`` (the interpreter provides the C API at
load time; nothing links libpython). Only ``PyInit_<name>`` may be exported:
the module's own code is compiled ``-fvisibility=hidden``, and the static
libraries' symbols are made *private extern* before linking
(:func:`hide_archive_symbols`, what ld64's ``-hidden-l`` does), because zig's
Mach-O linker reads ``-exported_symbols_list`` but does not apply it.

Run as a script, this module hides the symbols of the archives named on its
command line (used inside the sandbox by the ``cffi_extension`` rule).
"""

from __future__ import annotations

import shutil
import struct
import sys
from pathlib import Path
from typing import Any

from hermetic.hookspecs import hookimpl
from hermetic.model import Platform, Toolchain

# -- Mach-O symbol hiding ---------------------------------------------------------

_MH_MAGIC_64 = 0xFEEDFACF
_LC_SYMTAB = 0x2
_N_EXT, _N_PEXT, _N_TYPE, _N_SECT, _N_STAB = 0x01, 0x10, 0x0E, 0x0E, 0xE0


def hide_object_symbols(data: bytearray, start: int = 0, end: int | None = None) -> int:
    """Mark every external symbol a 64-bit Mach-O object *defines* as private
    extern, in place; return how many. Undefined references are untouched."""
    end = len(data) if end is None else end
    if end - start < 32 or struct.unpack_from("<I", data, start)[0] != _MH_MAGIC_64:
        return 0
    ncmds = struct.unpack_from("<I", data, start + 16)[0]
    off = start + 32
    hidden = 0
    for _ in range(ncmds):
        cmd, size = struct.unpack_from("<II", data, off)
        if cmd == _LC_SYMTAB:
            symoff, nsyms = struct.unpack_from("<II", data, off + 8)
            for i in range(nsyms):
                at = start + symoff + 16 * i  # struct nlist_64
                n_type = data[at + 4]
                if n_type & _N_STAB == 0 and n_type & _N_EXT and n_type & _N_TYPE == _N_SECT \
                        and not n_type & _N_PEXT:
                    data[at + 4] = n_type | _N_PEXT
                    hidden += 1
        off += size
    return hidden


def hide_archive_symbols(path: Path) -> int:
    """Hide the defined symbols of every Mach-O member of the ``ar`` archive
    at *path* (patched in place: sizes do not change, the archive's symbol
    index stays valid). Returns the number of symbols hidden."""
    data = bytearray(path.read_bytes())
    if data[:8] != b"!<arch>\n":
        raise ValueError(f"{path}: not an ar archive")
    off, hidden = 8, 0
    while off + 60 <= len(data):
        header = bytes(data[off:off + 60])
        name = header[:16].decode("ascii", "replace").strip()
        size = int(header[48:58].decode().strip())
        body = off + 60
        name_len = int(name[3:]) if name.startswith("#1/") else 0  # BSD long name before the body
        hidden += hide_object_symbols(data, body + name_len, body + size)
        off = body + size + (size & 1)
    path.write_bytes(bytes(data))
    return hidden


# -- the pyext toolchain: extension-module conventions for Darwin targets ---------


@hookimpl
def hermetic_toolchain(kind: str, target: Platform, host: Platform) -> Toolchain | None:
    if kind != "pyext" or target.os != "darwin":
        return None
    helper = Path(__file__)
    from hermetic.toolchain import file_sha256

    info: dict[str, Any] = {
        "os": "darwin", "format": "macho", "ext_suffix": ".abi3.so", "pyconfig": "generate",
        "link": ["-shared", "-Wl,-undefined,dynamic_lookup", "-Wl,-headerpad_max_install_names"],
        "exports": "private-extern", "helper": str(helper), "tag": "macosx",
    }
    identity = {"conventions": "darwin-1", "sha256:helper": file_sha256(helper)}
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


def _main(argv: list[str]) -> int:
    for a in argv:
        n = hide_archive_symbols(Path(a))
        print(f"{a}: {n} symbols made private extern")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

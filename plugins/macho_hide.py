"""Make the symbols a static library defines *private extern* (Mach-O), so
a dylib linked against it exports none of them: what ld64's ``-hidden-l``
does, for linkers without it (zig's). Standard library only: it runs inside
the sandbox as ``python -I -S macho_hide.py ARCHIVE...`` (archives patched in
place)."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

_MH_MAGIC_64 = 0xFEEDFACF
_LC_SYMTAB = 0x2
_N_EXT, _N_PEXT, _N_TYPE, _N_SECT, _N_UNDF, _N_STAB = 0x01, 0x10, 0x0E, 0x0E, 0x00, 0xE0


def hide_object_symbols(data: bytearray, start: int = 0, end: int | None = None) -> int:
    """Mark every external symbol a 64-bit Mach-O object *defines* (in a
    section, or as a common block: undefined with a size, e.g. OpenSSL's
    ``.comm _OPENSSL_ia32cap_P``) as private extern, in place; return how
    many. Undefined references are untouched."""
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
                n_value = struct.unpack_from("<Q", data, at + 8)[0]
                defined = n_type & _N_TYPE == _N_SECT or (n_type & _N_TYPE == _N_UNDF and n_value != 0)  # or common
                if n_type & _N_STAB == 0 and n_type & _N_EXT and defined and not n_type & _N_PEXT:
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



def main(argv: list[str]) -> int:
    for a in argv:
        n = hide_archive_symbols(Path(a))
        print(f"{a}: {n} symbols made private extern")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

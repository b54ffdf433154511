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


def _symbols(data: bytearray | bytes, start: int, end: int):  # type: ignore[no-untyped-def]
    """(offset of the nlist_64 entry, name) for each symbol of the Mach-O
    object at data[start:end]; nothing if it is not one."""
    if end - start < 32 or struct.unpack_from("<I", data, start)[0] != _MH_MAGIC_64:
        return
    ncmds = struct.unpack_from("<I", data, start + 16)[0]
    off = start + 32
    for _ in range(ncmds):
        cmd, size = struct.unpack_from("<II", data, off)
        if cmd == _LC_SYMTAB:
            symoff, nsyms, stroff = struct.unpack_from("<III", data, off + 8)
            for i in range(nsyms):
                at = start + symoff + 16 * i
                strx = struct.unpack_from("<I", data, at)[0]
                name_at = start + stroff + strx
                yield at, bytes(data[name_at:data.index(b"\0", name_at)]).decode("ascii", "replace")
        off += size


def common_blocks(path: Path) -> dict[str, tuple[int, int]]:
    """The common blocks (undefined external symbols with a size, e.g.
    ``.comm _OPENSSL_ia32cap_P,40,2``) the archive's Mach-O members declare:
    name -> (size, log2 alignment). zig's Mach-O linker exports a common
    block even when it is private extern, so they are given hidden
    definitions instead (:func:`commons_source`)."""
    data = path.read_bytes()
    found: dict[str, tuple[int, int]] = {}
    for start, end in _members(data):
        for at, name in _symbols(data, start, end):
            n_type, _, n_desc, n_value = struct.unpack_from("<BBHQ", data, at + 4)
            if n_type & _N_STAB == 0 and n_type & _N_EXT and n_type & _N_TYPE == _N_UNDF and n_value:
                size, align = found.get(name, (0, 0))
                found[name] = (max(size, n_value), max(align, (n_desc >> 8) & 0x0F))
    return found


def commons_source(commons: dict[str, tuple[int, int]]) -> str:
    """C that defines each common block with hidden visibility, under its
    exact symbol name: the linker then uses this definition, not exported."""
    lines = ["/* hermetic: the static libraries' common blocks, defined hidden (see macho_hide.py) */"]
    for i, (name, (size, align)) in enumerate(sorted(commons.items())):
        lines.append(f'__attribute__((visibility("hidden"), aligned({1 << align}))) '
                     f'unsigned char hermetic_common_{i}[{size}] __asm__("{name}");')
    lines.append("typedef int hermetic_commons_nonempty;")  # an empty C file is not valid ISO C
    return "\n".join(lines) + "\n"


def _members(data: bytes | bytearray):  # type: ignore[no-untyped-def]
    """(start, end) of each member's content in an ar archive."""
    if data[:8] != b"!<arch>\n":
        raise ValueError("not an ar archive")
    off = 8
    while off + 60 <= len(data):
        header = bytes(data[off:off + 60])
        name = header[:16].decode("ascii", "replace").strip()
        size = int(header[48:58].decode().strip())
        body = off + 60
        name_len = int(name[3:]) if name.startswith("#1/") else 0  # BSD long name before the body
        yield body + name_len, body + size
        off = body + size + (size & 1)


def hide_object_symbols(data: bytearray, start: int = 0, end: int | None = None) -> int:
    """Mark every external symbol a 64-bit Mach-O object *defines* (in a
    section, or as a common block: undefined with a size, e.g. OpenSSL's
    ``.comm _OPENSSL_ia32cap_P``) as private extern, in place; return how
    many. Undefined references are untouched."""
    hidden = 0
    for at, _ in list(_symbols(data, start, len(data) if end is None else end)):
        n_type = data[at + 4]
        n_value = struct.unpack_from("<Q", data, at + 8)[0]
        defined = n_type & _N_TYPE == _N_SECT or (n_type & _N_TYPE == _N_UNDF and n_value != 0)  # or common
        if n_type & _N_STAB == 0 and n_type & _N_EXT and defined and not n_type & _N_PEXT:
            data[at + 4] = n_type | _N_PEXT
            hidden += 1
    return hidden


def hide_archive_symbols(path: Path) -> int:
    """Hide the defined symbols of every Mach-O member of the ``ar`` archive
    at *path* (patched in place: sizes do not change, the archive's symbol
    index stays valid). Returns the number of symbols hidden."""
    data = bytearray(path.read_bytes())
    try:
        hidden = sum(hide_object_symbols(data, start, end) for start, end in list(_members(data)))
    except ValueError:
        raise ValueError(f"{path}: not an ar archive") from None
    path.write_bytes(bytes(data))
    return hidden


def main(argv: list[str]) -> int:
    """``macho_hide.py COMMONS_C ARCHIVE...``: hide the archives' symbols in
    place and write the C file defining their common blocks."""
    commons_c, archives = argv[0], argv[1:]
    commons: dict[str, tuple[int, int]] = {}
    for a in archives:
        for name, (size, align) in common_blocks(Path(a)).items():
            old = commons.get(name, (0, 0))
            commons[name] = (max(old[0], size), max(old[1], align))
        n = hide_archive_symbols(Path(a))
        print(f"{a}: {n} symbols made private extern")
    Path(commons_c).write_text(commons_source(commons))
    print(f"{commons_c}: {len(commons)} common blocks defined hidden: {', '.join(sorted(commons))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

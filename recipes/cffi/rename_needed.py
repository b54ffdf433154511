"""Rename shared-library dependencies (DT_NEEDED) of a linked ELF module
(runs inside the sandbox, as: python -I -S rename_needed.py [--path DIR]...
IN OUT OLD=NEW...; lief comes from --path). The platform plugin asks for it
where a linker's name for a library is not the one the platform's loaders
and tools use: zig links musl as ``libc.so``, musllinux wheels need
``libc.musl-<arch>.so.1`` (PEP 656, what auditwheel checks)."""

import sys


def main(argv):
    paths = []
    while argv and argv[0] == "--path":
        paths.append(argv[1])
        argv = argv[2:]
    sys.path[:0] = paths
    import lief

    lief.logging.disable()
    src, out, *pairs = argv
    binary = lief.ELF.parse(src)
    if binary is None:
        sys.exit(f"{src}: not an ELF file")
    for pair in pairs:
        old, _, new = pair.partition("=")
        lib = binary.get_library(old)
        if lib is None:
            sys.exit(f"{src} does not need {old} (needs: {[entry.name for entry in binary.libraries]})")
        lib.name = new
    binary.write(out)


if __name__ == "__main__":
    main(sys.argv[1:])

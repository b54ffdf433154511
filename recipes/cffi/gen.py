"""Emit the C source of a cffi API-mode module (runs inside the sandbox).

Usage: python -I -S gen.py [--path DIR]... MODULE CDEF SOURCE OUT. The
interpreter runs isolated and without site-packages, so cffi and pycparser
can only come from the pinned wheels given with --path."""

import sys


def main(module: str, cdef: str, source: str, out: str) -> None:
    import cffi

    ffi = cffi.FFI()
    with open(cdef) as f:
        ffi.cdef(f.read())
    with open(source) as f:
        ffi.set_source(module, f.read())
    ffi.emit_c_code(out)


if __name__ == "__main__":
    args = sys.argv[1:]
    paths = []
    while args and args[0] == "--path":
        paths.append(args[1])
        args = args[2:]
    sys.path[:0] = paths
    main(*args)

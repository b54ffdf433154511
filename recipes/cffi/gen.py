"""Emit the C source of a cffi API-mode module (runs inside the sandbox)."""

import sys

import cffi


def main(module: str, cdef: str, source: str, out: str) -> None:
    ffi = cffi.FFI()
    with open(cdef) as f:
        ffi.cdef(f.read())
    with open(source) as f:
        ffi.set_source(module, f.read())
    ffi.emit_c_code(out)


if __name__ == "__main__":
    main(*sys.argv[1:])

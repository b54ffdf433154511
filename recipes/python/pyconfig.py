"""Write CPython's ``pyconfig.h`` for the platform a C compiler targets
(runs inside the sandbox, as: python pyconfig.py OS OUT; $CC is the compiler).

CPython's ``configure`` writes pyconfig.h by asking the compiler hundreds of
questions, and refuses to cross-compile for most targets. An extension module
needs few of the answers: the ones CPython's public headers (``Include/*.h``)
read. This script asks the *target* compiler exactly those questions and
nothing is assumed:

* type sizes and byte order from the compiler's own predefined macros
  (``__SIZEOF_LONG__`` ...) and, for libc types (``pid_t``, ``pthread_t``,
  ...), from compile-time assertions checked by the compiler (compiled to an
  object: nothing is linked or run, so it works for any target). All of those are
  first checked in one compile against the usual values; only if the
  compiler rejects that, type by type;
* which headers exist, with ``__has_include``;
* which functions the libc declares, by compiling a reference to them.

Beside the answers it sets what ``configure`` sets by policy, not by probing:
the feature-test macros for the OS and ``WITH_PYMALLOC``/``WITH_DOC_STRINGS``
(CPython's defaults). The file says which is which.
"""

import os
import subprocess
import sys
import tempfile

SIZES = [  # configure's name, C type, headers it needs
    ("SIZEOF__BOOL", "_Bool", []),
    ("SIZEOF_PID_T", "pid_t", ["sys/types.h"]),
    ("SIZEOF_OFF_T", "off_t", ["sys/types.h"]),
    ("SIZEOF_TIME_T", "time_t", ["time.h"]),
    ("SIZEOF_FPOS_T", "fpos_t", ["stdio.h"]),
    ("SIZEOF_UINTPTR_T", "uintptr_t", ["stdint.h"]),
    ("SIZEOF_PTHREAD_T", "pthread_t", ["pthread.h"]),
    ("SIZEOF_PTHREAD_KEY_T", "pthread_key_t", ["pthread.h"]),
]
BUILTIN_SIZES = [  # configure's name, the compiler's predefined macro
    ("SIZEOF_SHORT", "__SIZEOF_SHORT__"), ("SIZEOF_INT", "__SIZEOF_INT__"), ("SIZEOF_LONG", "__SIZEOF_LONG__"),
    ("SIZEOF_LONG_LONG", "__SIZEOF_LONG_LONG__"), ("SIZEOF_FLOAT", "__SIZEOF_FLOAT__"),
    ("SIZEOF_DOUBLE", "__SIZEOF_DOUBLE__"), ("SIZEOF_LONG_DOUBLE", "__SIZEOF_LONG_DOUBLE__"),
    ("SIZEOF_VOID_P", "__SIZEOF_POINTER__"), ("SIZEOF_SIZE_T", "__SIZEOF_SIZE_T__"),
    ("SIZEOF_WCHAR_T", "__SIZEOF_WCHAR_T__"),
]
ALIGNS = [("ALIGNOF_LONG", "long", []), ("ALIGNOF_SIZE_T", "size_t", ["stddef.h"]),
          ("ALIGNOF_MAX_ALIGN_T", "max_align_t", ["stddef.h"])]
HEADERS = ["wchar.h", "unistd.h", "sys/types.h", "sys/stat.h", "stdint.h", "langinfo.h", "pthread.h",
           "sys/statvfs.h"]
FUNCTIONS = [("HAVE_FORK", "fork", ["unistd.h"])]
TYPES = [("HAVE_SSIZE_T", "ssize_t", ["sys/types.h"])]

# what configure defines by policy, per OS (configure.ac: AC_USE_SYSTEM_EXTENSIONS
# everywhere; the X/Open and POSIX levels except on Darwin; large files on Linux)
POLICY = {
    "common": [("_ALL_SOURCE", "1"), ("_GNU_SOURCE", "1"), ("_POSIX_PTHREAD_SEMANTICS", "1"),
               ("_TANDEM_SOURCE", "1"), ("__EXTENSIONS__", "1"), ("_DARWIN_C_SOURCE", "1"),
               ("_NETBSD_SOURCE", "1"), ("__BSD_VISIBLE", "1"), ("_REENTRANT", "1"),
               ("WITH_PYMALLOC", "1"), ("WITH_DOC_STRINGS", "1")],
    "linux": [("_XOPEN_SOURCE", "700"), ("_XOPEN_SOURCE_EXTENDED", "1"), ("_POSIX_C_SOURCE", "200809L"),
              ("_FILE_OFFSET_BITS", "64"), ("_LARGEFILE_SOURCE", "1")],
    "darwin": [],
}


class Probe:
    def __init__(self, cc):
        self.cc = cc
        self.dir = tempfile.mkdtemp(prefix="pyconfig.")
        self.n = 0

    def _file(self, text):
        self.n += 1
        path = os.path.join(self.dir, f"probe{self.n}.c")
        with open(path, "w") as f:
            f.write(text)
        return path

    def compiles(self, text):
        # -c, not -fsyntax-only: zig's cc reports a failure for every -fsyntax-only run
        src = self._file(text)
        proc = subprocess.run([self.cc, "-c", "-w", src, "-o", src[:-2] + ".o"], capture_output=True)
        return proc.returncode == 0

    def preprocess(self, text):
        proc = subprocess.run([self.cc, "-E", "-P", "-dM", self._file(text)], capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            sys.exit(f"the compiler cannot preprocess a probe:\n{proc.stderr}")
        out = {}
        for line in proc.stdout.splitlines():
            parts = line.split(None, 2)
            if len(parts) == 3 and parts[0] == "#define":
                out[parts[1]] = parts[2]
        return out

    def value(self, expr, headers, candidates=(1, 2, 4, 8, 12, 16, 32)):
        inc = "".join(f"#include <{h}>\n" for h in headers)
        for n in candidates:
            if self.compiles(f"{inc}_Static_assert(({expr}) == {n}, \"\");\n"):
                return n
        return None


def main(os_name, out):
    probe = Probe(os.environ.get("CC", "cc"))
    if not probe.compiles("int hermetic_probe;\n"):  # else every "does not compile" answer would be a lie
        sys.exit("the compiler cannot compile a one-line probe; no pyconfig.h can be measured with it")
    builtins = probe.preprocess("\n")
    has = probe.preprocess("".join(f"#if __has_include(<{h}>)\n#define HAS_{i} 1\n#endif\n"
                                   for i, h in enumerate(HEADERS)))
    headers = {h for i, h in enumerate(HEADERS) if f"HAS_{i}" in has}
    measured = []
    for name, macro in BUILTIN_SIZES:
        if macro not in builtins:
            sys.exit(f"the compiler does not predefine {macro}")
        measured.append((name, builtins[macro]))
    # every size and alignment, first as one compile that checks a guess for all of them (the
    # usual values for this data model); only when the compiler rejects it, one type at a time
    questions = [(name, f"sizeof({ctype})", need) for name, ctype, need in SIZES
                 if set(need) <= headers | {"stdio.h", "time.h", "stddef.h"}]
    questions += [(name, f"_Alignof({ctype})", need) for name, ctype, need in ALIGNS]
    ptr = int(builtins["__SIZEOF_POINTER__"])
    guess = {"SIZEOF__BOOL": 1, "SIZEOF_PID_T": 4, "SIZEOF_OFF_T": 8, "SIZEOF_TIME_T": 8, "SIZEOF_FPOS_T": 16,
             "SIZEOF_UINTPTR_T": ptr, "SIZEOF_PTHREAD_T": ptr, "SIZEOF_PTHREAD_KEY_T": 4,
             "ALIGNOF_LONG": int(builtins["__SIZEOF_LONG__"]), "ALIGNOF_SIZE_T": ptr, "ALIGNOF_MAX_ALIGN_T": 16}
    includes = sorted({h for _, _, need in questions for h in need})
    text = "".join(f"#include <{h}>\n" for h in includes)
    text += "".join(f'_Static_assert(({expr}) == {guess[name]}, "{name}");\n' for name, expr, _ in questions)
    if probe.compiles(text):
        measured += [(name, str(guess[name])) for name, _, _ in questions]
    else:
        for name, expr, need in questions:
            n = probe.value(expr, need)
            if n is not None:
                measured.append((name, str(n)))
    if builtins.get("__BYTE_ORDER__") == builtins.get("__ORDER_BIG_ENDIAN__"):
        measured.append(("WORDS_BIGENDIAN", "1"))
    for h in sorted(headers):
        measured.append(("HAVE_" + h.upper().replace("/", "_").replace(".", "_"), "1"))
    for name, fn, need in FUNCTIONS:
        inc = "".join(f"#include <{h}>\n" for h in need if h in headers)
        if inc and probe.compiles(f"{inc}void *p = (void *){fn};\n"):
            measured.append((name, "1"))
    for name, ctype, need in TYPES:
        inc = "".join(f"#include <{h}>\n" for h in need if h in headers)
        if probe.compiles(f"{inc}{ctype} x;\n"):
            measured.append((name, "1"))
    policy = POLICY["common"] + POLICY.get(os_name, [])
    lines = ["/* pyconfig.h for extension modules, written by hermetic's pyconfig.py.",
             "   Measured: asked of the target compiler. Policy: what CPython's configure",
             "   sets for this OS without asking. */", "#ifndef Py_PYCONFIG_H", "#define Py_PYCONFIG_H", "",
             "/* measured */"]
    lines += [f"#define {k} {v}" for k, v in sorted(measured)]
    lines += ["", "/* policy */"]
    lines += [f"#ifndef {k}\n# define {k} {v}\n#endif" for k, v in policy]
    lines += ["", "#endif /* Py_PYCONFIG_H */", ""]
    with open(out, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:])

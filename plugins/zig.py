"""A hermetic C toolchain from PyPI for platforms other than the host: Zig's
bundled clang, libcs and linkers (``ziglang``, pinned by sha256), driven
through wrappers that pass ``-target`` and map the action's directories away.

The wheel is a :class:`~hermetic.model.ToolchainPackage`: the engine fetches
it like any pinned input (``pip:`` through pip's configured index, a
distdir, the local or remote store), unpacks it with the safe extractor in
an action (``//.toolchains:ziglang-<version>``, visible to ``aquery``), and
shows the tree read-only to the actions that compile with it. Its version
and digest are the toolchain's identity, so they are in every action key it
takes part in; where a machine keeps the tree is in none.
"""

from __future__ import annotations

import platform as pyplatform

from hermetic.errors import ToolchainError
from hermetic.conventions import CcConventions
from hermetic.hookspecs import hookimpl
from hermetic.model import Platform, Toolchain, ToolchainCache, ToolchainPackage

VERSION = "0.17.1"
# ziglang 0.17.1 for x86_64 Linux hosts (manylinux_2_12 / musllinux_1_1)
WHEELS = {"x86_64": "ea6cc5d87b033cf0aedfbc8f9549a908cae6c50ac31f1698188fa48a74524b54"}
FILES = {"x86_64": ("ziglang-0.17.1-py3-none-manylinux_2_12_x86_64.manylinux2010_x86_64.musllinux_1_1_x86_64.whl",
                    101083562)}

#: the musl release ziglang 0.17.1 bundles (lib/libc/musl)
MUSL = "1.2"

_TARGETS = {
    ("linux", "x86_64", "manylinux2014"): "x86_64-linux-gnu.2.17",
    ("linux", "aarch64", "glibc"): "aarch64-linux-gnu.2.17",
    ("linux", "aarch64", "manylinux2014"): "aarch64-linux-gnu.2.17",
    ("linux", "x86_64", "musl"): "x86_64-linux-musl",
    ("linux", "aarch64", "musl"): "aarch64-linux-musl",
    ("darwin", "x86_64", ""): "x86_64-macos.11.0",
    ("darwin", "aarch64", ""): "aarch64-macos.11.0",
    ("windows", "x86_64", ""): "x86_64-windows-gnu",
}


#: OpenSSL's ./Configure target and an autoconf --host triplet for each zig target
_OPENSSL = {"x86_64-linux-gnu.2.17": "linux-x86_64", "aarch64-linux-gnu.2.17": "linux-aarch64",
            "x86_64-linux-musl": "linux-x86_64", "aarch64-linux-musl": "linux-aarch64",
            "x86_64-macos.11.0": "darwin64-x86_64-cc", "aarch64-macos.11.0": "darwin64-arm64-cc",
            "x86_64-windows-gnu": "mingw64"}
_GNU_HOST = {"x86_64-linux-gnu.2.17": "x86_64-linux-gnu", "aarch64-linux-gnu.2.17": "aarch64-linux-gnu",
             "x86_64-linux-musl": "x86_64-linux-musl", "aarch64-linux-musl": "aarch64-linux-musl",
             "x86_64-macos.11.0": "x86_64-apple-darwin", "aarch64-macos.11.0": "aarch64-apple-darwin",
             "x86_64-windows-gnu": "x86_64-w64-mingw32"}


def zig_target(target: Platform) -> str | None:
    return _TARGETS.get((target.os, target.arch, target.libc))


def package() -> ToolchainPackage:
    """The pinned ziglang wheel for this host's CPU: fetched (through pip's
    configured index, or a --distdir) and unpacked by actions, only when an
    action that compiles with it has to run."""
    arch = pyplatform.machine().lower()
    sha = WHEELS.get(arch)
    if sha is None:
        raise ToolchainError(f"no pinned ziglang wheel for a {arch} host", reason="toolchain",
                             hint="add its file name and sha256 to plugins/zig.py WHEELS")
    filename, size = FILES[arch]
    return ToolchainPackage("ziglang", VERSION, filename, sha, urls=(f"pip:ziglang=={VERSION}/{filename}",),
                            size=size)


# The cc wrapper: -target; the action's directories (also as the DWARF
# compilation directory) and zig's lib directory mapped to relative names
# (zig cc emits debug info by default); and at link time --strip-debug: zig
# compiles its own C runtime (crt1, libc stubs) with DWARF naming its lib
# directory, which no prefix map given here reaches. For Windows (COFF,
# CodeView) two more: CodeView records the whole compiler command line
# (absolute paths, which prefix maps do not reach) and the object's name,
# which for zig cc is a random name in its cache (found by `hermetic verify
# //wheel:all`: every object differed from one build to the next).
_CC = """#!/bin/sh
# hermetic: zig cc for {target}
link=1
obj=
prev=
for a in "$@"; do
  case "$a" in -c|-S|-E|-M|-MM) link=0 ;; esac
  if [ "$prev" = "-o" ]; then obj="${{a##*/}}"; fi
  prev="$a"
done
if [ "$link" = 1 ]; then set -- "$@" -Wl,--strip-debug; fi
{seed}{codeview}zig="$HERMETIC_TOOLCHAIN_CC/ziglang/zig"
exec "$zig" cc -target {target} ${{IN:+"-ffile-prefix-map=$IN=."}} ${{WORK:+"-ffile-prefix-map=$WORK=."}} \\
  ${{OUT:+"-ffile-prefix-map=$OUT=."}} "-ffile-prefix-map=$HERMETIC_TOOLCHAIN_CC/ziglang/lib=zig-lib" "$@"
"""

# Linking needs the target's libc stubs, compiler-rt and (musl) libc, which
# zig compiles into its cache on first use: 20-80 s in every action, since
# each starts with an empty $HOME. The engine shows a cache made once per
# machine (the ToolchainCache below) at $HERMETIC_TOOLCHAIN_CC_CACHE; a link
# copies it into a private, writable cache (zig rewrites its manifests in
# place) the first time in the action. Concurrent links in one action race
# to rename their copy into place; the losers drop theirs. Compiles keep
# zig's default cache: they need none of it, and pay for no copy.
_SEED = """if [ "$link" = 1 ] && [ -n "$HERMETIC_TOOLCHAIN_CC_CACHE" ]; then
  ZIG_GLOBAL_CACHE_DIR="$HOME/.cache/zig-link"
  if [ ! -d "$ZIG_GLOBAL_CACHE_DIR" ]; then
    mkdir -p "$HOME/.cache"
    t="$ZIG_GLOBAL_CACHE_DIR.$$"
    cp -R "$HERMETIC_TOOLCHAIN_CC_CACHE" "$t" && chmod -R u+w "$t"
    mv -T "$t" "$ZIG_GLOBAL_CACHE_DIR" 2>/dev/null || rm -rf "$t"
  fi
  export ZIG_GLOBAL_CACHE_DIR
fi
"""

# What the cache is filled with: an executable and a shared library linked
# in the modes rules use (zig builds compiler-rt per optimization mode).
_FILL = """export ZIG_GLOBAL_CACHE_DIR="$OUT/cache"
printf 'int main(void) { return 0; }\\n' > main.c
printf 'int f(void) { return 0; }\\n' > lib.c
for opt in -O0 -O2; do
  cc $opt main.c -o main
  cc $opt -shared -fPIC lib.c -o lib.so
done
rm -rf "$ZIG_GLOBAL_CACHE_DIR/tmp"
"""

_CODEVIEW = """if [ "$link" = 0 ]; then set -- "$@" -gno-codeview-command-line ${{obj:+-Xclang "-object-file-name=$obj"}}; fi
"""


def _wrappers(target: str) -> dict[str, str]:
    zig = '"$HERMETIC_TOOLCHAIN_CC/ziglang/zig"'  # wherever the sandbox shows the package
    wrappers = {
        "cc": _CC.format(target=target, codeview=_CODEVIEW.format() if "windows" in target else "", seed=_SEED),
        "ar": f'#!/bin/sh\n# hermetic: zig ar (deterministic by default)\nexec {zig} ar "$@"\n',
        "ranlib": f'#!/bin/sh\n# hermetic: zig ranlib\nexec {zig} ranlib "$@"\n',
    }
    if "windows" in target:  # import libraries from .def files (llvm-dlltool)
        wrappers["dlltool"] = f'#!/bin/sh\n# hermetic: zig dlltool\nexec {zig} dlltool "$@"\n'
    return wrappers


@hookimpl
def hermetic_toolchain(kind: str, target: Platform, host: Platform) -> Toolchain | None:
    if kind != "cc" or target == host or host.os != "linux":
        return None  # the host's own compiler serves the host (plugins/linux.py)
    triple = zig_target(target)
    if triple is None:
        return None
    pkg = package()
    wrappers = _wrappers(triple)
    tools = {name: "ziglang/zig" for name in wrappers}  # relative to root
    identity = {"ziglang": VERSION, "sha256:wheel": pkg.sha256, "target": triple}
    info = CcConventions(triple=triple, family="zig", openssl_target=_OPENSSL[triple], gnu_host=_GNU_HOST[triple],
                         musl=MUSL if target.libc == "musl" else "",  # the musl zig links: musllinux_<MUSL>
                         wrapper_names={name: name for name in wrappers})
    return Toolchain("cc", tools, identity, package=pkg, info=info, hermetic=True, wrappers=wrappers,
                     cache=ToolchainCache(triple, _FILL))

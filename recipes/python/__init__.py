"""``python_headers``: CPython's C API for the platform being built for, from
pinned CPython source: ``Include/`` plus a ``pyconfig.h`` for that platform
(probed from its compiler, or CPython's own for Windows, as its platform
plugin says), and on Windows an import library for ``python3.dll``.

Extension modules built against it use the stable ABI (``Py_LIMITED_API``),
so one build serves every CPython from ``limited_api`` on: the wheel is
tagged ``cp3X-abi3``. The host's Python headers are never used, which is
what lets one Linux machine build for macOS and Windows."""

from __future__ import annotations

import re
from pathlib import Path


from hermetic.conventions import ExtensionConventions
from hermetic.hookspecs import hookimpl
from hermetic.model import Artifact, Output, Provider
from hermetic.rules import DefaultInfo, RuleContext, RuleRegistry, attr
from hermetic.providers import PyHeadersInfo, SourceInfo

HERE = Path(__file__).parent


def _python_headers(ctx: RuleContext) -> list[Provider]:
    a = ctx.attr
    if not re.fullmatch(r"3\.\d+", a.limited_api):
        raise ctx.error(f'limited_api "{a.limited_api}" is not a Python 3 version like "3.9"')
    conv = ctx.toolchain("pyext").conventions(ExtensionConventions)
    python = ctx.exec_toolchain("python")
    src = a.src[SourceInfo].tree
    include = ctx.declare_output("include", tree=True)
    copy = [f'cp -R "$IN/{src.path}/Include/." "$OUT/include/"', 'rm -rf "$OUT/include/internal"']
    how = conv.pyconfig
    toolchains = [python]
    if how == "generate":  # ask the target's compiler
        cc = ctx.toolchain("cc")
        toolchains.append(cc)
        make = (f'CC={cc.tool("cc")} "{python.tool("python")}" -I -S "$IN/{ctx.tool_file(HERE / "pyconfig.py").path}" '
                f'{conv.os} "$OUT/include/pyconfig.h"')
        inputs = [src, ctx.tool_file(HERE / "pyconfig.py")]
    else:  # CPython ships it, e.g. PC/pyconfig.h.in for Windows
        make = f'cp "$IN/{src.path}/{how}" "$OUT/include/pyconfig.h"'
        inputs = [src]
    script = "\n".join(["set -eu", 'mkdir -p "$OUT/include"', *copy, make])
    ctx.actions.run(["/bin/sh", "-c", script], inputs=inputs, outputs=[include], mnemonic="PyHeaders",
                    toolchains=toolchains)
    libs: list[Artifact] = []
    if conv.python_dll:  # Windows: an import library for the stable-ABI DLL
        cc = ctx.toolchain("cc")
        dll = conv.python_dll
        stem = dll.rsplit(".", 1)[0]
        deffile = ctx.declare_output(f"{stem}.def")
        ctx.actions.run([python.tool("python"), "-I", "-S", ctx.tool_file(HERE / "mkdef.py"), dll,
                         f"{src.path}/PC/python3dll.c", Output(deffile.name)], inputs=[src], outputs=[deffile],
                        mnemonic="PyDef", toolchains=[python])
        implib = ctx.declare_output(f"lib{stem}.a")
        ctx.actions.run([cc.tool("dlltool"), "-m", conv.dlltool_machine, "-D", dll, "-d", deffile,
                         "-l", Output(implib.name)], outputs=[implib], mnemonic="PyImportLib", toolchains=[cc])
        libs.append(implib)
    return [PyHeadersInfo(include, a.version, a.limited_api, tuple(libs)), DefaultInfo((include, *libs))]


@hookimpl
def hermetic_register_rules(registry: RuleRegistry) -> None:
    from recipes.python import interpreter

    interpreter.register(registry)
    registry.rule("python_headers", attrs={
        "src": attr.label(mandatory=True, providers=[SourceInfo], doc="an archive target with CPython's source"),
        "version": attr.string(mandatory=True, doc="the CPython version the source is"),
        "limited_api": attr.string(default="3.9", doc="the oldest CPython the extensions support (abi3 from it)"),
    }, doc="CPython's C API headers for the target platform, from pinned source.")(_python_headers)

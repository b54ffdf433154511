"""cffi extension modules in API mode: generate the C source with cffi,
compile it, link it against static libraries with their symbols hidden (only
``PyInit_*`` is exported), and check the result."""

from __future__ import annotations

from pathlib import Path

import attrs

from hermetic.hookspecs import hookimpl
from hermetic.model import Artifact, Output, Provider
from hermetic.rules import DefaultInfo, RuleContext, RuleRegistry, attr
from recipes.fetch import PyWheelInfo
from recipes.openssl import CcInfo

HERE = Path(__file__).parent


@attrs.frozen
class PyExtensionInfo(Provider):
    """A compiled extension module: dotted name, the shared object, its check."""

    module: str
    shared_object: Artifact
    check: Artifact
    runtime_wheels: tuple[Artifact, ...] = ()
    library_version: str = ""


def _cffi_extension(ctx: RuleContext) -> list[Provider]:
    cc = ctx.toolchain("cc")
    python = ctx.toolchain("python")
    module = ctx.attr.module
    leaf = module.rsplit(".", 1)[-1]
    if len(ctx.attr.cdef) != 1 or len(ctx.attr.source) != 1:
        raise ctx.error("cdef and source each name exactly one file")
    wheels = [t[PyWheelInfo] for t in ctx.attr.build_requires]
    libs = [t[CcInfo] for t in ctx.attr.deps]

    csrc = ctx.declare_output(f"{leaf}.c")
    paths: list[object] = []
    for w in wheels:
        paths += ["--path", w.unpacked]
    # -I -S: no PYTHONPATH, user or system site-packages; only the pinned wheels
    ctx.actions.run(
        [python.tool("python"), "-I", "-S", ctx.tool_file(HERE / "gen.py"), *paths, module, ctx.attr.cdef[0],
         ctx.attr.source[0], Output(csrc.name)],
        inputs=[w.unpacked for w in wheels], outputs=[csrc], mnemonic="CffiGenerate", toolchains=[python])

    obj = ctx.declare_output(f"{leaf}.o")
    includes = [i for lib in libs for i in lib.includes.to_list()]
    argv: list[object] = [cc.tool("cc"), "-c", "-fPIC", "-O2", "-fvisibility=hidden", "-fno-ident",
                          "-I", python.info["include"]]
    for inc in includes:
        argv += ["-I", inc]
    argv += [*ctx.attr.copts, csrc, "-o", Output(obj.name)]
    ctx.actions.run(argv, inputs=includes, outputs=[obj], mnemonic="CcCompile",  # type: ignore[arg-type]
                    toolchains=[cc, python])

    exports = ctx.declare_output("exports.map")
    ctx.actions.write(exports, f"{{\n  global: PyInit_{leaf};\n  local: *;\n}};\n")
    so = ctx.declare_output(f"{leaf}{python.info['ext_suffix']}")
    archives = [a for lib in libs for a in lib.archives.to_list()]
    link: list[object] = [cc.tool("cc"), "-shared", "-o", Output(so.name), obj,
                          *archives,
                          "-Wl,--exclude-libs,ALL", "-Xlinker", "--version-script", "-Xlinker", exports, "-Wl,-z,relro,-z,now",
                          "-Wl,--build-id=sha1", "-pthread", *ctx.attr.linkopts]
    ctx.actions.run(link, inputs=archives, outputs=[so], mnemonic="CcLink", toolchains=[cc])  # type: ignore[arg-type]

    check = ctx.declare_output("symbols.txt")
    forbidden = "|".join(ctx.attr.forbid_needed)
    script = "\n".join([
        "set -eu",
        'so="$1"; out="$2"',
        'nm -D --defined-only "$so" | awk \'{print $NF}\' | sort > exported',
        f'if grep -v -x "PyInit_{leaf}" exported >/dev/null; then',
        '  echo "exported symbols other than PyInit_:"; grep -v -x "PyInit_' + leaf + '" exported | head -20; exit 1',
        "fi",
        "readelf -d \"$so\" | sed -n 's/.*(NEEDED).*\\[\\(.*\\)\\]/\\1/p' | sort > needed",
        (f'if grep -E "{forbidden}" needed; then echo "links dynamically against the above"; exit 1; fi'
         if forbidden else ":"),
        '{ echo "exported:"; sed "s/^/  /" exported; echo "needed:"; sed "s/^/  /" needed; } > "$out"',
    ])
    ctx.actions.run(["/bin/sh", "-c", script, "check", so, Output(check.name)], outputs=[check],
                    mnemonic="CheckSymbols", toolchains=[cc])
    version = next((lib.version for lib in libs if lib.version), "")
    return [PyExtensionInfo(module, so, check, tuple(w.wheel for w in wheels if w.distribution == "cffi"),
                            version), DefaultInfo((so, check))]


@hookimpl
def hermetic_register_rules(registry: RuleRegistry) -> None:
    registry.rule("cffi_extension", attrs={
        "module": attr.string(mandatory=True, doc='dotted module name, e.g. "pkg._binding"'),
        "cdef": attr.files(mandatory=True, doc="the cdef: C declarations Python may use"),
        "source": attr.files(mandatory=True, doc="the C source cffi compiles with the module"),
        "deps": attr.label_list(providers=[CcInfo], doc="C libraries to link statically"),
        "build_requires": attr.label_list(providers=[PyWheelInfo], doc="cffi and pycparser wheels"),
        "copts": attr.string_list(),
        "linkopts": attr.string_list(),
        "forbid_needed": attr.string_list(default=["libssl", "libcrypto"],
                                          doc="shared libraries the module must not need"),
    }, doc="A cffi (API mode) extension module, statically linked.")(_cffi_extension)

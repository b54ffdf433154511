"""cffi extension modules in API mode: generate the C source with cffi,
compile it, link it against static libraries with their symbols hidden (only
``PyInit_*`` is exported), and check the result."""

from __future__ import annotations

from pathlib import Path


from hermetic.conventions import CcConventions, Exports, ExtensionConventions
from hermetic.hookspecs import hookimpl
from hermetic.model import Artifact, Output, Provider
from hermetic.rules import DefaultInfo, RuleContext, RuleRegistry, attr
from hermetic.providers import CcInfo, PyExtensionInfo, PyHeadersInfo, PyWheelInfo

HERE = Path(__file__).parent


def _cffi_extension(ctx: RuleContext) -> list[Provider]:
    cc = ctx.toolchain("cc")
    conv = ctx.toolchain("pyext").conventions(ExtensionConventions)  # the platform plugin's, for modules
    python = ctx.exec_toolchain("python")  # runs cffi and the checks, on the host
    module = ctx.attr.module
    leaf = module.rsplit(".", 1)[-1]
    if len(ctx.attr.cdef) != 1 or len(ctx.attr.source) != 1:
        raise ctx.error("cdef and source each name exactly one file")
    wheels = [t[PyWheelInfo] for t in ctx.attr.build_requires]
    libs = [t[CcInfo] for t in ctx.attr.deps]
    headers = ctx.attr.python_headers[PyHeadersInfo]

    csrc = ctx.declare_output(f"{leaf}.c", shared=True)  # cffi's C is the same for every platform
    paths: list[object] = []
    for w in wheels:
        paths += ["--path", w.unpacked]
    # -I -S: no PYTHONPATH, user or system site-packages; only the pinned wheels
    ctx.actions.run(
        [python.tool("python"), "-I", "-S", ctx.tool_file(HERE / "gen.py"), *paths, module, ctx.attr.cdef[0],
         ctx.attr.source[0], Output(csrc.name)],
        inputs=[w.unpacked for w in wheels], outputs=[csrc], mnemonic="CffiGenerate", toolchains=[python])

    obj = ctx.declare_output(f"{leaf}.o")
    includes = [headers.include, *(i for lib in libs for i in lib.includes.to_list())]
    argv: list[object] = [cc.tool("cc"), "-c", *conv.cflags, "-O2", "-fvisibility=hidden",
                          "-fno-ident", f"-DPy_LIMITED_API={headers.hex_version}"]
    for inc in includes:
        argv += ["-I", inc]
    argv += [*ctx.attr.copts, csrc, "-o", Output(obj.name)]
    ctx.actions.run(argv, inputs=includes, outputs=[obj], mnemonic="CcCompile",  # type: ignore[arg-type]
                    toolchains=[cc])

    archives = [a for lib in libs for a in lib.archives.to_list()]
    exports = conv.exports
    link_args: list[object] = []  # appended to the link command
    link_inputs: list[Artifact] = []  # inputs named only in `tail`
    tail: list[str] = []  # shell words appended after them (paths under $IN)
    if exports == Exports.VERSION_SCRIPT:  # ELF: only PyInit_ global, everything else local
        vscript = ctx.declare_output("exports.map")
        ctx.actions.write(vscript, f"{{\n  global: PyInit_{leaf};\n  local: *;\n}};\n")
        link_inputs.append(vscript)
        tail.append(f'-Wl,--version-script="$IN/{vscript.path}"')
    elif exports == Exports.DEF_FILE:  # PE: the module definition names the one export
        deffile = ctx.declare_output(f"{leaf}.def")
        ctx.actions.write(deffile, f"EXPORTS\n    PyInit_{leaf}\n")
        link_args.append(deffile)
    elif exports == Exports.PRIVATE_EXTERN:  # Mach-O: the libraries' symbols become private extern first
        names = [f"hidden/{i}-{a.name}" for i, a in enumerate(archives)]
        hidden = [ctx.declare_output(n) for n in names]
        commons_c = ctx.declare_output("hidden/commons.c")
        # (cat, not cp: a copy of a read-only input stays read-only, and only root could patch it)
        copies = "".join(f'cat "$IN/{a.path}" > "$OUT/{n}"\n' for a, n in zip(archives, names))
        ctx.actions.run(["/bin/sh", "-c", f'set -eu\nmkdir -p "$OUT/hidden"\n{copies}exec "$@"', "hide",
                         python.tool("python"), "-I", "-S", ctx.tool_file(Path(conv.hide_helper)),
                         Output("hidden/commons.c"),
                         *(Output(n) for n in names)],
                        inputs=archives, outputs=[*hidden, commons_c], mnemonic="HideArchiveSymbols",
                        toolchains=[python])
        # their common blocks, which the linker would export even so, get hidden definitions
        commons_o = ctx.declare_output("hidden/commons.o")
        ctx.actions.run([cc.tool("cc"), "-c", "-O2", commons_c, "-o", Output("hidden/commons.o")],
                        outputs=[commons_o], mnemonic="CcCompileCommons", toolchains=[cc])
        archives = hidden
        link_args.append(commons_o)
    else:
        raise ctx.error(f"the {conv.os} plugin asks for exports = {exports!r}, which this rule does not know")
    so_name = f"{leaf}{conv.ext_suffix}"
    renames = conv.needed_renames
    so_rel = f"linked/{so_name}" if renames else so_name
    so = ctx.declare_output(so_rel)
    # the libraries' own link dependencies (OpenSSL's EX_LIBS) come as response files
    rsp = [lib.link_flags for lib in libs if lib.link_flags is not None]
    script = " ".join(['exec "$@"', *tail, *(f'@"$IN/{r.path}"' for r in rsp)])
    flags = [f.replace("{name}", so_name) for f in conv.link_flags]  # the plugin's, for this module
    link: list[object] = ["/bin/sh", "-c", script, "link", cc.tool("cc"), *flags, "-o",
                          Output(so_rel), obj, *archives, *headers.libs, *link_args, *ctx.attr.linkopts]
    ctx.actions.run(link, inputs=[*archives, *headers.libs, *rsp, *link_inputs], outputs=[so],  # type: ignore[arg-type]
                    mnemonic="CcLink", toolchains=[cc])
    lief_paths: list[object] = []
    for t in ctx.attr.inspect_requires:
        lief_paths += ["--path", t[PyWheelInfo].unpacked]
    lief_sites = [t[PyWheelInfo].unpacked for t in ctx.attr.inspect_requires]
    if renames:  # the platform's names for the libraries the linker named otherwise
        linked, so = so, ctx.declare_output(so_name)
        ctx.actions.run([python.tool("python"), "-I", "-S", ctx.tool_file(HERE / "rename_needed.py"), *lief_paths,
                         linked, Output(so.name), *(f"{k}={v}" for k, v in sorted(renames.items()))],
                        inputs=lief_sites, outputs=[so], mnemonic="RenameNeeded", toolchains=[python])

    check = ctx.declare_output("binary.json")
    forbid: list[str] = []
    for pattern in ctx.attr.forbid_needed:
        forbid += ["--forbid-needed", pattern]
    ctx.actions.run([python.tool("python"), "-I", "-S", ctx.tool_file(HERE / "inspect_binary.py"), *lief_paths,
                     "--allow", f"PyInit_{leaf}", *forbid, so, Output(check.name)],
                    inputs=lief_sites, outputs=[check],
                    mnemonic="InspectBinary", toolchains=[python])
    version = next((lib.version for lib in libs if lib.version), "")
    return [PyExtensionInfo(module, so, check, tuple(w.wheel for w in wheels if w.distribution == "cffi"),
                            version, headers.python_tag, "abi3", conv.wheel_platform,
                            cc.conventions(CcConventions).musl),
            DefaultInfo((so, check))]


@hookimpl
def hermetic_register_rules(registry: RuleRegistry) -> None:
    registry.rule("cffi_extension", attrs={
        "module": attr.string(mandatory=True, doc='dotted module name, e.g. "pkg._binding"'),
        "cdef": attr.files(mandatory=True, doc="the cdef: C declarations Python may use"),
        "source": attr.files(mandatory=True, doc="the C source cffi compiles with the module"),
        "deps": attr.label_list(providers=[CcInfo], doc="C libraries to link statically"),
        "build_requires": attr.label_list(providers=[PyWheelInfo], cfg="exec", doc="cffi and pycparser wheels"),
        "python_headers": attr.label(mandatory=True, providers=[PyHeadersInfo],
                                     doc="CPython's C API for the target platform (a python_headers target)"),
        "inspect_requires": attr.label_list(providers=[PyWheelInfo], cfg="exec", mandatory=True,
                                            doc="the lief wheel, to read and check what was linked"),
        "copts": attr.string_list(),
        "linkopts": attr.string_list(),
        "forbid_needed": attr.string_list(default=["libssl", "libcrypto"],
                                          doc="shared libraries the module must not need"),
    }, doc="A cffi (API mode) extension module, statically linked.")(_cffi_extension)

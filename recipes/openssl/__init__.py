"""OpenSSL from pinned source: configured ``no-shared``, position independent,
built out of its own (read-only) source tree into static libcrypto/libssl."""

from __future__ import annotations

import shlex


from hermetic.conventions import CcConventions
from hermetic.hookspecs import hookimpl
from hermetic.model import Provider
from hermetic.rules import DefaultInfo, DepSet, RuleContext, RuleRegistry, attr
from hermetic.providers import CcInfo, SourceInfo
from recipes.cc_env import make_env


def _openssl(ctx: RuleContext) -> list[Provider]:
    cc = ctx.toolchain("cc")
    make = ctx.exec_toolchain("make")  # make and perl run on the host whatever the target
    source = ctx.attr.src[SourceInfo]
    src = source.tree
    target = ctx.attr.target or cc.conventions(CcConventions).openssl_target
    if not target:
        raise ctx.error(f"no OpenSSL Configure target known for {ctx.platform}", hint="set target = \"...\"")
    crypto = ctx.declare_output("lib/libcrypto.a")
    ssl = ctx.declare_output("lib/libssl.a")
    include = ctx.declare_output("include", tree=True)
    link_flags = ctx.declare_output("lib/link-flags.rsp")
    pic = [] if ctx.platform.os == "windows" else ["-fPIC"]  # PE code is position independent anyway
    options = ["no-shared", "no-tests", "no-docs", *pic, *ctx.attr.options]
    configure = [
        '"$PERL"', '"$IN/%s/Configure"' % src.path, shlex.quote(target), "--prefix=/opt/hermetic-openssl",
        "--openssldir=/opt/hermetic-openssl/ssl", "--libdir=lib", *(shlex.quote(o) for o in options),
    ]
    script = "\n".join([
        "set -eu",
        "mkdir build && cd build",
        " ".join(configure),
        '"$MAKE" -j"$HERMETIC_JOBS" build_libs >make.log 2>&1 || { tail -n 60 make.log; exit 1; }',
        'mkdir -p "$OUT/lib" "$OUT/include/openssl"',
        'cp libcrypto.a libssl.a "$OUT/lib/"',
        # what Configure decided a program linking the libraries needs (-ldl -pthread, -lws2_32 ...)
        # (LIB_EX_LIBS, as make expands it: the target's own plus the configured ones)
        'printf \'hermetic-ex-libs:\\n\\t@echo $(LIB_EX_LIBS)\\n\' | "$MAKE" -s -f Makefile -f - hermetic-ex-libs '
        '> "$OUT/lib/link-flags.rsp"',
        f'cp "$IN/{src.path}/include/openssl/"*.h "$OUT/include/openssl/"',
        'cp include/openssl/*.h "$OUT/include/openssl/"',
    ])
    # CC is the toolchain's wrapper by bare name ("gcc"): OpenSSL records the
    # line in OpenSSL_version(OPENSSL_CFLAGS), so no path may be in it.
    env = make_env(cc, make, source, perl=True)
    ctx.actions.run(["/bin/sh", "-c", script], inputs=[src], outputs=[crypto, ssl, include, link_flags],
                    mnemonic="OpenSSLBuild", env=env, toolchains=[cc, make], cpus=64)
    return [CcInfo(DepSet([include]), DepSet([ssl, crypto]), ctx.attr.version, link_flags),
            DefaultInfo((crypto, ssl, include, link_flags))]


@hookimpl
def hermetic_register_rules(registry: RuleRegistry) -> None:
    registry.rule("openssl", attrs={
        "src": attr.label(mandatory=True, providers=[SourceInfo], doc="an archive target with OpenSSL's source"),
        "version": attr.string(doc="the version the source is, for providers and messages"),
        "options": attr.string_list(doc="extra ./Configure options"),
        "target": attr.string(doc="./Configure target; default: from the platform"),
    }, doc="OpenSSL built as static libraries.")(_openssl)

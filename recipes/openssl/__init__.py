"""OpenSSL from pinned source: configured ``no-shared``, position independent,
built out of its own (read-only) source tree into static libcrypto/libssl.

One rule for every release line a package may still need (1.1.1, 3.0 LTS,
3.5 LTS and later): the default options are those all of them accept, and
``no-docs``, which only 3.2 and later know (1.1.1's and 3.0's ``Configure``
reject it), is passed only when the source's own ``Configure`` lists it."""

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
    removed = set(ctx.attr.remove_options)
    defaults = ["no-shared", "no-tests", "no-docs", *pic]
    unknown = sorted(removed - set(defaults))
    if unknown:
        raise ctx.error(f"remove_options names {', '.join(unknown)}, which is not a default option",
                        hint=f"the defaults are {', '.join(defaults)}")
    words = []
    for o in [o for o in defaults if o not in removed] + list(ctx.attr.options):
        # no-docs where Configure knows it (3.2 and later), as the word "$DOCS" (empty otherwise)
        words.append("$DOCS" if o == "no-docs" and o not in ctx.attr.options else shlex.quote(o))
    configure_pl = '"$IN"/' + shlex.quote(f"{src.path}/Configure")
    configure = ['"$PERL"', configure_pl, shlex.quote(target), "--prefix=/opt/hermetic-openssl",
                 "--openssldir=/opt/hermetic-openssl/ssl", "--libdir=lib", *words]
    script = "\n".join([
        "set -eu",
        # Configure's own list of what can be disabled says whether this release knows no-docs
        f"DOCS=; if sed -n '/^my @disablables = (/,$p' {configure_pl} | grep -q '^ *\"docs\",'; then "
        "DOCS=no-docs; fi",
        "mkdir build && cd build",
        " ".join(configure),
        '"$MAKE" -j"$HERMETIC_JOBS" build_libs >make.log 2>&1 || { tail -n 60 make.log; exit 1; }',
        'mkdir -p "$OUT/lib" "$OUT/include/openssl"',
        'cp libcrypto.a libssl.a "$OUT/lib/"',
        # what Configure decided a program linking the libraries needs (-ldl -pthread, -lws2_32 ...)
        # (LIB_EX_LIBS, as make expands it: the target's own plus the configured ones)
        'printf \'hermetic-ex-libs:\\n\\t@echo $(LIB_EX_LIBS)\\n\' | "$MAKE" -s -f Makefile -f - hermetic-ex-libs '
        '> "$OUT/lib/link-flags.rsp"',
        'cp "$IN"/' + shlex.quote(f"{src.path}/include/openssl") + '/*.h "$OUT/include/openssl/"',
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
        "options": attr.string_list(doc="extra ./Configure options (after the defaults)"),
        "remove_options": attr.string_list(doc="default options not to pass: no-shared, no-tests, no-docs "
                                               "(only passed where Configure knows it), -fPIC"),
        "target": attr.string(doc="./Configure target; default: from the platform"),
    }, doc="OpenSSL built as static libraries.")(_openssl)

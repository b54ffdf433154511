"""``configure_make``: a C library from its own ``./configure && make &&
make install`` (autotools or compatible), as static archives and headers,
compiled by the platform's ``cc`` toolchain out of its read-only source tree.

Any library with a configure script fits: libsodium, zlib, libffi, ... The
result is a :class:`CcInfo` like OpenSSL's, so the cffi and PEP 517 rules
link it the same way.

Libraries it builds against (``deps``: an ``openssl`` or another
``configure_make`` target) come in as ``CPPFLAGS``/``LDFLAGS``/``LIBS`` and as
pkg-config files written for them; pkg-config sees those and nothing else
(``PKG_CONFIG_LIBDIR``), so a host library's ``.pc`` cannot leak its flags
into the build."""

from __future__ import annotations

import re
import shlex

from hermetic.conventions import CcConventions
from hermetic.hookspecs import hookimpl
from hermetic.model import Provider
from hermetic.rules import DefaultInfo, DepSet, RuleContext, RuleRegistry, attr
from hermetic.providers import CcInfo, SourceInfo
from recipes.cc_env import dep_env_script, make_env

#: what every configure_make build passes (remove_options drops one: zlib's configure knows none of them)
DEFAULT_OPTIONS = ("--disable-shared", "--enable-static", "--with-pic")

def _configure_make(ctx: RuleContext) -> list[Provider]:
    cc = ctx.toolchain("cc")
    make = ctx.exec_toolchain("make")
    source = ctx.attr.src[SourceInfo]
    src = source.tree
    name = ctx.attr.library or ctx.label.name
    if not ctx.attr.static_libs:
        raise ctx.error("list the static archives the build installs, e.g. static_libs = [\"libsodium.a\"]")
    for lib in ctx.attr.static_libs:
        if not re.fullmatch(r"[\w.+-]+\.(a|lib)", lib):
            raise ctx.error(f'static_libs: "{lib}" is not an archive file name (lib<name>.a)')
    archives = [ctx.declare_output(f"lib/{lib}") for lib in ctx.attr.static_libs]
    include = ctx.declare_output("include", tree=True)
    prefix = f"/opt/hermetic/{name}"  # recorded in .pc/.la files only: fixed, never a host path
    options = [*DEFAULT_OPTIONS, *ctx.attr.configure_options]
    if ctx.platform != ctx.host and "--host" not in ctx.attr.remove_options:
        triplet = cc.conventions(CcConventions).gnu_host
        if not triplet:
            raise ctx.error(f"no configure --host triplet known for {ctx.platform}")
        options.append(f"--host={triplet}")
    unknown = [o for o in ctx.attr.remove_options if o not in (*DEFAULT_OPTIONS, "--host")]
    if unknown:
        raise ctx.error(f"remove_options: {', '.join(unknown)} is not a default option; the defaults are "
                        f"{', '.join(DEFAULT_OPTIONS)} and --host=TRIPLET for another platform",
                        hint="options only add: list the option in configure_options")
    options = [o for o in options if o not in ctx.attr.remove_options]
    q = shlex.quote
    dep_lines, dep_inputs = dep_env_script(ctx.attr.deps)
    inputs = [src, *dep_inputs]
    script = "\n".join([
        "set -eu",
        *dep_lines,
        "mkdir build && cd build",
        f'"$IN/{src.path}/configure" --prefix={q(prefix)} {" ".join(q(o) for o in options)} >configure.log 2>&1 '
        "|| { tail -n 40 configure.log; tail -n 60 config.log; exit 1; }",
        f'"$MAKE" -j"$HERMETIC_JOBS" {" ".join(q(t) for t in ctx.attr.make_targets)} >make.log 2>&1 '
        "|| { tail -n 80 make.log; exit 1; }",
        *(['"$MAKE" -j"$HERMETIC_JOBS" check >check.log 2>&1 || { tail -n 80 check.log; '
           'cat test/default/test-suite.log 2>/dev/null | tail -n 40; exit 1; }'] if ctx.attr.run_checks else []),
        '"$MAKE" install DESTDIR="$WORK/stage" >install.log 2>&1 || { tail -n 40 install.log; exit 1; }',
        f'cp -R "$WORK/stage{prefix}/include" "$OUT/include"',
        *(f'cp "$WORK/stage{prefix}/lib/{lib}" "$OUT/lib/{lib}"' for lib in ctx.attr.static_libs),
    ])
    env = {**make_env(cc, make, source), **ctx.attr.env}
    ctx.actions.run(["/bin/sh", "-c", script], inputs=inputs, outputs=[*archives, include],
                    mnemonic=ctx.attr.mnemonic or "ConfigureMake", env=env, toolchains=[cc, make], cpus=64)
    return [CcInfo(DepSet([include]), DepSet(archives), ctx.attr.version),
            DefaultInfo((*archives, include))]


@hookimpl
def hermetic_register_rules(registry: RuleRegistry) -> None:
    registry.rule("configure_make", attrs={
        "src": attr.label(mandatory=True, providers=[SourceInfo], doc="an archive target with the source tree"),
        "static_libs": attr.string_list(mandatory=True, doc='archives it installs into lib/, e.g. ["libsodium.a"]'),
        "configure_options": attr.string_list(doc="extra ./configure options (static, PIC and --host are set)"),
        "remove_options": attr.string_list(doc="default options to leave out (--disable-shared, --enable-static, "
                                               "--with-pic, --host) for a configure script that rejects them"),
        "env": attr.string_dict(doc="extra environment for configure and make (CFLAGS, ...)"),
        "deps": attr.label_list(providers=[CcInfo], doc="libraries it builds against (CPPFLAGS, LDFLAGS, LIBS and "
                                                       "a pkg-config file each)"),
        "library": attr.string(doc="its name (default: the target's)"),
        "version": attr.string(doc="its version, for providers and messages"),
        "make_targets": attr.string_list(doc="what `make` builds before `make install` (default: its default "
                                             'target), e.g. ["libsrtp2.a"] to skip the test programs'),
        "run_checks": attr.bool(doc="also run `make check` (its own test suite) in the build"),
        "mnemonic": attr.string(doc="the action's name (default ConfigureMake)"),
    }, doc="A C library from ./configure && make && make install, as static archives and headers.")(_configure_make)

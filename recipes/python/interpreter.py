"""``cpython``: a CPython interpreter built from its pinned source in the
sandbox, as a relocatable install tree (``bin/python3.X``, the stdlib, its
extension modules), by the target's C toolchain, against C libraries built
by other rules (zlib, libffi, OpenSSL: ``deps``), statically: the tree
needs nothing of the build machine but the C library.

Relocatable: the interpreter is linked statically (``--disable-shared``) and
finds its stdlib from where its executable is. Reproducible: the build
records its build directories in text files (``sysconfig``'s data, the
``Makefile`` beside ``libpython.a``); they are rewritten to fixed names and
the affected ``.pyc`` files compiled again (hash-checked, as every ``.pyc``
of a build with ``SOURCE_DATE_EPOCH``)."""

from __future__ import annotations

import re
import shlex

from hermetic.conventions import CcConventions, PythonConventions
from hermetic.errors import ToolchainError
from hermetic.model import Provider, Toolchain
from hermetic.providers import CcInfo, PyInterpreterInfo, SourceInfo
from hermetic.rules import DefaultInfo, RuleContext, RuleRegistry, attr
from recipes.cc_env import dep_env_script, make_env

PREFIX = "/opt/hermetic/python"


def _cpython(ctx: RuleContext) -> list[Provider]:
    a = ctx.attr
    m = re.fullmatch(r"(3)\.(\d+)\.\d+", a.version)
    if not m:
        raise ctx.error(f'version "{a.version}" is not a CPython release such as "3.13.5"')
    mm = f"{m.group(1)}.{m.group(2)}"
    cc = ctx.toolchain("cc")
    make = ctx.exec_toolchain("make")
    source = a.src[SourceInfo]
    if not source.source_date_epoch:
        raise ctx.error(f"{a.src.label} pins no source_date_epoch: the interpreter records its build date",
                        hint="set source_date_epoch on the archive target (the release date)")
    src = source.tree
    tree = ctx.declare_output("python", tree=True)
    q = shlex.quote
    dep_lines, dep_inputs = dep_env_script(a.deps)
    options = ["--disable-shared", "--without-ensurepip", "--disable-test-modules", "--with-openssl-rpath=no",
               *a.configure_options]
    stage = f"$WORK/stage{PREFIX}"
    toolchains = [cc, make]
    cross: list[str] = []  # the configure lines of a cross build
    run_py = f"./bin/python{mm}"  # what compiles the stdlib's .pyc and checks the modules
    if ctx.platform.arch != ctx.host.arch:
        # a cross build (CPython's own way): configure --host, and a build-machine interpreter of the
        # same version (a cpython target for this machine) runs what the build runs and compiles the
        # .pyc files; configure cannot run the target's programs or probe its /dev, so config.site
        # answers for Linux (ptys, a working getaddrinfo)
        if a.build_python is None:
            raise ctx.error(f"CPython for {ctx.platform} is built on {ctx.host} by a CPython {mm} that runs here",
                            hint='set build_python = "//recipes/python:cpython-' + mm + '" (same version, '
                                 "built for this machine)")
        bp = a.build_python[PyInterpreterInfo]
        if bp.version != a.version:
            raise ctx.error(f"build_python is CPython {bp.version}; a cross build needs the same release "
                            f"({a.version})")
        toolchains.append(bp.toolchain)
        run_py = f'"$HERMETIC_TOOLCHAIN_PYTHON/bin/python{mm}"'
        gnu_host = cc.conventions(CcConventions).gnu_host
        cross = ['printf "ac_cv_file__dev_ptmx=yes\\nac_cv_file__dev_ptc=no\\nac_cv_buggy_getaddrinfo=no\\n" '
                 '>"$WORK/config.site"',
                 'export CONFIG_SITE="$WORK/config.site"']
        options += [f"--host={gnu_host}", f"--build={ctx.host.arch}-linux-gnu"]
    mods = " ".join(q(x) for x in a.require_modules)
    setup_py: list[str] = []
    if int(m.group(2)) < 12:
        # CPython before 3.12 builds its extension modules with setup.py, which adds the build
        # machine's own directories (/usr/include/<multiarch> from dpkg-architecture, /usr/local, the
        # compiler's "system" paths) to every module's compile and decides which modules to build by
        # the headers it finds there. Told it is cross-compiling, it asks the target's compiler
        # instead; dpkg-architecture, which it would still ask, is shadowed by a stub that knows nothing
        setup_py = [
            'mkdir "$WORK/no-host-paths" && printf "#!/bin/sh\\nexit 1\\n" >"$WORK/no-host-paths/dpkg-architecture"',
            'chmod +x "$WORK/no-host-paths/dpkg-architecture" && export PATH="$WORK/no-host-paths:$PATH"',
            f'export _PYTHON_HOST_PLATFORM=linux-{ctx.platform.arch}',
        ]
    script = "\n".join([
        "set -eu",
        *dep_lines,
        # a writable copy whose files all carry the release's date: make compares times, and the
        # store's files carry whatever times their blobs have (CPython's Makefile would regenerate
        # checked-in sources it finds "older" than their inputs)
        f'cp -R "$IN/{src.path}" "$WORK/src" && find "$WORK/src" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {{}} +',
        *setup_py,
        # configure by a relative path: the source directory it records (getpath.c's VPATH, compiled
        # into the interpreter) is then ../src, whatever the build root
        'mkdir "$WORK/build" && cd "$WORK/build"',
        *cross,
        f'../src/configure --prefix={PREFIX} {" ".join(q(o) for o in options)}'
        f'{" --with-build-python=" + run_py if cross else ""} >configure.log 2>&1 '
        "|| { tail -n 40 configure.log; tail -n 80 config.log; exit 1; }",
        # the build date sys.version shows: the release's, as the zig toolchain refuses __DATE__/__TIME__
        'day=$(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH" "+%b %e %Y"); '
        'hms=$(date -u -d "@$SOURCE_DATE_EPOCH" +%H:%M:%S)',
        r'''set -- CFLAGS_NODIST="-DDATE='\"$day\"' -DTIME='\"$hms\"'"''',
        '"$MAKE" -j"$HERMETIC_JOBS" "$@" >make.log 2>&1 || { tail -n 80 make.log; exit 1; }',
        '"$MAKE" install DESTDIR="$WORK/stage" "$@" >install.log 2>&1 || { tail -n 60 install.log; exit 1; }',
        f'cd "{stage}"',
        "rm -rf share",
        # build directories, as the build recorded them in text files -> fixed names
        'grep -rlI -e "$WORK" -e "$IN" . | sort >"$WORK/rewritten" || true',
        'while read -r f; do sed -i -e "s|$WORK|/hermetic/build|g" -e "s|$IN|/hermetic/src|g" "$f"; done '
        '<"$WORK/rewritten"',
        f'grep "\\.py$" "$WORK/rewritten" | xargs -r {run_py} -I -m compileall -q -f '
        '--invalidation-mode checked-hash -o 0 -o 1 -o 2',
        # the modules a hermetic interpreter must have: a missing library is a failed build, not a
        # quietly smaller stdlib (a cross build's interpreter cannot run here: each module must be a
        # built extension or compiled in)
        (f'./bin/python{mm} -I -c "import sys; mods = sys.argv[1:]; [__import__(m) for m in mods]" {mods}'
         if not cross else
         f'missing=; for m in {mods}; do ls lib/python{mm}/lib-dynload/"$m".cpython-*.so >/dev/null 2>&1 || '
         'grep -q "PyInit_$m}" "$WORK/build/Modules/config.c" || missing="$missing $m"; done; [ -z "$missing" ]')
        + ' || { echo "the interpreter lacks a required module"; '
        'grep -A30 "modules were not built\\|Failed to build" "$WORK/build/make.log" | head -40; '
        'grep -B4 -A4 " error:\\|undefined reference\\|undefined symbol" "$WORK/build/make.log" | head -80; exit 1; }',
        'cp -a . "$OUT/python/"',
    ])
    env = {**make_env(cc, make, source), **a.env}
    ctx.actions.run(["/bin/sh", "-c", script], inputs=[src, *dep_inputs], outputs=[tree],
                    mnemonic="CPythonBuild", env=env, toolchains=toolchains, cpus=64)
    emulator = None
    emulate = ""
    if cross:  # it runs here under qemu-user, where the host has it (tests of the platform's wheels)
        try:
            emulator = ctx.toolchain("emulator")
            emulate = emulator.tool("qemu") + " "
        except ToolchainError:
            emulator = None
    abi = "musl" if ctx.platform.libc == "musl" else "gnu"
    soabi = f"cpython-3{m.group(2)}-{ctx.platform.arch}-linux-{abi}"
    toolchain = Toolchain(
        "python", {"python": f"bin/python{mm}"},
        # what the interpreter is: the tree's digest is in the key of every action it runs
        # (Action.key_inputs); these name it for people and for `hermetic why`
        {"built-by": str(ctx.label), "version": a.version, "platform": str(ctx.platform)},
        info=PythonConventions(version=a.version, tag=f"cp3{m.group(2)}", soabi=soabi,
                               ext_suffix=f".{soabi}.so"),
        hermetic=True, tree=tree,
        wrappers={"python": f'#!/bin/sh\n# hermetic: CPython {a.version} built by {ctx.label}\n'
                            f'exec {emulate}"$HERMETIC_TOOLCHAIN_PYTHON/bin/python{mm}" "$@"\n'})
    return [PyInterpreterInfo(toolchain, a.version, ctx.platform, tree,
                              build_python=toolchains[2] if cross else None, emulator=emulator),
            DefaultInfo((tree,))]


def register(registry: RuleRegistry) -> None:
    registry.rule("cpython", attrs={
        "src": attr.label(mandatory=True, providers=[SourceInfo], doc="CPython's pinned source (an archive)"),
        "version": attr.string(mandatory=True, doc='the release, e.g. "3.13.5"'),
        "deps": attr.label_list(providers=[CcInfo], doc="zlib, libffi, openssl: what its stdlib links"),
        "build_python": attr.label(providers=[PyInterpreterInfo],
                                   doc="for another CPU: the same release built for this machine (a cpython "
                                       "target), which runs the build's own scripts"),
        "configure_options": attr.string_list(doc="extra ./configure options"),
        "require_modules": attr.string_list(default=["zlib", "_ctypes", "_ssl", "_hashlib"],
                                            doc="C modules the interpreter must have (the build fails without)"),
        "env": attr.string_dict(),
    }, doc="A CPython interpreter from its pinned source: a relocatable install tree.")(_cpython)

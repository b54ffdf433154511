"""Existing packages, unchanged: ``pep517_wheel`` builds a pinned sdist with
its own PEP 517 backend inside the sandbox, against native libraries other
rules built (``configure_make``, ``openssl``), and ``pep517_test`` runs the
package's own test suite against the installed wheel.

The compile sees only what it is given: build requirements are pinned wheels
put on ``sys.path`` (never installed from an index), the compiler is the
platform's hermetic ``cc`` toolchain (zig for manylinux: it does not search
the host's ``/usr/include`` or ``/usr/lib``), and the native libraries'
headers and static archives come in through ``CFLAGS``/``LDFLAGS``. The
backend's wheel is then read (lief), checked not to need the libraries it
was meant to link statically, tagged from what was linked and rewritten
deterministically (``normalize.py``).

``system_libraries`` builds against the host's copies instead (what PyNaCl's
``SODIUM_INSTALL=system`` or awscrt's ``AWS_CRT_BUILD_USE_SYSTEM_LIBCRYPTO``
mean on a developer machine): the host compiler is used, the action's key
says ``non-hermetic``, a ``NON-HERMETIC`` file lands beside the wheel and the
wheel's tag is whatever its dynamic dependencies allow (``linux_x86_64``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hermetic.conventions import (
    CcConventions,
    Exports,
    ExtensionConventions,
    PythonConventions,
)
from hermetic.hookspecs import hookimpl
from hermetic.model import Artifact, Output, Platform, Provider, Toolchain
from hermetic.providers import (
    BuiltWheelInfo,
    CcInfo,
    PinnedWheel,
    PyInterpreterInfo,
    PyWheelInfo,
    SourceInfo,
)
from hermetic.rules import DefaultInfo, RuleContext, RuleRegistry, attr

HERE = Path(__file__).parent
RECIPES = HERE.parent


def _check_cc(ctx: RuleContext, cc: Toolchain, system: tuple[str, ...]) -> None:
    if not system and not cc.hermetic:
        raise ctx.error(
            f"the cc toolchain for {ctx.platform} is the host's own compiler, which sees the host's headers and "
            "libraries (a host OpenSSL or libsodium could leak into the build)",
            hint='build it for a platform the zig toolchain serves, e.g. platform = "linux-x86_64-manylinux2014", '
                 "or set system_libraries to build against the host's copies on purpose (marked non-hermetic)")
    if system and ctx.platform != ctx.host:
        raise ctx.error("system_libraries builds against the host's libraries: it cannot target another platform",
                        hint="drop platform, or drop system_libraries")


def interpreter(ctx: RuleContext, target: Any) -> tuple[Toolchain, PythonConventions, Platform]:
    """The python toolchain a rule runs: a hermetic interpreter (a ``cpython``
    target) when *target* names one, else the host's; its conventions and
    the platform wheels must fit to run on it."""
    if target is None:
        python = ctx.exec_toolchain("python")
        return python, python.conventions(PythonConventions), ctx.host
    info = target[PyInterpreterInfo]
    return info.toolchain, info.toolchain.conventions(PythonConventions), info.platform


def pick(ctx: RuleContext, pins: Sequence[Any], conv: PythonConventions, platform: Platform,
         what: str) -> list[PinnedWheel]:
    """For each pinned requirement, its file for the interpreter *conv* on *platform*."""
    out = []
    for t in pins:
        info = t[PyWheelInfo]
        chosen = info.for_python(conv.tag, platform)
        if chosen is None:
            raise ctx.error(f"{what} {t.label} ({info.distribution} {info.version}) pins no file for CPython "
                            f"{conv.version} ({conv.tag}) on {platform}",
                            hint=f"pin it for that interpreter too: hermetic pin ... --python "
                                 f"{'.'.join(conv.version.split('.')[:2])}")
        out.append(chosen)
    return out


def exports_map(ctx: RuleContext) -> Artifact:
    """The version script that lets only the modules' init functions out."""
    vscript = ctx.declare_output("exports.map")
    ctx.actions.write(vscript, "{\n  global: PyInit_*;\n  local: *;\n};\n")
    return vscript


def declare_wheel(ctx: RuleContext, *, python: Toolchain, sites: Sequence[Artifact], cell: str = "",
                  system: tuple[str, ...] = (), vscript: Artifact | None = None,
                  target: PyInterpreterInfo | None = None) -> tuple[Artifact, Artifact, list[Artifact]]:
    """The build of the sdist by its own backend on *python*, and its
    normalisation: (dist, facts, outputs). *cell* names a matrix cell: its
    outputs go under that directory and its actions carry it."""
    a = ctx.attr
    cc = ctx.exec_toolchain("cc") if system else ctx.toolchain("cc")
    _check_cc(ctx, cc, system)
    conv = ctx.toolchain("pyext").conventions(ExtensionConventions)
    d, m = (f"{cell}/", f"[{cell}]") if cell else ("", "")
    source = a.sdist[SourceInfo]
    argv: list[object] = [python.tool("python"), "-I", "-S", ctx.tool_file(HERE / "build.py")]
    inputs: list[Artifact] = [source.tree, *sites]
    for site in sites:
        argv += ["--path", site]
    if target is not None and target.tree is not None:  # another CPU's interpreter: its sysconfig, headers
        argv += ["--target-python", target.tree, "--target-platform", f"linux-{target.platform.arch}"]
        inputs.append(target.tree)
    conv_py = python.conventions(PythonConventions)
    if int(conv_py.tag[3:]) < 11:  # no tomllib: the frontend reads pyproject.toml with the pinned tomli
        if a.frontend_toml is None:
            raise ctx.error(f"CPython {conv_py.version} has no tomllib to read pyproject.toml with",
                            hint='set frontend_toml = "//recipes/python:tomli" (a pinned tomli)')
        tomli = a.frontend_toml[PyWheelInfo].unpacked
        argv += ["--frontend-path", tomli]
        inputs.append(tomli)
    flags: list[object] = []
    for key, values in sorted(a.config_settings.items()):
        for value in values.split("\n") if "\n" in values else [values]:  # one line per value of a list
            flags += ["--config-setting", f"{key}={value}"]
    forbid = list(a.forbid_needed)
    if not system:
        flags.append("--hermetic-cc")
        for dep in a.deps:
            lib = dep[CcInfo]
            for inc in lib.includes:
                flags += ["--include", inc]
                inputs.append(inc)
            for archive in lib.archives:
                flags += ["--lib", archive]
                inputs.append(archive)
                stem = archive.name.removesuffix(".a").removesuffix(".lib")
                forbid.append(rf"^{stem}\.")  # linked statically: the module may not need it dynamically
        if conv.exports == Exports.VERSION_SCRIPT:  # only the init functions leave the module
            vscript = vscript or exports_map(ctx)
            flags += ["--version-script", vscript]
            inputs.append(vscript)
    raw = ctx.declare_output(f"{d}raw", tree=True)
    env = {"CC": cc.tool("cc"), "LDSHARED": f"{cc.tool('cc')} -shared", "AR": cc.tool("ar"), **a.env}
    if source.source_date_epoch:
        env["SOURCE_DATE_EPOCH"] = str(source.source_date_epoch)
    if system:
        env["HERMETIC_NON_HERMETIC"] = "built against the host's " + ", ".join(system)  # in the key, on purpose
    ctx.actions.run([*argv, *flags, "--", source.tree, Output(f"{d}raw")], inputs=inputs, outputs=[raw],
                    mnemonic=f"Pep517Build{m}", env=env, toolchains=[python, cc])  # type: ignore[arg-type]

    dist = ctx.declare_output(f"{d}dist", tree=True)
    facts = ctx.declare_output(f"{d}wheel.json")
    # lief reads the module on the build machine's own Python, whatever the cell's interpreter
    host_python = ctx.exec_toolchain("python")
    lief = [t[PyWheelInfo].unpacked for t in a.inspect_requires]
    helpers = [ctx.tool_file(RECIPES / "cffi" / "inspect_binary.py"), ctx.tool_file(RECIPES / "wheel" / "tags.py"),
               ctx.tool_file(RECIPES / "wheel" / "mkwheel.py")]
    norm: list[object] = [host_python.tool("python"), "-I", "-S", ctx.tool_file(HERE / "normalize.py")]
    for site in lief:
        norm += ["--path", site]
    for h in helpers:
        norm += ["--helper", h]
    norm += ["--scheme", conv.wheel_platform]
    musl = cc.conventions(CcConventions).musl
    if musl:
        norm += ["--musl", musl]
    for pattern in forbid:
        norm += ["--forbid-needed", pattern]
    ctx.actions.run([*norm, raw, Output(f"{d}dist"), Output(f"{d}wheel.json")], inputs=[raw, *lief, *helpers],
                    outputs=[dist, facts], mnemonic=f"WheelNormalize{m}",
                    toolchains=[host_python])  # type: ignore[arg-type]
    return dist, facts, [dist, facts]


def _pep517_wheel(ctx: RuleContext) -> list[Provider]:
    a = ctx.attr
    system = tuple(a.system_libraries)
    python, conv, runs_on = interpreter(ctx, a.python)
    if a.python is None:
        sites = [w[PyWheelInfo].unpacked for w in a.build_requires]
    else:
        sites = [w.unpacked for w in pick(ctx, a.build_requires, conv, runs_on, "build requirement")]
    dist, facts, outputs = declare_wheel(ctx, python=python, sites=sites, system=system)
    if system:
        marker = ctx.declare_output("NON-HERMETIC")
        ctx.actions.write(marker, f"{ctx.label} was built against the host's {', '.join(system)} "
                          "(system_libraries): its bytes depend on this machine, and its tag says so.\n")
        outputs.append(marker)
    return [BuiltWheelInfo(dist, facts, system), DefaultInfo(tuple(outputs))]


def declare_test(ctx: RuleContext, *, python: Toolchain, dist: Artifact, deps: Sequence[Artifact],
                 cell: str = "", env: dict[str, str] | None = None, emulator: Toolchain | None = None) -> Artifact:
    """A run of the package's own suite against its installed wheel on *python*."""
    a = ctx.attr
    d, m = (f"{cell}/", f"[{cell}]") if cell else ("", "")
    tree = a.tests[SourceInfo].tree
    report = ctx.declare_output(f"{d}test-report.txt")
    argv: list[object] = [python.tool("python"), "-I", ctx.tool_file(RECIPES / "wheel" / "wheeltest.py"),
                          Output(f"{d}test-report.txt"), "--wheel", dist]
    for dep in deps:
        argv += ["--wheel", dep]
    argv += ["--tests-dir", tree, "--tests-subdir", a.tests_dir]
    argv += ["--pytest-plugin", ctx.tool_file(RECIPES / "wheel" / "pytest_report.py")]
    if a.jobs > 1:  # pytest-xdist, pinned among deps, on $HERMETIC_JOBS processes
        argv.append("--xdist")
    for arg in a.pytest_args:
        argv.append(f"--pytest-arg={arg}")
    run_env = dict(a.env if env is None else env)
    toolchains = [python]
    if emulator is not None:  # the interpreter is another CPU's: it and what it starts run under qemu-user
        run_env["HERMETIC_EMULATOR"] = emulator.tool("qemu")
        toolchains.append(emulator)
    ctx.actions.run(argv, inputs=[dist, *deps, tree], outputs=[report],  # type: ignore[arg-type]
                    mnemonic=f"Pep517Test{m}", toolchains=toolchains, env=run_env, cpus=max(1, a.jobs))
    return report


def _pep517_test(ctx: RuleContext) -> list[Provider]:
    a = ctx.attr
    python, conv, runs_on = interpreter(ctx, a.python)
    if a.python is None:
        deps = [t[PyWheelInfo].wheel for t in a.deps]
    else:
        deps = [w.wheel for w in pick(ctx, a.deps, conv, runs_on, "test requirement")]
    report = declare_test(ctx, python=python, dist=a.wheel[BuiltWheelInfo].dist, deps=deps)
    return [DefaultInfo((report,))]


@hookimpl
def hermetic_register_rules(registry: RuleRegistry) -> None:
    from recipes.pep517 import matrix

    matrix.register(registry)
    registry.rule("pep517_wheel", attrs={
        "frontend_toml": attr.label(providers=[PyWheelInfo], cfg="exec",
                                    doc="a pinned tomli (e.g. //recipes/python:tomli): how pyproject.toml is "
                                        "read on a CPython before 3.11"),
        "python": attr.label(providers=[PyInterpreterInfo], doc="a hermetic interpreter (a cpython target) "
                                                               "the backend runs on; default: the host's"),
        "sdist": attr.label(mandatory=True, providers=[SourceInfo], doc="an archive target: the pinned sdist"),
        "build_requires": attr.label_list(providers=[PyWheelInfo], cfg="exec",
                                          doc="pinned wheels the backend needs (setuptools, cffi, ...)"),
        "deps": attr.label_list(providers=[CcInfo], doc="native libraries to compile and link against"),
        "env": attr.string_dict(doc="the package's own build switches, e.g. SODIUM_INSTALL = \"system\""),
        "config_settings": attr.string_dict(doc="PEP 517 config_settings for the backend, e.g. "
                                                "{\"--build-option\" = \"--py-limited-api=cp39\"} (a value of "
                                                "several lines is a list)"),
        "inspect_requires": attr.label_list(providers=[PyWheelInfo], cfg="exec", doc="lief, to read the module"),
        "forbid_needed": attr.string_list(doc="regexes of libraries the extension may not need dynamically "
                                              "(deps' libraries are added)"),
        "system_libraries": attr.string_list(doc="build against these host libraries instead of deps: "
                                                 "non-hermetic, marked so in the key and the output"),
    }, doc="Build a pinned sdist with its own PEP 517 backend, hermetically.")(_pep517_wheel)
    registry.rule("pep517_test", attrs={
        "wheel": attr.label(mandatory=True, providers=[BuiltWheelInfo]),
        "python": attr.label(providers=[PyInterpreterInfo], doc="a hermetic interpreter (a cpython target) "
                                                               "the suite runs on; default: the host's"),
        "tests": attr.label(mandatory=True, providers=[SourceInfo], doc="the source tree holding the tests"),
        "tests_dir": attr.string(default="tests", doc="the test directory inside it"),
        "deps": attr.label_list(providers=[PyWheelInfo], cfg="exec",
                                doc="pinned wheels installed beside it: runtime and test requirements"),
        "pytest_args": attr.string_list(doc="extra pytest arguments"),
        "jobs": attr.int(default=1, doc="run the suite with pytest-xdist (pin it among deps) on up to this many "
                                        "processes ($HERMETIC_JOBS: fewer when -j is smaller)"),
        "env": attr.string_dict(),
    }, doc="Run a package's own pytest suite against its installed wheel in a fresh venv.")(_pep517_test)

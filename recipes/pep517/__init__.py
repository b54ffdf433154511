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

from pathlib import Path


from hermetic.conventions import CcConventions, Exports, ExtensionConventions
from hermetic.hookspecs import hookimpl
from hermetic.model import Artifact, Output, Provider
from hermetic.rules import DefaultInfo, RuleContext, RuleRegistry, attr
from hermetic.providers import BuiltWheelInfo, CcInfo, PyWheelInfo, SourceInfo

HERE = Path(__file__).parent
RECIPES = HERE.parent


def _pep517_wheel(ctx: RuleContext) -> list[Provider]:
    a = ctx.attr
    python = ctx.exec_toolchain("python")
    system = tuple(a.system_libraries)
    cc = ctx.exec_toolchain("cc") if system else ctx.toolchain("cc")
    conv = ctx.toolchain("pyext").conventions(ExtensionConventions)
    if not system and not cc.hermetic:
        raise ctx.error(
            f"the cc toolchain for {ctx.platform} is the host's own compiler, which sees the host's headers and "
            "libraries (a host OpenSSL or libsodium could leak into the build)",
            hint='build it for a platform the zig toolchain serves, e.g. platform = "linux-x86_64-manylinux2014", '
                 "or set system_libraries to build against the host's copies on purpose (marked non-hermetic)")
    if system and ctx.platform != ctx.host:
        raise ctx.error("system_libraries builds against the host's libraries: it cannot target another platform",
                        hint="drop platform, or drop system_libraries")
    source = a.sdist[SourceInfo]
    sites = [w[PyWheelInfo].unpacked for w in a.build_requires]
    argv: list[object] = [python.tool("python"), "-I", "-S", ctx.tool_file(HERE / "build.py")]
    inputs: list[Artifact] = [source.tree, *sites]
    for site in sites:
        argv += ["--path", site]
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
            vscript = ctx.declare_output("exports.map")
            ctx.actions.write(vscript, "{\n  global: PyInit_*;\n  local: *;\n};\n")
            flags += ["--version-script", vscript]
            inputs.append(vscript)
    raw = ctx.declare_output("raw", tree=True)
    env = {"CC": cc.tool("cc"), "LDSHARED": f"{cc.tool('cc')} -shared", "AR": cc.tool("ar"), **a.env}
    if source.source_date_epoch:
        env["SOURCE_DATE_EPOCH"] = str(source.source_date_epoch)
    if system:
        env["HERMETIC_NON_HERMETIC"] = "built against the host's " + ", ".join(system)  # in the key, on purpose
    ctx.actions.run([*argv, *flags, "--", source.tree, Output("raw")], inputs=inputs, outputs=[raw],
                    mnemonic="Pep517Build", env=env, toolchains=[python, cc])  # type: ignore[arg-type]

    dist = ctx.declare_output("dist", tree=True)
    facts = ctx.declare_output("wheel.json")
    lief = [t[PyWheelInfo].unpacked for t in a.inspect_requires]
    helpers = [ctx.tool_file(RECIPES / "cffi" / "inspect_binary.py"), ctx.tool_file(RECIPES / "wheel" / "tags.py"),
               ctx.tool_file(RECIPES / "wheel" / "mkwheel.py")]
    norm: list[object] = [python.tool("python"), "-I", "-S", ctx.tool_file(HERE / "normalize.py")]
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
    ctx.actions.run([*norm, raw, Output("dist"), Output(facts.name)], inputs=[raw, *lief, *helpers],
                    outputs=[dist, facts], mnemonic="WheelNormalize", toolchains=[python])  # type: ignore[arg-type]
    outputs = [dist, facts]
    if system:
        marker = ctx.declare_output("NON-HERMETIC")
        ctx.actions.write(marker, f"{ctx.label} was built against the host's {', '.join(system)} "
                          "(system_libraries): its bytes depend on this machine, and its tag says so.\n")
        outputs.append(marker)
    return [BuiltWheelInfo(dist, facts, system), DefaultInfo(tuple(outputs))]


def _pep517_test(ctx: RuleContext) -> list[Provider]:
    a = ctx.attr
    python = ctx.exec_toolchain("python")
    built = a.wheel[BuiltWheelInfo]
    tree = a.tests[SourceInfo].tree
    deps = [t[PyWheelInfo].wheel for t in a.deps]
    report = ctx.declare_output("test-report.txt")
    argv: list[object] = [python.tool("python"), "-I", ctx.tool_file(RECIPES / "wheel" / "wheeltest.py"),
                          Output(report.name), "--wheel", built.dist]
    for d in deps:
        argv += ["--wheel", d]
    argv += ["--tests-dir", tree, "--tests-subdir", a.tests_dir]
    argv += ["--pytest-plugin", ctx.tool_file(RECIPES / "wheel" / "pytest_report.py")]
    if a.jobs > 1:  # pytest-xdist, pinned among deps, on $HERMETIC_JOBS processes
        argv.append("--xdist")
    for arg in a.pytest_args:
        argv.append(f"--pytest-arg={arg}")
    ctx.actions.run(argv, inputs=[built.dist, *deps, tree], outputs=[report],  # type: ignore[arg-type]
                    mnemonic="Pep517Test", toolchains=[python], env=dict(a.env), cpus=max(1, a.jobs))
    return [DefaultInfo((report,))]


@hookimpl
def hermetic_register_rules(registry: RuleRegistry) -> None:
    registry.rule("pep517_wheel", attrs={
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
        "tests": attr.label(mandatory=True, providers=[SourceInfo], doc="the source tree holding the tests"),
        "tests_dir": attr.string(default="tests", doc="the test directory inside it"),
        "deps": attr.label_list(providers=[PyWheelInfo], cfg="exec",
                                doc="pinned wheels installed beside it: runtime and test requirements"),
        "pytest_args": attr.string_list(doc="extra pytest arguments"),
        "jobs": attr.int(default=1, doc="run the suite with pytest-xdist (pin it among deps) on up to this many "
                                        "processes ($HERMETIC_JOBS: fewer when -j is smaller)"),
        "env": attr.string_dict(),
    }, doc="Run a package's own pytest suite against its installed wheel in a fresh venv.")(_pep517_test)

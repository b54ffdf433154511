"""``py_wheel``: package Python sources and extension modules into a
deterministic wheel with an honest tag, then install it into a fresh virtual
environment (``pip install --no-deps --no-index``) and run its tests there."""

from __future__ import annotations

import json
import re
from pathlib import Path


from hermetic.hookspecs import hookimpl
from hermetic.model import Artifact, Output, Platform, Provider
from hermetic.rules import DefaultInfo, RuleContext, RuleRegistry, attr
from hermetic.providers import PyExtensionInfo, PyWheelInfo, WheelInfo

HERE = Path(__file__).parent


def _host_can_run(target: Platform, host: Platform) -> bool:
    """Whether a wheel for *target* loads in the host's Python: same OS and
    CPU, and a libc the host has (a manylinux baseline runs on any glibc)."""
    if target.is_any:
        return True
    if (target.os, target.arch) != (host.os, host.arch):
        return False
    return target.libc == host.libc or (host.libc == "glibc" and target.libc.startswith("manylinux"))


def _py_wheel(ctx: RuleContext) -> list[Provider]:
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    a = ctx.attr
    python = ctx.exec_toolchain("python")  # packs the wheel and runs the tests, on the host
    try:
        version = str(Version(a.version))
    except InvalidVersion:
        raise ctx.error(f'version "{a.version}" is not a valid Python version') from None
    dist = re.sub(r"[-_.]+", "_", str(canonicalize_name(a.distribution)))
    exts = [t[PyExtensionInfo] for t in a.extensions]
    # the platform part of the tag is read from the linked extensions when
    # the wheel is made (tags.py): the name is known then, so the wheel is
    # the one file in the "dist" directory
    wheel = ctx.declare_output("dist", tree=True)

    root = "src/" + a.package_root.strip("/") + "/" if a.package_root else "src/"
    files: list[list[str]] = []
    inputs: list[Artifact] = []
    for src in a.srcs:
        if not src.path.startswith(root):
            raise ctx.error(f"{src.path} is not under package_root {a.package_root!r}")
        files.append([src.path[len(root):], src.path])
        inputs.append(src)
    for ext in exts:
        files.append([ext.module.replace(".", "/").rsplit("/", 1)[0] + "/" + ext.shared_object.name,
                      ext.shared_object.path])
        inputs += [ext.shared_object, ext.check]
    spec: dict[str, object] = {
        "distribution": dist, "name": a.distribution, "version": version,
        "files": sorted(files), "summary": a.summary, "license": a.license,
        "requires_dist": list(a.requires), "requires_python": a.requires_python, "generator": "hermetic",
    }
    if exts:
        kinds = {(e.python_tag, e.abi_tag, e.wheel_platform, e.musl) for e in exts}
        if len(kinds) != 1:
            raise ctx.error("the extensions were built for different Pythons or platforms")
        py_tag, abi_tag, wheel_platform, musl = kinds.pop()
        spec.update(python_tag=py_tag, abi_tag=abi_tag,
                    platform={"facts": [e.check.path for e in exts], "scheme": wheel_platform, "musl": musl})
        inputs.append(ctx.tool_file(HERE / "tags.py"))
    else:
        spec["tag"] = "py3-none-any"
    spec_file = ctx.declare_output("wheel.json")
    ctx.actions.write(spec_file, json.dumps(spec, indent=1, sort_keys=True))
    ctx.actions.run([python.tool("python"), "-I", "-S", ctx.tool_file(HERE / "mkwheel.py"), spec_file,
                     Output("dist")], inputs=inputs, outputs=[wheel], mnemonic="PyWheel",
                    toolchains=[python])
    outputs = [wheel]
    report = None
    if a.tests and _host_can_run(ctx.platform, ctx.host):
        report = ctx.declare_output("test-report.txt")
        deps = [t[PyWheelInfo].wheel for t in a.test_deps]
        env = {}
        version_pin = next((e.library_version for e in exts if e.library_version), "")
        if version_pin:
            env["HERMETIC_EXPECT_OPENSSL"] = version_pin
        ctx.actions.run([python.tool("python"), "-I", ctx.tool_file(HERE / "wheeltest.py"),
                         Output(report.name), "--wheel", wheel, *(x for d in deps for x in ("--wheel", d)),
                         *(x for t in a.tests for x in ("--test", t))],
                        inputs=[*deps, *a.tests], outputs=[report], mnemonic="PyWheelTest",
                        toolchains=[python], env=env)
        outputs.append(report)
    return [WheelInfo(wheel, report), DefaultInfo(tuple(outputs))]


@hookimpl
def hermetic_register_rules(registry: RuleRegistry) -> None:
    registry.rule("py_wheel", attrs={
        "distribution": attr.string(mandatory=True),
        "version": attr.string(mandatory=True),
        "srcs": attr.files(doc="Python files of the package"),
        "package_root": attr.string(doc="workspace directory the srcs' import paths start at"),
        "extensions": attr.label_list(providers=[PyExtensionInfo]),
        "requires": attr.string_list(doc="Requires-Dist lines"),
        "requires_python": attr.string(default=">=3.9"),
        "summary": attr.string(default=""),
        "license": attr.string(default=""),
        "tests": attr.files(doc="unittest files run against the installed wheel"),
        "test_deps": attr.label_list(providers=[PyWheelInfo], cfg="exec",
                                     doc="wheels installed beside it for the tests"),
    }, doc="A deterministic wheel, tested in a fresh virtual environment.")(_py_wheel)

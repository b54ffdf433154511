"""``py_wheel``: package Python sources and extension modules into a
deterministic wheel with an honest tag, then install it into a fresh virtual
environment (``pip install --no-deps --no-index``) and run its tests there."""

from __future__ import annotations

import json
import re
from pathlib import Path

import attrs

from hermetic.hookspecs import hookimpl
from hermetic.model import Artifact, Output, Provider
from hermetic.rules import DefaultInfo, RuleContext, RuleRegistry, attr
from recipes.cffi import PyExtensionInfo
from recipes.fetch import PyWheelInfo

HERE = Path(__file__).parent


@attrs.frozen
class WheelInfo(Provider):
    wheel: Artifact
    test_report: Artifact | None


def platform_tag(ctx: RuleContext) -> str:
    """The tag for what is linked: the host's glibc ABI for the plain host
    toolchain (``linux_<arch>``). A toolchain that targets a manylinux
    baseline says so in its info."""
    cc = ctx.toolchain("cc")
    if "platform_tag" in cc.info:
        return str(cc.info["platform_tag"])
    p = ctx.platform
    if p.os == "linux":
        return f"linux_{p.arch}"
    raise ctx.error(f"no wheel platform tag known for {p}")


def _py_wheel(ctx: RuleContext) -> list[Provider]:
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    a = ctx.attr
    python = ctx.toolchain("python")
    try:
        version = str(Version(a.version))
    except InvalidVersion:
        raise ctx.error(f'version "{a.version}" is not a valid Python version') from None
    dist = re.sub(r"[-_.]+", "_", str(canonicalize_name(a.distribution)))
    exts = [t[PyExtensionInfo] for t in a.extensions]
    tag = python.info["tag"]
    wheel_name = f"{dist}-{version}-{tag}-{tag}-{platform_tag(ctx)}.whl" if exts else \
        f"{dist}-{version}-py3-none-any.whl"
    wheel = ctx.declare_output(wheel_name)

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
    spec = {
        "distribution": dist, "name": a.distribution, "version": version, "tag": wheel_name[:-4].split("-", 2)[2],
        "files": sorted(files), "summary": a.summary, "license": a.license,
        "requires_dist": list(a.requires), "requires_python": a.requires_python, "generator": "hermetic",
    }
    spec_file = ctx.declare_output("wheel.json")
    ctx.actions.write(spec_file, json.dumps(spec, indent=1, sort_keys=True))
    ctx.actions.run([python.tool("python"), "-I", "-S", ctx.tool_file(HERE / "mkwheel.py"), spec_file,
                     Output(wheel.name)], inputs=inputs, outputs=[wheel], mnemonic="PyWheel",
                    toolchains=[python])
    outputs = [wheel]
    report = None
    if a.tests:
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
        "test_deps": attr.label_list(providers=[PyWheelInfo], doc="wheels installed beside it for the tests"),
    }, doc="A deterministic wheel, tested in a fresh virtual environment.")(_py_wheel)

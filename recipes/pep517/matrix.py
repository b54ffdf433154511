"""``wheel_matrix``: one sdist, one wheel and one test run per interpreter
(cibuildwheel's matrix), every interpreter a hermetic one (``cpython``
targets built from pinned source), for the target's platform.

Each cell is the ``pep517_wheel`` build and ``pep517_test`` run on that
interpreter, its build and test requirements chosen from the pins for that
interpreter and platform. With ``limited_api`` (the package builds for the
stable ABI) the wheel is built once, on the oldest interpreter that version
allows, and tested on every one. After the build, hermetic writes the
summary table (``summary.md`` beside the cells): cell, wheel, tag, size,
test totals, time, and whether it came from the cache."""

from __future__ import annotations

import re

from hermetic.conventions import Exports, ExtensionConventions
from hermetic.model import Provider
from hermetic.providers import (
    CcInfo,
    MatrixCell,
    MatrixInfo,
    PyInterpreterInfo,
    PyWheelInfo,
    SourceInfo,
)
from hermetic.rules import DefaultInfo, RuleContext, RuleRegistry, attr
from recipes.pep517 import declare_test, declare_wheel, exports_map, interpreter, pick


def _minor(version: str) -> int:
    return int(version.split(".")[1])


def _wheel_matrix(ctx: RuleContext) -> list[Provider]:
    a = ctx.attr
    if not a.pythons:
        raise ctx.error("pythons is empty", hint='name the interpreters, e.g. ["//recipes/python:cpython-3.13"]')
    interpreters = sorted((interpreter(ctx, t) + (t[PyInterpreterInfo],) for t in a.pythons),
                          key=lambda x: _minor(x[1].version))
    for _, conv, runs_on, info in interpreters:
        if (runs_on.arch, runs_on.libc == "musl") != (ctx.platform.arch, ctx.platform.libc == "musl"):
            raise ctx.error(f"{info.toolchain.identity.get('built-by')} is CPython {conv.version} for {runs_on}; "
                            f"this matrix builds for {ctx.platform}",
                            hint="name interpreters built for this target's platform (cpython targets with the "
                                 "same CPU and C library)")
    tags = [conv.tag for _, conv, _, _ in interpreters]
    if len(set(tags)) != len(tags):
        raise ctx.error(f"pythons names one CPython version twice ({', '.join(tags)})")
    if a.limited_api and not re.fullmatch(r"3\.\d+", a.limited_api):
        raise ctx.error(f'limited_api "{a.limited_api}" is not a Python version like "3.10"')
    if a.limited_api:
        floor = _minor(a.limited_api)
        kept = [i for i in interpreters if _minor(i[1].version) >= floor]
        if not kept:
            raise ctx.error(f"no interpreter in pythons is {a.limited_api} or newer (limited_api)")
        interpreters = kept
    conv_ext = ctx.toolchain("pyext").conventions(ExtensionConventions)
    vscript = exports_map(ctx) if conv_ext.exports == Exports.VERSION_SCRIPT else None
    cells = []
    shared = None  # the abi3 build every interpreter tests
    for python, conv, runs_on, info in interpreters:
        name = conv.tag
        if a.limited_api and shared is None or not a.limited_api:
            # the backend runs on this machine: the interpreter itself, or for another CPU's the same
            # release built for this machine, configured for the target (its build requirements are
            # this machine's wheels)
            builder = info.build_python or python
            build_on = ctx.host if info.build_python is not None else runs_on
            sites = [w.unpacked for w in pick(ctx, a.build_requires, conv, build_on, "build requirement")]
            build_cell = f"abi3-{name}" if a.limited_api else name
            dist, facts, _ = declare_wheel(ctx, python=builder, sites=sites, cell=build_cell, vscript=vscript,
                                           target=info if info.build_python is not None else None)
            build_ids = tuple(x.id for x in ctx.declared_actions if x.mnemonic.endswith(f"[{build_cell}]"))
            if a.limited_api:
                shared = (dist, facts, build_ids)
        else:
            dist, facts, build_ids = shared
        report = None
        test_id = ""
        if a.tests is not None:
            deps = [w.wheel for w in pick(ctx, a.test_deps, conv, runs_on, "test requirement")]
            if info.build_python is not None and info.emulator is None:
                raise ctx.error(f"the tests of the {ctx.platform} cells run under an emulator, and none runs "
                                f"{ctx.platform} programs on {ctx.host}",
                                hint="install qemu-user and the platform's cross C library (scripts/setup.sh does), "
                                     "or leave tests unset")
            report = declare_test(ctx, python=python, dist=dist, deps=deps, cell=name, env=a.test_env,
                                  emulator=info.emulator)
            test_id = ctx.declared_actions[-1].id
        cells.append(MatrixCell(name, conv.version, str(ctx.platform), dist, facts, report, build_ids, test_id))
    files = tuple(x for c in cells for x in (c.dist, c.report) if x is not None)
    summary = f"{ctx.output_dir.removeprefix('out/')}/summary.md"
    return [MatrixInfo(tuple(cells), summary), DefaultInfo(tuple(dict.fromkeys(files)))]


def register(registry: RuleRegistry) -> None:
    registry.rule("wheel_matrix", attrs={
        "sdist": attr.label(mandatory=True, providers=[SourceInfo], doc="an archive target: the pinned sdist"),
        "pythons": attr.label_list(mandatory=True, providers=[PyInterpreterInfo],
                                   doc="hermetic interpreters (cpython targets): one cell each"),
        "frontend_toml": attr.label(providers=[PyWheelInfo], cfg="exec",
                                    doc="a pinned tomli (e.g. //recipes/python:tomli): how pyproject.toml is "
                                        "read on a CPython before 3.11"),
        "limited_api": attr.string(doc='the package builds for the stable ABI from this version ("3.10"): '
                                       "one build on the oldest interpreter, tested on every one"),
        "build_requires": attr.label_list(providers=[PyWheelInfo], cfg="exec",
                                          doc="pinned wheels the backend needs, pinned for every interpreter"),
        "deps": attr.label_list(providers=[CcInfo], doc="native libraries to compile and link against"),
        "env": attr.string_dict(doc="the package's own build switches"),
        "config_settings": attr.string_dict(doc="PEP 517 config_settings for the backend"),
        "inspect_requires": attr.label_list(providers=[PyWheelInfo], cfg="exec", doc="lief, to read the module"),
        "forbid_needed": attr.string_list(doc="regexes of libraries the extension may not need dynamically"),
        "tests": attr.label(providers=[SourceInfo], doc="the source tree holding the tests (none: no test runs)"),
        "tests_dir": attr.string(default="tests", doc="the test directory inside it"),
        "test_deps": attr.label_list(providers=[PyWheelInfo], cfg="exec",
                                     doc="runtime and test requirements, pinned for every interpreter"),
        "pytest_args": attr.string_list(doc="extra pytest arguments"),
        "jobs": attr.int(default=1, doc="pytest-xdist processes per test run"),
        "test_env": attr.string_dict(doc="environment of the test runs"),
    }, doc="One sdist's wheels and test runs for every interpreter given, on the target's platform.")(
        _wheel_matrix)

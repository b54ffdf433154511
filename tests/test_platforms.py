"""Issue 6: six platforms from one Linux host with the pinned zig toolchain.

Unit tests (fast) cover platform names, the analysed graph, the probed
pyconfig.h, the tag rules, Mach-O symbol hiding and the macOS sandbox
profile. The integration tests share one `hermetic build //wheel:all` (the
``all_wheels`` fixture, on top of the warm flagship store: five more cold
OpenSSL builds, one per other platform) and read its wheels with auditwheel
and lief the way PyPA's tools and loaders would."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, copy_workspace, hermetic_cli, machine_paths_in

sys.path.insert(0, str(REPO / "recipes" / "wheel"))
from tags import platform_tag  # noqa: E402

from hermetic.model import Platform  # noqa: E402
from plugins.macos import hide_archive_symbols, hide_object_symbols, sandbox_profile  # noqa: E402

PLATFORMS = {
    "//wheel:linux-x86_64": "linux-x86_64-manylinux2014",
    "//wheel:linux-aarch64": "linux-aarch64-manylinux2014",
    "//wheel:musllinux-x86_64": "linux-x86_64-musl",
    "//wheel:macos-x86_64": "darwin-x86_64",
    "//wheel:macos-arm64": "darwin-aarch64",
    "//wheel:windows-x86_64": "windows-x86_64",
}


# -- platforms and the graph ---------------------------------------------------------


@pytest.mark.parametrize(("text", "expect"), [
    ("linux-x86_64", Platform("linux", "x86_64", "glibc")),
    ("linux-x86_64-musl", Platform("linux", "x86_64", "musl")),
    ("musllinux-x86_64", Platform("linux", "x86_64", "musl")),
    ("manylinux2014-aarch64", Platform("linux", "aarch64", "manylinux2014")),
    ("macos-arm64", Platform("darwin", "aarch64")),
    ("darwin-x86_64", Platform("darwin", "x86_64")),
    ("win-amd64", Platform("windows", "x86_64")),
])
def test_platform_names(text, expect):
    assert Platform.parse(text) == expect
    assert Platform.parse(str(expect)) == expect


def test_bad_platform_names_say_how():
    from hermetic.errors import HermeticError

    for bad in ("linux", "macos-arm64-x", "musllinux-x86_64-musl", "-x86_64"):
        with pytest.raises(HermeticError) as e:
            Platform.parse(bad)
        assert e.value.hint


def _graph(ws: Path, *args: str) -> dict:
    proc = hermetic_cli("graph", *args, "--format", "json", cwd=ws)
    return json.loads(proc.stdout)


def test_all_six_share_what_does_not_depend_on_the_platform(tmp_path):
    """Issue 6, 4 (the graph): one fetch and one signature check of each
    source, one unpack of each pinned wheel, one cffi generation; a compile,
    a link and a wheel per platform; no two actions with one name."""
    ws = copy_workspace(tmp_path / "ws")
    g = _graph(ws, "//wheel:all")
    ids = [a["id"] for a in g["actions"]]
    assert len(ids) == len(set(ids))
    by = {}
    for a in g["actions"]:
        by.setdefault(a["mnemonic"], []).append(a)
    assert sorted(a["owner"] for a in by["Fetch"]) == ["//recipes/openssl:source", "//recipes/python:cpython-source"]
    assert len(by["Extract"]) == 2
    assert len(by["FetchWheel"]) == 3  # cffi, pycparser, lief: host tools, once
    assert len(by["CffiGenerate"]) == 1  # the generated C is the same for all: a shared action
    for m in ("OpenSSLBuild", "PyHeaders", "CcCompile", "CcLink", "InspectBinary", "PyWheel"):
        assert len(by[m]) == 6, m
    # each platform's actions write under its own configuration directory
    outs = {o.split("/")[1] for a in by["PyWheel"] for o in a["outputs"]}
    assert outs == set(PLATFORMS.values())
    # tests run in the build only where this host can load the wheel
    assert [a["id"] for a in by["PyWheelTest"]] == \
        ["//wheel:hermetic-openssl#PyWheelTest@linux-x86_64-manylinux2014"]
    # conventions the platform plugins chose
    assert len(by["HideArchiveSymbols"]) == 2  # Mach-O: private-extern archives
    assert [a["id"] for a in by["PyImportLib"]] == ["//recipes/python:headers#PyImportLib@windows-x86_64"]
    # musllinux modules need musl as libc.musl-x86_64.so.1 (PEP 656), not zig's libc.so
    assert [a["id"] for a in by["RenameNeeded"]] == ["//recipes/pyossl:binding#RenameNeeded@linux-x86_64-musl"]


def test_platform_option_is_the_same_graph_as_the_named_target(tmp_path):
    ws = copy_workspace(tmp_path / "ws")
    named = _graph(ws, "//wheel:macos-arm64")
    option = _graph(ws, "//wheel:hermetic-openssl", "--platform", "macos-arm64")
    assert sorted(a["id"] for a in named["actions"]) == sorted(a["id"] for a in option["actions"])
    assert all("@darwin-aarch64" in a["id"] for a in option["actions"]
               if a["kind"] == "run" and a["owner"].startswith(("//wheel", "//recipes/openssl:openssl")))
    bad = hermetic_cli("graph", "//wheel:hermetic-openssl", "--platform", "plan9-mips", cwd=ws, check=False)
    assert bad.returncode != 0 and "plan9-mips" in bad.stderr and "Traceback" not in bad.stderr


# -- pyconfig.h, tags, symbol hiding, the macOS profile ---------------------------------


def test_probed_pyconfig_agrees_with_the_hosts_real_one(tmp_path):
    """Every macro the probe writes for the host's compiler has the value
    Debian's configure-made pyconfig.h has."""
    import sysconfig

    real_h = Path(sysconfig.get_config_h_filename())
    if not real_h.is_file() or shutil.which("gcc") is None:
        pytest.skip("needs the host Python's pyconfig.h and gcc")
    out = tmp_path / "pyconfig.h"
    subprocess.run([sys.executable, str(REPO / "recipes/python/pyconfig.py"), "linux", str(out)], check=True,
                   env={"CC": "gcc", "PATH": "/usr/bin:/bin"}, cwd=tmp_path)

    def defines(path: Path) -> dict[str, str]:
        return {m[1]: m[2].strip() for m in re.finditer(r"^\s*#\s*define (\w+) (.*)$", path.read_text(), re.M)}

    text = real_h.read_text()
    multiarch = re.search(r"#\s*include <([\w./-]+/pyconfig\.h)>", text)  # Debian's per-architecture file
    if multiarch:
        real_h = Path("/usr/include") / multiarch[1]
    ours, real = defines(out), defines(real_h)
    ours.pop("Py_PYCONFIG_H", None)
    newer = {"ALIGNOF_MAX_ALIGN_T"}  # asked by CPython 3.13's headers, not by 3.11's configure
    assert len(ours) > 40
    assert {k: v for k, v in ours.items() if k not in newer and real.get(k) != v} == {}


@pytest.mark.parametrize(("facts", "scheme", "musl", "tag"), [
    ([{"format": "elf", "arch": "x86_64", "needed": ["libc.so.6", "libdl.so.2"], "glibc": "2.14"}], "linux", "",
     "manylinux_2_14_x86_64.manylinux2014_x86_64"),
    ([{"format": "elf", "arch": "x86_64", "needed": ["libc.so.6"], "glibc": "2.34"}], "linux", "",
     "manylinux_2_34_x86_64"),
    ([{"format": "elf", "arch": "aarch64", "needed": ["libc.so.6"], "glibc": "2.4"}], "linux", "",
     "manylinux_2_17_aarch64.manylinux2014_aarch64"),
    ([{"format": "elf", "arch": "x86_64", "needed": ["libssl.so.3", "libc.so.6"], "glibc": "2.14"}], "linux", "",
     "linux_x86_64"),
    ([{"format": "elf", "arch": "x86_64", "needed": ["libc.so"], "glibc": None}], "linux", "1.2",
     "musllinux_1_2_x86_64"),
    ([{"format": "macho", "arch": "aarch64", "needed": [], "macos": "11.0"}], "macosx", "", "macosx_11_0_arm64"),
    ([{"format": "macho", "arch": "x86_64", "needed": [], "macos": "10.13"}], "macosx", "", "macosx_10_13_x86_64"),
    ([{"format": "pe", "arch": "x86_64", "needed": ["python3.dll"]}], "win", "", "win_amd64"),
])
def test_the_tag_is_read_from_what_was_linked(facts, scheme, musl, tag):
    assert platform_tag(facts, scheme, musl) == tag


def test_a_tag_for_the_wrong_format_is_refused():
    from tags import TagError

    with pytest.raises(TagError):
        platform_tag([{"format": "pe", "arch": "x86_64", "needed": []}], "macosx")


def _macho_object(symbols: list[tuple[int, int, int]]) -> bytes:
    """A minimal 64-bit Mach-O object: header, LC_SYMTAB, nlist_64 entries
    (n_type, n_sect, n_value), a string table."""
    header = struct.pack("<IiiIIIII", 0xFEEDFACF, 0x0100000C, 0, 1, 1, 24, 0, 0)
    symoff = 32 + 24
    nlists = b"".join(struct.pack("<IBBHQ", 1, t, s, 0, v) for t, s, v in symbols)
    stroff = symoff + len(nlists)
    symtab = struct.pack("<IIIIII", 2, 24, symoff, len(symbols), stroff, 4)
    return header + symtab + nlists + b"\0_x\0"


def test_macho_symbols_defined_by_archives_become_private_extern(tmp_path):
    # defined extern, undefined, local, stab, already hidden, defined extern, common block (undefined + size)
    syms = [(0x0F, 1, 0), (0x01, 0, 0), (0x0E, 1, 0), (0x24, 1, 0), (0x1F, 1, 0), (0x0F, 2, 8), (0x01, 0, 16)]
    obj = bytearray(_macho_object(syms))
    assert hide_object_symbols(obj) == 3
    types = [obj[56 + 16 * i + 4] for i in range(len(syms))]
    assert types == [0x1F, 0x01, 0x0E, 0x24, 0x1F, 0x1F, 0x11]  # undefined, local, stab, hidden: untouched

    member = _macho_object(syms)
    name = b"crypto-lib.o"
    body = name + member
    archive = b"!<arch>\n" + f"#1/{len(name):<13}{0:<12}{0:<6}{0:<6}{644:<8}{len(body):<10}`\n".encode() + body
    if len(body) % 2:
        archive += b"\n"
    path = tmp_path / "libx.a"
    path.write_bytes(archive)
    assert hide_archive_symbols(path) == 3
    assert len(path.read_bytes()) == len(archive)  # patched in place
    assert hide_archive_symbols(path) == 0  # and idempotent
    # the common block gets a hidden definition under its exact name (zig exports private commons)
    from plugins.macho_hide import common_blocks, commons_source

    assert common_blocks(path) == {"_x": (16, 0)}
    assert '__attribute__((visibility("hidden"), aligned(1))) unsigned char hermetic_common_0[16] __asm__("_x");' \
        in commons_source(common_blocks(path))


def test_macos_sandbox_profile():
    p = sandbox_profile("/w/in", "/w/out", "/w/work", "/w/work/.home", "/w/work/.tmp",
                        toolchain_dirs=('/opt/zig "quoted"',))
    assert p.startswith("(version 1)\n(deny default)")
    assert p.count("(") == p.count(")")
    assert "(deny network*)" in p
    write = next(line for line in p.splitlines() if line.startswith("(allow file-write*"))
    assert '"/w/out"' in write and '"/w/work"' in write and '"/w/in"' not in write  # inputs read-only
    read = next(line for line in p.splitlines() if line.startswith("(allow file-read*"))
    assert '"/w/in"' in read and '"/opt/zig \\"quoted\\""' in read
    assert "network" not in p.replace("(deny network*)", "")


def test_windows_isolation_is_declared_weaker():
    from plugins.linux import BwrapSandbox
    from plugins.windows import JobObjectSandbox

    weak = JobObjectSandbox().profile()
    strong = BwrapSandbox("/usr/bin/bwrap", "x").profile()
    assert set(weak["enforces"]) < set(strong["enforces"])
    assert {"no-network", "read-only-inputs"} <= set(weak["does-not-enforce"])


# -- the real builds ------------------------------------------------------------------

integration = [pytest.mark.integration, pytest.mark.linux, pytest.mark.network, pytest.mark.bwrap]


def _wheel(ws: Path, platform: str) -> Path:
    wheels = sorted((ws / "hermetic-out" / platform).rglob("*.whl"))
    assert len(wheels) == 1, (platform, wheels)
    return wheels[0]


def _extension(wheel: Path, tmp_path: Path) -> tuple[str, Path]:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith((".so", ".pyd")))
        out = tmp_path / Path(name).name
        out.write_bytes(zf.read(name))
    return name, out


@pytest.mark.integration
@pytest.mark.linux
@pytest.mark.network
@pytest.mark.bwrap
def test_one_invocation_builds_all_six(all_wheels):
    """Issue 6, 4: `hermetic build //wheel:all` made six wheels; the sources
    were fetched (at most) once in it."""
    log = (all_wheels.parent / "build-all.log").read_text()
    for platform in PLATFORMS.values():
        _wheel(all_wheels, platform)
    for source in ("//recipes/openssl:source", "//recipes/python:cpython-source"):
        assert len(re.findall(rf"done +Fetch {re.escape(source)}\b", log)) <= 1
    assert len(re.findall(r"done +OpenSSLBuild ", log)) <= 5  # the flagship's came from the warm store


@pytest.mark.integration
@pytest.mark.linux
@pytest.mark.parametrize("platform", ["darwin-aarch64", "linux-x86_64-musl", "linux-aarch64-manylinux2014"])
def test_probed_pyconfig_is_complete_for_cross_targets(all_wheels, tmp_path, platform):
    """Every question pyconfig.py asks is answered by the zig target compiler
    too (a probe that cannot compile must not read as "no")."""
    ws = copy_workspace(tmp_path / "ws")
    proc = hermetic_cli("--cache-dir", str(all_wheels.parent / "cache"), "build", "//recipes/python:headers",
                        "--platform", platform, "-o", str(tmp_path / "o"), cwd=ws)
    assert not re.search(r"done +PyHeaders", proc.stderr)  # the wheels' own headers, from the store
    text = next((tmp_path / "o").rglob("pyconfig.h")).read_text()
    for macro in ("SIZEOF_PID_T 4", "SIZEOF_PTHREAD_T 8", "SIZEOF_TIME_T 8", "SIZEOF_VOID_P 8",
                  "ALIGNOF_MAX_ALIGN_T", "HAVE_SSIZE_T 1", "HAVE_FORK 1", "HAVE_UNISTD_H 1"):
        assert f"#define {macro}" in text, (macro, platform)


@pytest.mark.integration
@pytest.mark.linux
@pytest.mark.parametrize(("platform", "policy"), [
    ("linux-x86_64-manylinux2014", "manylinux_2_17_x86_64"),
    ("linux-aarch64-manylinux2014", "manylinux_2_17_aarch64"),
    ("linux-x86_64-musl", "musllinux_1_2_x86_64"),
])
def test_auditwheel_agrees_with_the_linux_tags(all_wheels, platform, policy):
    """Issue 6, 1."""
    wheel = _wheel(all_wheels, platform)
    assert policy.split("_", 1)[0] in wheel.name
    # a musl wheel is audited against musl's libc (Debian's musl package), as on a musl system
    ldpaths = ["--ldpaths", "/usr/lib/x86_64-linux-musl"] if "musl" in platform else []
    if ldpaths and not Path("/usr/lib/x86_64-linux-musl/libc.so").exists():
        pytest.fail("musl is missing: run scripts/setup-debian.sh")
    proc = subprocess.run([sys.executable, "-m", "auditwheel", "show", *ldpaths, str(wheel)], capture_output=True,
                          text=True, check=True)
    text = " ".join(proc.stdout.split())
    assert f'consistent with the following platform tag: "{policy}"' in text, text


@pytest.mark.integration
@pytest.mark.linux
@pytest.mark.network
@pytest.mark.bwrap
def test_the_manylinux_wheel_passed_its_tests_in_the_build(all_wheels, tmp_path):
    wheel = _wheel(all_wheels, "linux-x86_64-manylinux2014")
    assert re.fullmatch(r"hermetic_openssl-0\.1\.0-cp39-abi3-manylinux_2_\d+_x86_64\.manylinux2014_x86_64\.whl",
                        wheel.name), wheel.name
    report = next((all_wheels / "hermetic-out").rglob("linux-x86_64-manylinux2014/**/test-report.txt"))
    assert "tests passed" in report.read_text()


@pytest.mark.integration
@pytest.mark.linux
@pytest.mark.network
@pytest.mark.bwrap
def test_the_aarch64_libcrypto_runs_under_qemu(all_wheels, tmp_path):
    """Issue 6, 2: a program linked against the same aarch64 libcrypto.a
    (the same action key as the wheel's) prints correct digests."""
    qemu = shutil.which("qemu-aarch64")
    sysroot = Path("/usr/aarch64-linux-gnu")
    if qemu is None or not (sysroot / "lib" / "ld-linux-aarch64.so.1").exists():
        pytest.fail("qemu-user and libc6-arm64-cross are missing: run scripts/setup-debian.sh")
    ws = copy_workspace(tmp_path / "ws")
    store = all_wheels.parent / "cache"
    proc = hermetic_cli("--cache-dir", str(store), "build", "//recipes/pyossl:digest-test", "--platform",
                        "linux-aarch64-manylinux2014", "-o", str(tmp_path / "o"), cwd=ws)
    assert not re.search(r"done +OpenSSLBuild", proc.stderr), "the wheel's aarch64 libcrypto was not reused"
    exe = Path(proc.stdout.strip().rsplit(": ", 1)[1])
    assert "ARM aarch64" in subprocess.run(["file", "-L", str(exe)], capture_output=True, text=True).stdout
    run = subprocess.run([qemu, "-L", str(sysroot), str(exe)], capture_output=True, text=True, check=True)
    lines = run.stdout.splitlines()
    assert lines[0].startswith("OpenSSL 3.5.")
    assert 'SHA256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad' in lines
    assert 'SHA3-256("abc") = 3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532' in lines
    assert 'SHA512("") = cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e' in lines


@pytest.mark.integration
@pytest.mark.linux
@pytest.mark.parametrize(("platform", "tag", "fmt", "init"), [
    ("darwin-x86_64", "macosx_11_0_x86_64", "MachO", "_PyInit__binding"),
    ("darwin-aarch64", "macosx_11_0_arm64", "MachO", "_PyInit__binding"),
    ("windows-x86_64", "win_amd64", "PE", "PyInit__binding"),
])
def test_macos_and_windows_wheels(all_wheels, tmp_path, platform, tag, fmt, init):
    """Issue 6, 3: the right tag, a Mach-O / PE module exporting the init
    function and nothing of OpenSSL's, no path of the build machine."""
    import lief

    wheel = _wheel(all_wheels, platform)
    assert wheel.name == f"hermetic_openssl-0.1.0-cp39-abi3-{tag}.whl"
    with zipfile.ZipFile(wheel) as zf:
        assert f"Tag: cp39-abi3-{tag}" in zf.read("hermetic_openssl-0.1.0.dist-info/WHEEL").decode()
    name, ext = _extension(wheel, tmp_path)
    assert name == ("hermetic_openssl/_binding.pyd" if fmt == "PE" else "hermetic_openssl/_binding.abi3.so")
    binary = lief.parse(str(ext))
    assert type(binary).__module__.endswith(fmt)
    if fmt == "MachO":
        exports = {e.symbol.name for e in (binary.dyld_exports_trie.exports if binary.has_dyld_exports_trie
                                           else binary.dyld_info.exports)}
        assert init in exports
        assert exports - {init, "__mh_dylib_header", "___dso_handle"} == set()
        # its own install name (not the sandbox path it was linked at) and libSystem, nothing else
        assert sorted(lib.name for lib in binary.libraries) == ["/usr/lib/libSystem.B.dylib",
                                                                "@rpath/_binding.abi3.so"]
    else:
        exports = {e.name for e in binary.get_export().entries}
        assert exports == {init}
        dlls = {imp.name.lower() for imp in binary.imports}
        assert "python3.dll" in dlls and not any("ssl" in d or "crypto" in d for d in dlls)
    # OpenSSL is inside, statically: its version string, and none of its symbols exported
    data = ext.read_bytes()
    assert b"OpenSSL 3.5." in data
    for target_path in (b"/usr/lib/libSystem.B.dylib", b"/usr/lib/dyld"):  # macOS's own, not the builder's
        data = data.replace(target_path, b"")
    assert machine_paths_in(data, str(all_wheels), str(all_wheels.parent)) == set()


class _SharedGen:
    """A plugin whose rule declares a shared output; with ``vary`` it
    (wrongly) makes the shared action depend on the platform."""

    from hermetic.hookspecs import hookimpl

    @staticmethod
    @hookimpl
    def hermetic_register_rules(registry):
        from hermetic.rules import DefaultInfo, attr

        def impl(ctx):
            out = ctx.declare_output("gen.txt", shared=True)
            arg = str(ctx.platform) if ctx.attr.vary else "same"
            ctx.actions.run(["/bin/sh", "-c", f'echo {arg} > "$OUT/gen.txt"'], outputs=[out], mnemonic="Gen")
            per = ctx.declare_output("per.txt")
            ctx.actions.run(["/bin/cp", out, "$OUT/per.txt"], outputs=[per], mnemonic="Use")
            return [DefaultInfo((per,))]

        registry.rule("shared_gen", attrs={"vary": attr.bool()})(impl)


@pytest.mark.parametrize("vary", [False, True])
def test_shared_actions_are_analysed_once_and_must_agree(tmp_path, vary):
    from hermetic._session import Session
    from hermetic.errors import AnalysisError
    from hermetic.testing import write_workspace

    ws = write_workspace(tmp_path / "ws", {"BUILD.toml": f"""
[workspace]

[gen]
rule = "shared_gen"
vary = {str(vary).lower()}

[mac]
rule = "alias"
actual = ":gen"
platform = "darwin-aarch64"

[win]
rule = "alias"
actual = ":gen"
platform = "windows-x86_64"
"""})
    s = Session(ws, cache_dir=tmp_path / "c", plugins=[_SharedGen])
    labels = s.parse_labels(["//:mac", "//:win"])
    if vary:
        with pytest.raises(AnalysisError, match="shared between platforms"):
            s.analyze(labels)
        return
    analysis, _ = s.analyze(labels)
    ids = sorted(a.id for a in analysis.actions)
    assert ids == ["//:gen#Gen", "//:gen#Use@darwin-aarch64", "//:gen#Use@windows-x86_64"]

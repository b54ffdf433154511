"""The zig toolchain (plugins/zig.py): a pinned ziglang wheel compiles for
platforms other than the host, through wrappers, inside the sandbox."""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import build_counts, hermetic_cli
from hermetic.testing import write_workspace

pytestmark = [pytest.mark.linux]

HELLO = '#include <stdio.h>\nint main(void) { puts("hello from " __FILE__); return 0; }\n'


def _target(name: str, platform: str, cmd: str, out: str) -> str:
    return (f'\n["//:{name}"]\nrule = "genrule"\nplatform = "{platform}"\nsrcs = ["hello.c"]\nouts = ["{out}"]\n'
            f'toolchains = ["cc"]\ncmd = "{cmd}"\n')


def test_the_toolchain_is_a_pinned_fetch_not_an_analysis_side_effect(tmp_path):
    """Analysis (here: aquery) downloads and unpacks nothing: the ziglang
    wheel is a fetch and an unpack action that the actions compiling with it
    wait for, and what the plugin probes is kept in the store it was given."""
    from conftest import copy_workspace
    from hermetic._session import Session
    from plugins.zig import package

    ws = copy_workspace(tmp_path / "ws")
    cache = tmp_path / "cache"
    s = Session(ws, cache_dir=cache)
    acts = {a.id: a.to_json() for a in s.aquery(s.parse_labels(["//wheel:linux-x86_64"]))}
    owner = f"//.toolchains:ziglang-{package().version}"
    fetch, unpack = acts[f"{owner}#FetchToolchain"], acts[f"{owner}#UnpackToolchain"]
    assert fetch["params"]["sha256"] == package().sha256 and fetch["status"] == "would-run"
    assert unpack["kind"] == "extract" and unpack["waits_for"] == [f"FetchToolchain {owner}"]
    build = acts["//recipes/openssl:openssl#OpenSSLBuild@linux-x86_64-manylinux2014"]
    assert f"UnpackToolchain {owner}" in build["waits_for"]
    assert [f for f in (cache / "cas").rglob("*") if f.is_file()] == []  # nothing fetched
    assert not (cache / "trees").exists()  # nothing unpacked
    assert (cache / "toolchains.json").is_file()  # the host tools' probes: in --cache-dir


@pytest.mark.integration
@pytest.mark.network
@pytest.mark.bwrap
def test_cross_compiles_for_other_platforms(tmp_path):
    build = "[workspace]\nsource_date_epoch = 1767225600\n"
    build += _target("manylinux", "linux-x86_64-manylinux2014", "cc -O2 $SRCS -o $OUT/hello", "hello")
    build += _target("musl", "linux-x86_64-musl", "cc -O2 -static $SRCS -o $OUT/hello", "hello")
    build += _target("aarch64", "linux-aarch64", "cc -O2 -c $SRCS -o $OUT/hello.o", "hello.o")
    build += _target("macos", "darwin-aarch64", "cc -O2 -c $SRCS -o $OUT/hello.o", "hello.o")
    build += _target("windows", "windows-x86_64", "cc -O2 $SRCS -o $OUT/hello.exe", "hello.exe")
    build += _target("windows-obj", "windows-x86_64", "cc -O2 -g -c $SRCS -o $OUT/hello.obj", "hello.obj")
    ws = write_workspace(tmp_path / "ws", {"BUILD.toml": build, "hello.c": HELLO})
    cache = str(tmp_path / "cache")
    targets = ["//:manylinux", "//:musl", "//:aarch64", "//:macos", "//:windows", "//:windows-obj"]
    hermetic_cli("--cache-dir", cache, "build", *targets, cwd=ws)
    out = ws / "hermetic-out"
    for name, platform in (("manylinux", "linux-x86_64-manylinux2014"), ("musl", "linux-x86_64-musl"),
                           ("aarch64", "linux-aarch64"), ("macos", "darwin-aarch64"), ("windows", "windows-x86_64"),
                           ("windows-obj", "windows-x86_64")):
        (out / name).symlink_to(out / platform / name)  # each platform's outputs under its own directory

    def kind(path: str) -> str:
        return subprocess.run(["file", "-b", str(out / path)], capture_output=True, text=True, check=True).stdout

    # glibc 2.17 baseline: no symbol version newer than GLIBC_2.17, and it runs here
    exe = out / "manylinux/hello"
    versions = set(re.findall(r"GLIBC_2\.(\d+)", subprocess.run(["objdump", "-T", str(exe)], capture_output=True,
                                                                  text=True, check=True).stdout))
    assert versions and max(int(v) for v in versions) <= 17, versions
    assert subprocess.run([str(exe)], capture_output=True, text=True).stdout == "hello from src/hello.c\n"
    assert "statically linked" in kind("musl/hello") or "static-pie" in kind("musl/hello")
    assert subprocess.run([str(out / "musl/hello")], capture_output=True, text=True).stdout == "hello from src/hello.c\n"
    assert "ARM aarch64" in kind("aarch64/hello.o")
    assert "Mach-O 64-bit" in kind("macos/hello.o") and "arm64" in kind("macos/hello.o")
    assert "PE32+ executable" in kind("windows/hello.exe") and "x86-64" in kind("windows/hello.exe")
    for path in ("manylinux/hello", "musl/hello", "aarch64/hello.o", "macos/hello.o", "windows/hello.exe",
                 "windows-obj/hello.obj"):
        data = (out / path).read_bytes()
        assert b"/hermetic/" not in data and str(tmp_path).encode() not in data, path
    # CodeView keeps neither the compiler's command line nor zig's random temporary object name
    obj = (out / "windows-obj/hello.obj").read_bytes()
    assert b"-cc1" not in obj and b"hello.obj" in obj and b"-hello.obj" not in obj

    # the toolchain's identity (version + wheel digest) is in the keys: a cached rebuild runs nothing
    again = hermetic_cli("--cache-dir", cache, "build", *targets, cwd=ws)
    assert build_counts(again.stderr)[1] == 0


def test_openssl_configure_target_is_one_shell_word(tmp_path):
    """A Configure target with spaces, ; or # stays one argument (it was
    pasted into the script unquoted)."""
    import shlex

    from conftest import copy_workspace
    from hermetic._session import Session

    ws = copy_workspace(tmp_path / "ws")
    hostile = "linux-x86_64; touch /tmp/pwned #"
    with open(ws / "recipes/openssl/BUILD.toml", "a") as f:
        f.write(f'\n[hostile]\nrule = "openssl"\nsrc = ":source"\ntarget = "{hostile}"\n')
    s = Session(ws, cache_dir=tmp_path / "cache")
    acts = s.aquery(s.parse_labels(["//recipes/openssl:hostile"]))
    build = next(a for a in acts if a.mnemonic == "OpenSSLBuild")
    script = shlex.split(build.command)[2]  # /bin/sh -c SCRIPT
    configure = next(line for line in script.splitlines() if "/Configure" in line and "--prefix" in line)
    assert shlex.split(configure)[2] == hostile

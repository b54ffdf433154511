"""verify's own difference summary (used when diffoscope is not installed)
and the toolchain wrappers that make C outputs deterministic."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from hermetic._diff import describe
from plugins.linux import _gcc_wrappers


def _zip(members: dict[str, bytes], date=(2026, 1, 1, 0, 0, 0)) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, date), data)
    return buf.getvalue()


def _ar(members: list[tuple[str, bytes, int]]) -> bytes:
    out = b"!<arch>\n"
    for name, data, mtime in members:
        out += f"{name + '/':<16}{mtime:<12}{0:<6}{0:<6}{644:<8}{len(data):<10}`\n".encode() + data
        if len(data) % 2:
            out += b"\n"
    return out


def test_identical_bytes_have_no_description():
    assert describe("x", b"same", b"same") == []


def test_text_gets_a_unified_diff():
    lines = describe("build-info.txt", b"a\nbuilt at 10:00\nc\n", b"a\nbuilt at 10:01\nc\n")
    assert lines[0] == "build-info.txt: text differs"
    assert "  -built at 10:00" in lines and "  +built at 10:01" in lines


def test_zip_names_the_member_and_its_metadata():
    a = _zip({"pkg/__init__.py": b"x = 1\n", "pkg/mod.so": b"\0ELF" + b"A" * 64})
    b = _zip({"pkg/__init__.py": b"x = 1\n", "pkg/mod.so": b"\0ELF" + b"A" * 30 + b"B" + b"A" * 33,
              "pkg/extra.txt": b""}, date=(2026, 11, 21, 12, 0, 0))
    text = "\n".join(describe("w.whl", a, b))
    assert "w.whl: archive members differ" in text
    assert "only in rebuilt: pkg/extra.txt" in text
    assert "pkg/__init__.py: metadata time=(2026, 1, 1, 0, 0, 0)" in text
    assert "pkg/mod.so: binary differs" in text and "0x00000022-0x00000023: 41 -> 42" in text


def test_tar_members_show_mtime_and_owner():
    def tar(mtime: int, uid: int) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            info = tarfile.TarInfo("src/a.c")
            info.size, info.mtime, info.uid = 3, mtime, uid
            t.addfile(info, io.BytesIO(b"int"))
        return buf.getvalue()

    text = "\n".join(describe("src.tar", tar(0, 0), tar(1767225600, 1000)))
    assert "src/a.c: metadata mtime=0 uid=0" in text and "mtime=1767225600 uid=1000" in text


def test_static_library_members_and_their_strings():
    a = _ar([("a.o", b"\x7fELF\0\0 /hermetic/in/x.c compiled", 0), ("b.o", b"same", 0)])
    b = _ar([("a.o", b"\x7fELF\0\0 /build/other/x.c compiled", 0), ("b.o", b"same", 1767225600)])
    text = "\n".join(describe("libx.a", a, b))
    assert "libx.a: archive members differ" in text
    assert "b.o: metadata mtime=0" in text and "mtime=1767225600" in text
    assert "a.o: binary differs" in text
    assert "-  /hermetic/in/x.c compiled" in text and "+  /build/other/x.c compiled" in text


def test_binary_ranges_are_capped():
    a = bytes(range(256)) * 64
    b = bytearray(a)
    for i in range(0, len(b), 97):
        b[i] ^= 0xFF
    lines = describe("blob", a, bytes(b))
    assert "differing byte range(s), first 8:" in lines[1]
    assert len([x for x in lines if x.startswith("    0x")]) == 8


# -- wrappers -----------------------------------------------------------------

def _fake_tool(tmp_path: Path) -> str:
    """A stand-in for the real binary that prints the arguments it got."""
    fake = tmp_path / "fake-tool"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$*"\n')
    fake.chmod(0o755)
    return str(fake)


def _run_wrapper(script: str, args: list[str], env: dict[str, str], tmp_path: Path) -> str:
    w = tmp_path / "wrapper"
    w.write_text(script)
    w.chmod(0o755)
    return subprocess.run([str(w), *args], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_cc_wrapper_maps_every_action_directory(tmp_path):
    script = _gcc_wrappers({"cc": _fake_tool(tmp_path)})["cc"]
    out = _run_wrapper(script, ["-c", "x.c"], {"IN": "/b/in", "OUT": "/b/out", "WORK": "/b/work"}, tmp_path)
    assert out == "-ffile-prefix-map=/b/in/= -ffile-prefix-map=/b/work/= -ffile-prefix-map=/b/out/= -c x.c"
    assert _run_wrapper(script, ["-v"], {}, tmp_path) == "-v"


@pytest.mark.parametrize(("args", "expected"), [
    (["r", "lib.a", "x.o"], "rD lib.a x.o"),
    (["-rcs", "lib.a"], "-rcsD lib.a"),
    (["rU", "lib.a"], "rU lib.a"),  # the caller asked for real timestamps: say so, do not override
    (["--version"], "--version"),
])
def test_ar_wrapper_makes_archives_deterministic(tmp_path, args, expected):
    assert _run_wrapper(_gcc_wrappers({"ar": _fake_tool(tmp_path)})["ar"], args, {}, tmp_path) == expected


@pytest.mark.linux
def test_real_compile_through_the_wrapper_has_no_directory_in_it(tmp_path):
    gcc = "/usr/bin/gcc"
    if not os.path.exists(gcc):
        pytest.fail("gcc is needed (scripts/setup-debian.sh installs it)")
    src = tmp_path / "in" / "pkg" / "a.c"
    src.parent.mkdir(parents=True)
    src.write_text('#include <assert.h>\nconst char *where(void) { return __FILE__; }\n'
                   'int f(int x) { assert(x); return x; }\n')
    w = tmp_path / "gcc"
    w.write_text(_gcc_wrappers({"cc": gcc})["cc"])
    w.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "IN": str(tmp_path / "in"), "WORK": str(tmp_path), "OUT": str(tmp_path)}
    subprocess.run([str(w), "-g", "-O2", "-c", str(src), "-o", str(tmp_path / "a.o")], env=env, check=True)
    data = (tmp_path / "a.o").read_bytes()
    assert str(tmp_path).encode() not in data
    assert b"pkg/a.c" in data

"""The openssl rule for every release line a package may need: 1.1.1, 3.0
(LTS) and 3.5 (LTS, the flagship's: tests/test_flagship.py), each from its
pinned, signature-checked tarball into static libraries a C program links.

1.1.1 is built as the wheels use it (zig, manylinux2014) on the suite's warm
store, where cryptography's wheel and CPython 3.9 need the same action: one
build for the three. 3.0 is built with the host's compiler (the default
platform), into a store of its own: no other test uses it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import copy_workspace, hermetic_cli
from hermetic.testing import write_workspace

LINES = {"1.1.1": "OpenSSL 1.1.1w  11 Sep 2023", "3.0": "OpenSSL 3.0.20 7 Apr 2026"}
PLATFORM = {"1.1.1": "linux-x86_64-manylinux2014", "3.0": None}

PROGRAM = r"""
#include <stdio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
int main(void) {
    unsigned char md[32]; unsigned int n = 0;
    EVP_Digest("abc", 3, md, &n, EVP_sha256(), NULL);
    printf("%s|%02x%02x%02x%02x|%u\n", OpenSSL_version(OPENSSL_VERSION), md[0], md[1], md[2], md[3], n);
    return 0;
}
"""


def _command(ws: Path, store: Path, target: str) -> str:
    acts = json.loads(hermetic_cli("--cache-dir", str(store), "aquery", target, "--mnemonic", "OpenSSLBuild",
                                   "--output", "json", cwd=ws).stdout)
    (a,) = acts
    return a["command"]


@pytest.mark.integration
@pytest.mark.linux
@pytest.mark.bwrap
@pytest.mark.network
@pytest.mark.parametrize("line", sorted(LINES))
def test_openssl_release_line_builds_static_libraries(tmp_path, line, request):
    ws = copy_workspace(tmp_path / "ws")
    platform = PLATFORM[line]
    store = request.getfixturevalue("warm_store") if platform else tmp_path / "store"
    target = f"//recipes/openssl:openssl-{line}"
    where = ["--platform", platform] if platform else []
    acts = json.loads(hermetic_cli("--cache-dir", str(store), "aquery", target, *where, "--mnemonic",
                                   "OpenSSLBuild", "--output", "json", cwd=ws).stdout)
    (a,) = acts
    command = a["command"]
    # every word of Configure's line is quoted; no-docs only where Configure knows it
    assert "DOCS=no-docs" in command and "$DOCS" in command
    hermetic_cli("--cache-dir", str(store), "build", target, *where, "-o", str(tmp_path / "out"), cwd=ws)
    (lib,) = (tmp_path / "out").rglob("openssl-" + line + "/lib")
    inc = lib.parent / "include"
    assert (lib / "libcrypto.a").stat().st_size > 1_000_000 and (lib / "libssl.a").is_file()
    # a C program links the static libraries (with what Configure said they need) and runs
    src = tmp_path / "v.c"
    src.write_text(PROGRAM)
    flags = (lib / "link-flags.rsp").read_text().split()
    exe = tmp_path / "v"
    cc = shutil.which("cc") or "gcc"
    subprocess.run([cc, "-o", str(exe), str(src), f"-I{inc}", str(lib / "libssl.a"), str(lib / "libcrypto.a"),
                    *flags], check=True, capture_output=True)
    version, md, n = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.strip().split("|")
    assert version == LINES[line]
    assert (md, n) == ("ba7816bf", "32")  # sha256("abc")


BUILD = """
["src"]
rule = "filegroup"
srcs = ["Configure"]

["lib"]
rule = "openssl"
src = "//recipes/openssl:source"
version = "3.5.7"
remove_options = ["no-tests", "-fPIC"]
options = ["no-asm", "enable-ec_nistp_64_gcc_128", "--with-rand-seed=os", "it's \\"quoted\\""]

["bad"]
rule = "openssl"
src = "//recipes/openssl:source"
remove_options = ["no-such-default"]
"""


@pytest.mark.linux
def test_options_are_quoted_and_defaults_can_be_removed(tmp_path):
    ws = copy_workspace(tmp_path / "ws")
    write_workspace(ws / "mine", {"BUILD.toml": BUILD, "Configure": "#!/bin/sh\n"})
    store = tmp_path / "store"
    command = _command(ws, store, "//mine:lib")
    configure = next(line for line in command.splitlines() if "Configure" in line and "--prefix" in line)
    assert " no-shared $DOCS no-asm enable-ec_nistp_64_gcc_128 --with-rand-seed=os " in configure
    assert "no-tests" not in configure and "-fPIC" not in configure
    assert "'\"'\"'" in configure  # the apostrophe, shell-quoted
    bad = hermetic_cli("--cache-dir", str(store), "aquery", "//mine:bad", cwd=ws, check=False)
    assert bad.returncode == 3
    assert "no-such-default" in bad.stderr and "mine/BUILD.toml" in bad.stderr
    assert "the defaults are no-shared, no-tests, no-docs, -fPIC" in bad.stderr

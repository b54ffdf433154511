"""configure_make's command: the libraries it builds against (deps) reach
configure as flags and as pkg-config files that hide the host's; default
options can be removed for a configure script that rejects them."""

from __future__ import annotations

import json

import pytest
from conftest import copy_workspace, hermetic_cli

from hermetic.testing import write_workspace

pytestmark = [pytest.mark.linux]

BUILD = """
["src"]
rule = "archive"
filename = "x-1.0.tar.gz"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
urls = ["file:///nonexistent/x-1.0.tar.gz"]

["lib"]
rule = "configure_make"
src = ":src"
static_libs = ["libx.a"]
version = "1.0"
deps = ["//recipes/openssl:openssl"]
remove_options = ["--disable-shared", "--enable-static", "--with-pic"]
configure_options = ["--static"]
make_targets = ["libx.a"]

["bad"]
rule = "configure_make"
src = ":src"
static_libs = ["libx.a"]
remove_options = ["--prefix"]
"""


def test_deps_and_removed_options_in_the_command(tmp_path):
    ws = copy_workspace(tmp_path / "ws")
    write_workspace(ws / "mine", {"BUILD.toml": BUILD})
    store = tmp_path / "store"
    (act,) = json.loads(hermetic_cli("--cache-dir", str(store), "aquery", "//mine:lib", "--mnemonic",
                                     "ConfigureMake", "--output", "json", cwd=ws).stdout)
    cmd = act["command"]
    # pkg-config sees the files written for the deps, and nothing of the host's
    assert 'export PKG_CONFIG_LIBDIR="$WORK/pkgconfig" PKG_CONFIG_PATH=' in cmd
    for pc in ("libssl.pc", "libcrypto.pc", "openssl.pc"):
        assert f'"$WORK/pkgconfig/{pc}"' in cmd
    assert "-I$IN/out/recipes/openssl/openssl/include" in cmd and "-L$IN/out/recipes/openssl/openssl/lib" in cmd
    assert "link-flags.rsp" in cmd  # what the static libcrypto also needs, in LIBS
    configure = next(ln for ln in cmd.splitlines() if "/configure" in ln)
    assert " --static " in configure and "--disable-shared" not in configure and "--with-pic" not in configure
    assert '"$MAKE" -j"$HERMETIC_JOBS" libx.a ' in cmd
    # the deps' outputs are inputs (their digests are in the key)
    assert any(i["path"].endswith("openssl/lib/libcrypto.a") for i in act["inputs"])
    bad = hermetic_cli("--cache-dir", str(store), "aquery", "//mine:bad", cwd=ws, check=False)
    assert bad.returncode == 3
    assert "mine/BUILD.toml" in bad.stderr and "--prefix is not a default option" in bad.stderr

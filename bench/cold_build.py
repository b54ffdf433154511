"""A cold hermetic build of the flagship next to the same sources built the
plain way, in the same run, on the same machine.

    .venv/bin/python bench/cold_build.py

Both start from the pinned OpenSSL tarball on local disk (hermetic through
--distdir, with an empty store; the plain way with `tar xzf`):

- plain: the pinned ziglang installed into a venv with pip (the compiler
  is a 101 MB wheel of 19,500 files, which hermetic fetches and unpacks
  into its store), `./Configure linux-x86_64 no-shared no-tests no-docs
  -fPIC`, `make -j<cores> build_libs`, then the cffi extension and the
  wheel with `pip wheel --no-build-isolation` (setuptools + cffi
  preinstalled in the venv, not timed), all compiled with the compiler
  hermetic uses for this target (zig cc -target x86_64-linux-gnu.2.17);
- hermetic: `hermetic build //wheel:linux-x86_64` (which also installs the
  wheel in a fresh venv and runs its tests: the plain way does not).

Runs both --runs times (default 3), alternating, each into fresh
directories (an empty store and a fresh zig cache for hermetic; a fresh
source tree, venv and zig cache for the plain way), and prints each pair,
then the ratio's median, min and max (goal: median <= 1.05). Both sides
start without the compiler; the ratio against a plain build that had zig
installed already (its install not counted, hermetic's fetch and unpack
counted) is printed beside it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = "//wheel:linux-x86_64"


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def pinned_sources(tmp: Path) -> Path:
    """The pinned tarball and its signature, fetched through hermetic once."""
    from hermetic._cache import Store, default_cache_dir

    pins = tomllib.loads((REPO / "recipes/openssl/BUILD.toml").read_text())["source"]
    run([sys.executable, "-m", "hermetic", "build", "//recipes/openssl:source"], REPO)
    store = Store(default_cache_dir())
    distdir = tmp / "distdir"
    distdir.mkdir()
    shutil.copyfile(store.blob_path(pins["sha256"]), distdir / pins["filename"])
    # the detached signature is checked, not stored: get it the way the recipe's mirror does
    spec, _, name = pins["signature"]["mirrors"][0].removeprefix("apt-source:").partition("/")
    apt = tmp / "apt"
    apt.mkdir()
    run(["apt-get", "source", "--download-only", "-q", spec], apt)
    shutil.copyfile(apt / name, distdir / pins["signature"]["filename"])
    # CPython's source (for the target's C API headers): hermetic needs it, the plain way uses the
    # host's headers; put it beside the tarball so neither measures a download
    cpy = tomllib.loads((REPO / "recipes/python/BUILD.toml").read_text())["cpython-source"]
    run([sys.executable, "-m", "hermetic", "build", "//recipes/python:cpython-source"], REPO)
    shutil.copyfile(store.blob_path(cpy["sha256"]), distdir / cpy["filename"])
    spec, _, name = cpy["signature"]["mirrors"][0].removeprefix("apt-source:").partition("/")
    run(["apt-get", "source", "--download-only", "-q", spec], apt)
    shutil.copyfile(apt / name, distdir / cpy["signature"]["filename"])
    return distdir / pins["filename"]


SETUP = """
from setuptools import setup
setup(name="hermetic-openssl", version="0.1.0", packages=["hermetic_openssl"],
      cffi_modules=["build_ffi.py:ffi"], install_requires=["cffi>=2.0"])
"""

BUILD_FFI = """
import cffi, os
here = os.path.dirname(os.path.abspath(__file__))
ossl = os.environ["OPENSSL_BUILD"]
ffi = cffi.FFI()
ffi.cdef(open(os.path.join(here, "cdef.h")).read())
ffi.set_source("hermetic_openssl._binding", open(os.path.join(here, "binding.c")).read(),
               include_dirs=[os.path.join(ossl, "include"), os.path.join(os.environ["OPENSSL_SRC"], "include")],
               extra_objects=[os.path.join(ossl, "libssl.a"), os.path.join(ossl, "libcrypto.a")])
"""


def plain(tarball: Path, tmp: Path) -> tuple[float, float]:
    """Seconds of the whole plain build and of its zig install in it."""
    venv = tmp / "plain-venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp)
    from plugins.zig import VERSION

    # not timed: the Python build tools
    run([str(venv / "bin/pip"), "install", "-q", "setuptools", "wheel", "cffi>=2.0"], tmp)
    t0 = time.perf_counter()
    # zig, the release hermetic pins, from pip's cache as hermetic's fetch gets it
    run([str(venv / "bin/pip"), "install", "-q", "--no-deps", f"ziglang=={VERSION}"], tmp)
    t_zig = time.perf_counter() - t0
    proj = tmp / "project"
    shutil.copytree(REPO / "recipes/pyossl/hermetic_openssl", proj / "hermetic_openssl")
    for f in ("cdef.h", "binding.c"):
        shutil.copyfile(REPO / "recipes/pyossl" / f, proj / f)
    (proj / "setup.py").write_text(SETUP)
    (proj / "build_ffi.py").write_text(BUILD_FFI)
    jobs = str(os.cpu_count() or 1)
    zig = next(venv.glob("lib/python*/site-packages/ziglang/zig"))
    cc = f"{zig} cc -target x86_64-linux-gnu.2.17"
    run(["tar", "xzf", str(tarball)], tmp)
    src = tmp / tarball.name.removesuffix(".tar.gz")
    zig_env = {**os.environ, "CC": cc, "AR": cc.replace(" cc -target x86_64-linux-gnu.2.17", " ar"),
               "RANLIB": cc.replace(" cc -target x86_64-linux-gnu.2.17", " ranlib"),
               # cold as hermetic's store is: zig's libc stubs and compiler-rt built once, in this run
               "ZIG_GLOBAL_CACHE_DIR": str(tmp / "zig-cache")}
    run(["./Configure", "linux-x86_64", "no-shared", "no-tests", "no-docs", "-fPIC"], src, zig_env)
    run(["make", f"-j{jobs}", "build_libs"], src, zig_env)
    # the host's Python headers (Debian's multiarch pyconfig.h lives under /usr/include, which zig does
    # not search by default); hermetic uses CPython's pinned headers instead
    env = {**zig_env, "OPENSSL_BUILD": str(src), "OPENSSL_SRC": str(src), "LDSHARED": f"{cc} -shared",
           "CFLAGS": "-idirafter /usr/include"}
    run([str(venv / "bin/pip"), "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), "."],
        proj, env)
    took = time.perf_counter() - t0
    wheels = list((tmp / "dist").glob("*.whl"))
    assert wheels, "pip made no wheel"
    return took, t_zig


def hermetic(distdir: Path, tmp: Path) -> float:
    t0 = time.perf_counter()
    run([sys.executable, "-m", "hermetic", "--cache-dir", str(tmp / "empty-store"), "build", TARGET,
         "--distdir", str(distdir), "-o", str(tmp / "out")], REPO)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hermetic-bench-cold-") as tmp_s:
        tmp = Path(tmp_s)
        tarball = pinned_sources(tmp)
        print(f"machine: {os.cpu_count()} cores; OpenSSL {tarball.name}; {args.runs} run(s), alternating")
        ratios, installed = [], []
        for i in range(args.runs):
            run_dir = tmp / f"run{i}"
            run_dir.mkdir()
            t_plain, t_zig = plain(tarball, run_dir)
            t_herm = hermetic(tarball.parent, run_dir)
            ratios.append(t_herm / t_plain)
            installed.append(t_herm / (t_plain - t_zig))
            print(f"run {i + 1}: plain (pip install ziglang {t_zig:.1f} s, tar, Configure, make build_libs, "
                  f"pip wheel) {t_plain:6.1f} s, hermetic cold build (+ wheel test in a fresh venv) "
                  f"{t_herm:6.1f} s, ratio {ratios[-1]:.3f} ({installed[-1]:.3f} against plain with zig installed)")
            shutil.rmtree(run_dir, ignore_errors=True)
        print(f"ratio hermetic/plain over {len(ratios)} run(s): median {statistics.median(ratios):.3f}, "
              f"min {min(ratios):.3f}, max {max(ratios):.3f}   goal: median <= 1.05")
        print(f"against a plain build with zig already installed: median {statistics.median(installed):.3f}, "
              f"min {min(installed):.3f}, max {max(installed):.3f}")


if __name__ == "__main__":
    main()

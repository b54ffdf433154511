"""Linux: the host platform, the host gcc and Python toolchains
(fingerprinted), and the bubblewrap sandbox."""

from __future__ import annotations

import json
import os
import platform as pyplatform
import select
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from hermetic.conventions import CcConventions, Exports, ExtensionConventions, PythonConventions
from hermetic.hookspecs import hookimpl
from hermetic.model import Platform, Toolchain
from hermetic.sandbox import (UMASK, Completed, Layout, SandboxConfig, SandboxRequest, Variation,
                              faketime_environment, run_process)
from hermetic.toolchain import file_sha256, probe_cached, run_probe

_ARCH = {"amd64": "x86_64", "x86_64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def _host() -> Platform:
    libc = "glibc" if os.confstr("CS_GNU_LIBC_VERSION") else "musl"
    return Platform("linux", _ARCH.get(pyplatform.machine().lower(), pyplatform.machine().lower()), libc)


@hookimpl
def hermetic_host_platform() -> Platform | None:
    if sys.platform != "linux":
        return None
    return _host()


# The extension-module conventions for Linux targets (any libc, any host):
# an ELF shared object named *.abi3.so, exporting only PyInit_<name> (a
# version script: works with GNU ld and with zig's lld, unlike
# --exclude-libs), full RELRO, a build id from the content.
def _pyext(target: Platform) -> ExtensionConventions:
    # PEP 656: musllinux modules need musl by its loader-visible name
    renames = {"libc.so": f"libc.musl-{target.arch}.so.1"} if target.libc == "musl" else {}
    return ExtensionConventions(
        os="linux", binary_format="elf", ext_suffix=".abi3.so", pyconfig="generate",
        link_flags=("-shared", "-Wl,-z,relro,-z,now", "-Wl,--build-id=sha1"), exports=Exports.VERSION_SCRIPT,
        wheel_platform="linux", needed_renames=renames)


#: OpenSSL's ./Configure targets for Linux, by CPU
OPENSSL_TARGETS = {"x86_64": "linux-x86_64", "aarch64": "linux-aarch64"}


@hookimpl
def hermetic_toolchain(kind: str, target: Platform, host: Platform, cache_dir: Path) -> Toolchain | None:
    if kind == "pyext" and target.os == "linux":
        info = _pyext(target)
        identity = {"conventions": "linux-1", "libc": target.libc,
                    "needed_renames": str(sorted(info.needed_renames.items()))}
        return Toolchain("pyext", {}, identity, info=info, hermetic=True)
    if kind == "emulator" and host.os == "linux" and target.os == "linux" and target.arch != host.arch:
        return _qemu(target, cache_dir)
    if host.os != "linux" or target != host:
        return None  # cross toolchains are other plugins' business
    if kind == "cc":
        return _gcc(cache_dir)
    if kind == "python":
        return _python(cache_dir)
    if kind == "make":
        return _make(cache_dir)
    return None


# -- gcc -----------------------------------------------------------------------


def _which(name: str) -> str | None:
    return shutil.which(name, path="/usr/local/bin:/usr/bin:/bin")


def _gcc(cache_dir: Path) -> Toolchain | None:
    cc = _which("gcc")
    if cc is None:
        return None
    tools = {"cc": cc}
    for t in ("ar", "ranlib", "nm", "ld", "make", "perl", "strip"):
        p = _which(t)
        if p:
            tools[t] = p
    real = [os.path.realpath(p) for p in tools.values()]

    def probe() -> dict[str, Any]:
        cc1 = run_probe([cc, "-print-prog-name=cc1"])
        as_ = run_probe([cc, "-print-prog-name=as"])
        as_path = as_ if os.path.isabs(as_) else (_which(as_) or as_)
        identity = {f"sha256:{Path(p).name}": file_sha256(p) for p in real}
        for extra in (cc1, as_path):
            if os.path.isfile(extra):
                identity[f"sha256:{Path(extra).name}"] = file_sha256(os.path.realpath(extra))
        identity["version:cc"] = run_probe([cc, "--version"]).splitlines()[0]
        identity["machine:cc"] = run_probe([cc, "-dumpmachine"])
        if "ld" in tools:
            identity["version:ld"] = run_probe([tools["ld"], "--version"]).splitlines()[0]
        if "perl" in tools:
            identity["version:perl"] = run_probe([tools["perl"], "-e", "print $^V"])
        if "make" in tools:
            identity["version:make"] = run_probe([tools["make"], "--version"]).splitlines()[0]
        return {"identity": identity, "triple": identity["machine:cc"]}

    data = probe_cached("linux-gcc", real, probe, cache_dir=cache_dir)
    host = _host()
    info = CcConventions(triple=data["triple"], family="gcc", openssl_target=OPENSSL_TARGETS.get(host.arch, ""))
    return Toolchain("cc", tools, data["identity"], mounts=(), info=info,
                     wrappers=_gcc_wrappers(tools))


# The compiler wrapper maps the action's directories (wherever the sandbox put
# them) to relative paths in __FILE__, debug info and .file symbols. It is a
# wrapper, not CFLAGS, so OpenSSL's recorded "compiler:" line stays free of it.
_CC_WRAPPER = """#!/bin/sh
# hermetic: {name} with the action's directories mapped away
exec {path} ${{IN:+"-ffile-prefix-map=$IN/="}} ${{WORK:+"-ffile-prefix-map=$WORK/="}} \
  ${{OUT:+"-ffile-prefix-map=$OUT/="}} "$@"
"""

# ar: add the D modifier (zero timestamps, uids, gids; mode 644) to the
# operation letters, so archives are deterministic whatever binutils defaults to.
_AR_WRAPPER = """#!/bin/sh
# hermetic: deterministic {name}
case "$1" in
  -*[!a-zA-Z]*|*U*) ;;
  -[a-zA-Z]*|[a-zA-Z]*) op="$1"; shift; set -- "${{op}}D" "$@" ;;
esac
exec {path} "$@"
"""

_RANLIB_WRAPPER = """#!/bin/sh
# hermetic: deterministic {name}
exec {path} -D "$@"
"""


def _gcc_wrappers(tools: dict[str, str]) -> dict[str, str]:
    wrappers = {}
    for name, template in (("cc", _CC_WRAPPER), ("ar", _AR_WRAPPER), ("ranlib", _RANLIB_WRAPPER)):
        if name in tools:
            wrappers[name] = template.format(name=Path(tools[name]).name, path=tools[name])
    return wrappers


def _make(cache_dir: Path) -> Toolchain | None:
    """make and perl: build tools an action runs on the host (OpenSSL's
    Configure and Makefile), whichever compiler it drives."""
    tools = {t: p for t in ("make", "perl") if (p := _which(t))}
    if len(tools) < 2:
        return None
    real = [os.path.realpath(p) for p in tools.values()]

    def probe() -> dict[str, Any]:
        identity = {f"sha256:{Path(p).name}": file_sha256(p) for p in real}
        identity["version:make"] = run_probe([tools["make"], "--version"]).splitlines()[0]
        identity["version:perl"] = run_probe([tools["perl"], "-e", "print $^V"])
        return identity

    return Toolchain("make", tools, probe_cached("linux-make", real, probe, cache_dir=cache_dir), hermetic=False)


# -- qemu-user -------------------------------------------------------------------

#: Debian's cross C libraries (libc6-<arch>-cross): the dynamic loader and libc a
#: glibc program of that CPU finds under qemu-user
_SYSROOTS = {"aarch64": "/usr/aarch64-linux-gnu"}


def _qemu(target: Platform, cache_dir: Path) -> Toolchain | None:
    """qemu-user and a sysroot: how a program built for *target* runs here
    (tests of another CPU's wheels). ``tools["run"]`` is the argv prefix; the
    emulator's and the sysroot libc's digests are its identity."""
    qemu = _which(f"qemu-{target.arch}")
    sysroot = _SYSROOTS.get(target.arch)
    if qemu is None or sysroot is None or target.libc == "musl":
        return None
    libc = Path(sysroot) / "lib" / "libc.so.6"
    if not libc.is_file():
        return None
    real = [os.path.realpath(qemu), os.path.realpath(libc)]

    def probe() -> dict[str, Any]:
        return {f"sha256:{Path(p).name}": file_sha256(p) for p in real} | {
            "version:qemu": run_probe([qemu, "--version"]).splitlines()[0]}

    identity = probe_cached(f"linux-qemu-{target.arch}", real, probe, cache_dir=cache_dir)
    return Toolchain("emulator", {"qemu": qemu}, identity | {"sysroot": sysroot}, hermetic=False,
                     wrappers={"qemu": f'#!/bin/sh\n# hermetic: qemu-user for {target.arch}, glibc from {sysroot}\n'
                                       f'exec {qemu} -L {sysroot} "$@"\n'})


# -- python --------------------------------------------------------------------

_PY_PROBE = r"""
import json, sys, sysconfig
v = sys.version_info
print(json.dumps({
  "version": "%d.%d.%d" % v[:3],
  "tag": "cp%d%d" % v[:2],
  "soabi": sysconfig.get_config_var("SOABI"),
  "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
  "include": sysconfig.get_paths()["include"],
  "prefix": sys.base_prefix,
  "shared": bool(sysconfig.get_config_var("Py_ENABLE_SHARED")),
  "libdir": sysconfig.get_config_var("LIBDIR"),
  "ldlibrary": sysconfig.get_config_var("LDLIBRARY"),
}))
"""


def _python(cache_dir: Path) -> Toolchain | None:
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    if not os.path.isfile(exe):
        return None

    def probe() -> dict[str, Any]:
        import json

        out = subprocess.run([exe, "-I", "-c", _PY_PROBE], capture_output=True, text=True, check=True,
                             env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}).stdout
        info = json.loads(out)
        identity = {"sha256:python": file_sha256(exe), "version": info["version"], "soabi": info["soabi"]}
        pyconfig = Path(info["include"]) / "pyconfig.h"
        if pyconfig.is_file():
            identity["sha256:pyconfig.h"] = file_sha256(pyconfig)
        if info["shared"]:
            lib = Path(info["libdir"]) / info["ldlibrary"]
            if lib.is_file():
                identity["sha256:libpython"] = file_sha256(os.path.realpath(lib))
        return {"identity": identity, "info": info}

    data = probe_cached("linux-python", [exe], probe, cache_dir=cache_dir)
    info = data["info"]
    mounts = () if info["prefix"].startswith("/usr/") else (info["prefix"],)
    conventions = PythonConventions(version=info["version"], tag=info["tag"], soabi=info["soabi"] or "",
                                    ext_suffix=info["ext_suffix"] or "")
    return Toolchain("python", {"python": exe}, data["identity"], mounts=mounts, info=conventions)


# -- bubblewrap ------------------------------------------------------------------

ROOT = "/hermetic"
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
_ETC = ("/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/passwd",
        "/etc/group", "/etc/perl", "/etc/localtime-none")


class BwrapSandbox:
    """Actions run in fresh namespaces (user where possible, mount, pid, net,
    ipc, uts, cgroup): only /usr and a few /etc files of the host are visible,
    read-only; inputs read-only at /hermetic/in; outputs and scratch private at
    /hermetic/out and /hermetic/work; /tmp and $HOME are empty tmpfs; the
    network namespace has no interface but a downed loopback; every process
    dies with the action."""

    name = "bwrap"
    varies = frozenset({"root", "uid", "gid", "hostname", "clock_offset"})

    def __init__(self, bwrap: str, version: str) -> None:
        self.bwrap = bwrap
        self.version = version

    def profile(self) -> dict[str, Any]:
        return {"name": "bwrap", "version": self.version, "root": ROOT,
                "enforces": ["no-network", "read-only-inputs", "fixed-paths", "private-dirs", "clear-env",
                             "no-home", "pid-namespace", "kill-on-exit", "umask", "hostname"],
                "system": list(_SYSTEM_DIRS) + ["/usr"] + list(_ETC)}

    def layout(self, req_dirs: tuple[Path, Path, Path], variation: Variation | None = None) -> Layout:
        root = variation.root if variation else ROOT
        return Layout(f"{root}/in", f"{root}/out", f"{root}/work", f"{root}/home", "/tmp")

    def command(self, request: SandboxRequest) -> list[str]:
        v = request.variation
        root = v.root if v else ROOT
        argv = [self.bwrap]
        if v is None:
            argv += ["--unshare-user-try"]
        else:  # a user namespace is needed to appear as another uid
            argv += ["--unshare-user", "--uid", str(v.uid), "--gid", str(v.gid)]
        argv += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                 "--hostname", v.hostname if v else "hermetic", "--die-with-parent", "--new-session",
                 "--ro-bind", "/usr", "/usr"]
        for d in _SYSTEM_DIRS:
            if os.path.islink(d):
                argv += ["--symlink", os.readlink(d), d]
            elif os.path.isdir(d):
                argv += ["--ro-bind", d, d]
        for e in _ETC:
            argv += ["--ro-bind-try", e, e]
        argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", f"{root}/home",
                 "--ro-bind", str(request.inputs), f"{root}/in",
                 "--bind", str(request.outputs), f"{root}/out",
                 "--bind", str(request.work), f"{root}/work"]
        for m in request.mounts:
            argv += ["--ro-bind", m, m]
        for host_dir, inside in request.binds:
            argv += ["--ro-bind", host_dir, inside]
        argv += ["--chdir", f"{root}/work", "--clearenv"]
        env = dict(request.env)
        if v is not None:
            env.update(faketime_environment(v.clock_offset))
        for k, val in sorted(env.items()):
            argv += ["--setenv", k, val]
        return argv + ["--", *request.argv]

    def run(self, request: SandboxRequest) -> Completed:
        # Same process group as hermetic: Ctrl-C reaches bwrap, and
        # --die-with-parent plus the pid namespace take the whole action down.
        # bwrap returns the command's exit status as soon as the command
        # exits; the namespace's init dies after it (its parent-death
        # signal), killing what is left. Waiting for that init makes "every
        # process dies with the action" hold when run() returns, before the
        # outputs are hashed.
        v = request.variation
        argv = self.command(request)
        read_end, write_end = os.pipe()
        try:
            done = run_process([argv[0], "--info-fd", str(write_end), *argv[1:]], log=request.log,
                               timeout=request.timeout, env={"PATH": "/usr/bin:/bin"}, umask=v.umask if v else UMASK,
                               pass_fds=(write_end,))
        finally:
            os.close(write_end)
        try:
            os.set_blocking(read_end, False)
            try:
                info = os.read(read_end, 4096)
            except BlockingIOError:
                info = b""
        finally:
            os.close(read_end)
        _wait_for_namespace(info)
        return done


def _wait_for_namespace(info: bytes, limit: float = 10.0) -> None:
    """Wait (at most *limit* seconds) until the pid namespace's init that
    bwrap's ``--info-fd`` named has exited: the kernel has then killed and
    reaped every other process of the namespace."""
    try:
        pid = int(json.loads(info or b"{}").get("child-pid", 0))
    except (ValueError, AttributeError):
        return
    if pid <= 0:
        return
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # already gone (or no pidfd on this kernel: nothing to wait with)
        return
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll(int(limit * 1000))
    finally:
        os.close(fd)


@hookimpl
def hermetic_sandbox(host: Platform, config: SandboxConfig) -> BwrapSandbox | None:
    if host.os != "linux" or config.mode not in ("auto", "bwrap"):
        return None
    bwrap = _which("bwrap")
    if bwrap is None:
        return None

    def probe() -> dict[str, Any]:
        ok = subprocess.run([bwrap, "--unshare-user-try", "--unshare-net", "--unshare-pid", "--ro-bind", "/",
                             "/", "true"], capture_output=True, check=False)
        return {"version": run_probe([bwrap, "--version"]), "works": ok.returncode == 0,
                "error": ok.stderr.decode(errors="replace").strip()}

    data = probe_cached("linux-bwrap", [os.path.realpath(bwrap)], probe, cache_dir=config.cache_dir)
    if not data["works"]:
        from hermetic.errors import SandboxError

        raise SandboxError(f"bubblewrap is installed but cannot create namespaces here: {data['error']}",
                           hint="allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) "
                                "or run as root; or pass --sandbox=none (not hermetic)",
                           reason="sandbox")
    return BwrapSandbox(bwrap, data["version"])

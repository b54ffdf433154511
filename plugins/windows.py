"""Windows: how CPython extension modules are linked for Windows targets
(from any host), and the (weaker) isolation available on Windows hosts.

Linking conventions: a PE DLL named ``*.pyd`` that imports the C API from
``python3.dll`` (the stable ABI DLL every CPython 3 on Windows ships), through
an import library made from a ``.def`` file listing what ``python3.dll``
exports (generated from the pinned CPython source's ``PC/python3dll.c``), and
exports exactly ``PyInit_<name>`` (a module ``.def``). The PE header's
timestamp is ``SOURCE_DATE_EPOCH`` (zig's lld reads it; every action has it),
so the module is reproducible. ``pyconfig.h`` is
CPython's own hand-written ``PC/pyconfig.h``, not a probed one.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from hermetic.conventions import Exports, ExtensionConventions
from hermetic.hookspecs import hookimpl
from hermetic.model import Platform, Toolchain

_MACHINES = {"x86_64": "i386:x86-64", "aarch64": "arm64"}


@hookimpl
def hermetic_toolchain(kind: str, target: Platform, host: Platform) -> Toolchain | None:
    if kind != "pyext" or target.os != "windows":
        return None
    machine = _MACHINES.get(target.arch)
    if machine is None:
        return None
    info = ExtensionConventions(
        os="windows", binary_format="pe", ext_suffix=".pyd", pyconfig="PC/pyconfig.h.in", link_flags=("-shared",),
        exports=Exports.DEF_FILE, python_dll="python3.dll", dlltool_machine=machine, wheel_platform="win")
    return Toolchain("pyext", {}, {"conventions": "windows-1", "machine": machine}, info=info, hermetic=True)


class JobObjectSandbox:
    """Windows hosts: no mount, network or user namespaces exist for an
    unprivileged process, so this isolation is weaker than Linux's and says
    so in its profile (which is part of every action key: results made here
    are never mistaken for bubblewrap's). What it does: a cleared
    environment, private output/scratch/home/temp directories, and the whole
    process tree in a job object killed when the action ends."""

    name = "windows-job"
    varies: frozenset[str] = frozenset()
    can_bind = False

    def profile(self) -> dict[str, Any]:
        return {"name": "windows-job", "version": "1", "enforces": ["clear-env", "private-dirs", "kill-on-exit"],
                "does-not-enforce": ["no-network", "read-only-inputs", "fixed-paths", "no-home",
                                     "pid-namespace", "hostname"]}

    def layout(self, req_dirs: tuple[Path, Path, Path], variation: Any = None) -> Any:
        from hermetic.sandbox import Layout

        ins, outs, work = req_dirs
        return Layout(str(ins), str(outs), str(work), str(work / "home"), str(work / "tmp"))

    def run(self, request: Any) -> Any:  # pragma: no cover - needs a Windows host
        from hermetic.sandbox import Completed

        for d in ("home", "tmp"):
            Path(request.work, d).mkdir(exist_ok=True)
        env = dict(request.env)
        env.setdefault("SYSTEMROOT", os.environ.get("SYSTEMROOT", r"C:\Windows"))
        with open(request.log or os.devnull, "wb") as log:
            proc = subprocess.Popen(list(request.argv), env=env, cwd=request.work, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0))
            job = _kill_on_close_job(proc.pid)
            try:
                code = proc.wait(timeout=request.timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            finally:
                if job is not None:
                    import ctypes

                    ctypes.windll.kernel32.CloseHandle(job)  # type: ignore[attr-defined]
        return Completed(code)


def _kill_on_close_job(pid: int) -> Any:  # pragma: no cover - needs a Windows host
    """Put *pid* in a job object whose processes all die when it is closed."""
    import ctypes
    from ctypes import wintypes

    k32 = ctypes.windll.kernel32  # type: ignore[attr-defined]

    class Limits(ctypes.Structure):
        _fields_ = [("PerProcessUserTimeLimit", ctypes.c_int64), ("PerJobUserTimeLimit", ctypes.c_int64),
                    ("LimitFlags", wintypes.DWORD), ("MinimumWorkingSetSize", ctypes.c_size_t),
                    ("MaximumWorkingSetSize", ctypes.c_size_t), ("ActiveProcessLimit", wintypes.DWORD),
                    ("Affinity", ctypes.c_size_t), ("PriorityClass", wintypes.DWORD),
                    ("SchedulingClass", wintypes.DWORD)]

    class Extended(ctypes.Structure):
        _fields_ = [("Basic", Limits), ("Io", ctypes.c_uint64 * 6), ("ProcessMemoryLimit", ctypes.c_size_t),
                    ("JobMemoryLimit", ctypes.c_size_t), ("PeakProcessMemoryUsed", ctypes.c_size_t),
                    ("PeakJobMemoryUsed", ctypes.c_size_t)]

    job = k32.CreateJobObjectW(None, None)
    if not job:
        return None
    ext = Extended()
    ext.Basic.LimitFlags = 0x2000  # JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    k32.SetInformationJobObject(job, 9, ctypes.byref(ext), ctypes.sizeof(ext))  # ExtendedLimitInformation
    handle = k32.OpenProcess(0x1F0FFF, False, pid)
    if handle:
        k32.AssignProcessToJobObject(job, handle)
        k32.CloseHandle(handle)
    return job


@hookimpl
def hermetic_sandbox(host: Platform, config: Any) -> JobObjectSandbox | None:
    if host.os != "windows" or config.mode not in ("auto", "windows-job"):
        return None
    return JobObjectSandbox()

"""Helpers for platform plugins that fingerprint host tools.

Probing a compiler (hashing its binaries, running ``--version``) costs tens of
milliseconds; a no-op build must not pay it every time. :func:`probe_cached`
remembers a probe's result keyed by the (inode, size, mtime, ctime) of the
files it depends on, and probes again as soon as any of them changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["file_sha256", "find_program", "probe_cached", "run_probe"]

_lock = threading.Lock()
_memory: dict[Path, dict[str, Any]] = {}  # probe file -> its contents


def _cache_file(cache_dir: Path | None) -> Path:
    if cache_dir is None:
        from hermetic._cache import default_cache_dir

        cache_dir = default_cache_dir()
    return Path(cache_dir) / "toolchains.json"


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def run_probe(argv: Sequence[str]) -> str:
    """Run a probe command with a fixed environment; return its stdout+stderr."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
    proc = subprocess.run(list(argv), capture_output=True, text=True, env=env, check=False,
                          stdin=subprocess.DEVNULL)
    return (proc.stdout + proc.stderr).strip()


def _signature(files: Sequence[str]) -> list[Any]:
    sig: list[Any] = []
    for f in files:
        try:
            st = os.stat(f)
            sig.append([f, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
        except OSError:
            sig.append([f, None])
    return sig


def probe_cached(name: str, files: Sequence[str], probe: Callable[[], dict[str, Any]], *,
                 cache_dir: Path | None = None) -> dict[str, Any]:
    """Return ``probe()``'s result, from cache while *files* are unchanged.

    :param cache_dir: the store the build uses (the ``cache_dir`` hooks
        receive; ``--cache-dir``): the result is kept in its
        ``toolchains.json``. Default: the default store."""
    sig = _signature(files)
    f = _cache_file(cache_dir)
    with _lock:
        known = _memory.get(f)
        if known is None:
            known = _memory[f] = {}
            with contextlib.suppress(OSError, ValueError):
                known.update(json.loads(f.read_text()))
        hit = known.get(name)
        if hit and hit.get("sig") == sig:
            return hit["value"]  # type: ignore[no-any-return]
    value = probe()
    with _lock:
        known[name] = {"sig": sig, "value": value}
        with contextlib.suppress(OSError):
            f.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=f.parent, prefix=".toolchains.")
            with os.fdopen(fd, "w") as out:
                json.dump(known, out)
            os.replace(tmp, f)
    return value


def find_program(name: str) -> str | None:
    """*name* on ``PATH``, else beside the interpreter running hermetic (a
    tool installed with hermetic into its venv, like diffoscope from the
    ``verify`` extra, is found without activating the venv)."""
    import shutil
    import sys

    found = shutil.which(name)
    if found:
        return found
    for d in dict.fromkeys([os.path.dirname(sys.executable), os.path.join(sys.prefix, "bin")]):
        found = shutil.which(name, path=d)
        if found:
            return found
    return None


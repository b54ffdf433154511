"""Runners: how one action of each kind turns its inputs into outputs in the
store. The executor picks a runner by the action's kind; a runner neither
looks at caches nor schedules anything.

- ``write``: a small generated file;
- ``fetch``: a pinned download (store, distdirs, mirrors, upstream);
- ``extract``: an archive, safely, into a tree;
- ``run``: a command in the local sandbox (a remote executor is another
  runner of ``run`` actions behind the same interface).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import attrs

from hermetic import _profile
from hermetic._artifacts import Artifacts, trash
from hermetic._cache import Store
from hermetic._fetch import FetchResolver
from hermetic._keys import Entry
from hermetic.errors import ActionFailed, CacheError, HermeticError
from hermetic.model import UNPACK_TOOLCHAIN, Action, Artifact, Digest, Label, Toolchain
from hermetic.sandbox import Sandbox, SandboxRequest, Variation, base_environment, shuffled_view

#: archive problems that mean the pinned bytes themselves are hostile
HOSTILE = {"path-escape", "link-escape", "special-file", "bomb"}


class RunResult(NamedTuple):
    """An action's outputs (path -> entry) and its log. *where* it ran:
    ``local``, ``remote:<worker>``, or ``remote-cache`` (a remote executor
    found it in its action cache); remote outputs may not be in the store
    yet (:meth:`Artifacts.adopt_remote`)."""

    outputs: dict[str, Entry]
    log: Digest | None = None
    where: str = "local"


class Runner(Protocol):
    """Runs actions of one kind; raises :class:`ActionFailed` when one fails."""

    def run(self, action: Action, artifacts: Artifacts) -> RunResult: ...


class WriteRunner:
    def __init__(self, store: Store) -> None:
        self.store = store

    def run(self, action: Action, artifacts: Artifacts) -> RunResult:
        d = self.store.put_bytes(action.params["content"].encode())
        return RunResult({action.outputs[0].path: Entry(d.hash, d.size, False,
                                                        bool(action.params.get("executable")))})


class FetchRunner:
    def __init__(self, fetcher: FetchResolver) -> None:
        self.fetcher = fetcher

    def run(self, action: Action, artifacts: Artifacts) -> RunResult:
        key_path = artifacts.sources.get(action.inputs[0].path) if action.inputs else None
        try:
            d = self.fetcher.fetch(action.params, key_path)
        except HermeticError as exc:
            raise ActionFailed(str(exc), hint=exc.hint, action=action.describe(), reason=exc.reason) from exc
        return RunResult({action.outputs[0].path: Entry(d.hash, d.size)})


class ExtractRunner:
    def __init__(self, store: Store) -> None:
        self.store = store

    def run(self, action: Action, artifacts: Artifacts) -> RunResult:
        src = action.inputs[0]  # already local: Runners.run fetched every input
        archive = artifacts.entry(src)
        if not self.store.verify_blob(archive.digest):
            raise CacheError(f"{src.path} is missing or corrupt in the store", reason="corrupt-blob")
        staging = self.store.staging_dir("extract.")
        try:
            dest = staging / "tree"
            dest.mkdir()
            from hermetic import _archive  # tarfile and zipfile: only when something is extracted

            digests: dict[str, tuple[str, int]] = {}  # hashed as written: not read again
            try:
                _archive.extract(self.store.blob_path(archive.hash), dest,
                                 strip_prefix=action.params.get("strip_prefix") or "", name=src.name,
                                 subdir=action.params.get("subdir") or "", digests=digests)
            except HermeticError as exc:
                if exc.reason in HOSTILE:  # the pinned bytes are hostile: keep nothing of them
                    self.store.blob_path(archive.hash).unlink(missing_ok=True)
                raise ActionFailed(str(exc), hint=exc.hint, action=action.describe(), reason=exc.reason) from exc
            # the files stay, hard-linked into the store: a toolchain's tree is its checkout as it is
            # (the sandbox shows checkouts), anything else goes to the trash in one piece
            d = self.store.put_tree(dest, digests=digests, keep=True)
            if action.mnemonic == UNPACK_TOOLCHAIN:
                self.store.adopt_checkout(dest, d)
        finally:
            trash.put(staging)
        return RunResult({action.outputs[0].path: Entry(d.hash, d.size, True)})


class SandboxRunner:
    """A ``run`` action's command in the local sandbox: inputs hard-linked
    read-only, outputs and scratch private, toolchain wrappers on ``PATH``."""

    def __init__(self, store: Store, sandbox: Sandbox, source_date_epoch: int, jobs: int,
                 variation: Variation | None = None) -> None:
        self.store = store
        self.sandbox = sandbox
        self.source_date_epoch = source_date_epoch
        self.jobs = jobs
        self.variation = variation
        self._cache_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def run(self, action: Action, artifacts: Artifacts) -> RunResult:
        staging = self.store.staging_dir("action.")
        try:
            with _profile.phase("stage inputs"):
                dirs = self._stage(action, artifacts, staging)
            shuffle = bool(self.variation and self.variation.shuffle_dirs)
            with shuffled_view(dirs[0], enabled=shuffle) as view:
                return self._run_in(action, artifacts, staging, (view, dirs[1], dirs[2]))
        finally:
            with _profile.phase("clean up"):
                trash.put(staging)

    def _stage(self, action: Action, artifacts: Artifacts, staging: Path) -> tuple[Path, Path, Path]:
        # strings, not Paths: this runs once per input of every action
        ins, outs, work = (f"{staging}/{d}" for d in ("in", "out", "work"))
        for d in (ins, outs, work):
            os.mkdir(d)
        # the directories a declared file output lives in exist (as in Bazel);
        # tree outputs are the command's to create
        prefix = action.output_dir + "/"
        for out in action.outputs:
            rel = out.path[len(prefix):]
            if not out.is_tree and "/" in rel:
                os.makedirs(os.path.dirname(f"{outs}/{rel}"), exist_ok=True)
        link = self.sandbox.name != "none"
        made = {ins}
        for art in action.inputs:
            dest = f"{ins}/{art.path}"
            _makedirs(os.path.dirname(dest), made)
            artifacts.stage(art, dest, link=link)
        for tc in action.toolchains:
            for name, script in tc.wrappers.items():
                w = Path(ins, tc.bin_dir, tc.wrapper_name(name))
                w.parent.mkdir(parents=True, exist_ok=True)
                w.write_text(script)
                w.chmod(0o555)
        return Path(ins), Path(outs), Path(work)

    def _run_in(self, action: Action, artifacts: Artifacts, staging: Path,
                dirs: tuple[Path, Path, Path]) -> RunResult:
        v = self.variation
        layout = self.sandbox.layout(dirs, v)
        argv = [layout.expand(a) for a in action.params["argv"]]
        env = base_environment(layout, self.source_date_epoch, v)
        env.update(action.params["env"])
        bins = [f"{layout.inputs}/{tc.bin_dir}" for tc in action.toolchains if tc.wrappers]
        if bins:
            env["PATH"] = ":".join([*bins, env["PATH"]])
        # volatile: not in the key
        env["HERMETIC_JOBS"] = str(v.jobs if v else min(action.cpus, self.jobs))
        mounts = sorted({m for t in action.toolchains for m in t.mounts})
        binds: list[tuple[str, str]] = []
        can_bind = self.sandbox.name != "none" and getattr(self.sandbox, "can_bind", True)
        base = layout.inputs.rsplit("/", 1)[0]

        def show(host: str, where: str, var: str) -> None:
            """*host* to the command at *base*/*where* (where it is, if the
            sandbox cannot bind), named by *var*; volatile like HERMETIC_JOBS:
            the key holds the toolchain's identity, not its place."""
            inside = f"{base}/{where}" if can_bind else host
            binds.append((host, inside))
            env[var] = inside

        for tc in action.toolchains:
            root = str(self.store.checkout(artifacts.entry(tc.tree).digest)) if tc.tree is not None else tc.root
            if root:
                show(root, f"toolchains/{tc.kind}", tc.root_env)
            if tc.cache is not None:
                with _profile.phase("toolchain cache"):
                    seed = self.toolchain_cache(tc, artifacts)
                show(str(seed), f"toolchain-caches/{tc.kind}", tc.cache_env)
        log = staging / "log"
        t0 = time.monotonic()
        with _profile.phase("sandbox"):
            done = self.sandbox.run(SandboxRequest(tuple(argv), env, dirs[0], dirs[1], dirs[2],
                                                   tuple(mounts), log, variation=v, binds=tuple(binds)))
        secs = time.monotonic() - t0
        if done.exit_code != 0:
            free = _free_bytes(staging)
            if free is not None and free < 1 << 20:
                raise ActionFailed(
                    f"exit code {done.exit_code}: no space left on device where the store keeps its work "
                    f"({self.store.root}: {free} bytes free)", action=action.describe(),
                    command=shell_join(argv), exit_code=done.exit_code, output_tail=tail(log), reason="disk-full")
            kept = self.store.put_file(log) if log.exists() else None  # the whole output, for `hermetic log`
            raise ActionFailed(
                "timed out" if done.timed_out else f"exit code {done.exit_code} after {secs:.1f}s",
                action=action.describe(), command=shell_join(argv), exit_code=done.exit_code,
                output_tail=tail(log), reason="action-failed", log=f"{kept.hash}:{kept.size}" if kept else "")
        with _profile.phase("hash outputs"):
            return self._collect(action, dirs, argv, log)

    def toolchain_cache(self, tc: Toolchain, artifacts: Artifacts) -> Path:
        """The read-only tree of *tc*'s :class:`~hermetic.model.ToolchainCache`
        on this machine: made by running its script in the sandbox the first
        time an action needs it (other actions needing it meanwhile wait),
        kept in the store and named in ``toolchain-caches/``, and made again
        if ``cache gc`` took it."""
        assert tc.cache is not None
        name = f"{tc.fingerprint[:16]}-{tc.cache.name}"
        with self._lock:
            lock = self._cache_locks.setdefault(name, threading.Lock())
        record = self.store.root / "toolchain-caches" / name
        with lock:
            with contextlib.suppress(OSError, ValueError, CacheError):
                return self.store.checkout(Digest.parse(record.read_text().strip()))
            label = Label(Toolchain.BIN, f"{tc.package.name}-{tc.package.version}-cache-{tc.cache.name}"
                          if tc.package is not None else f"{tc.kind}-cache-{tc.cache.name}")
            out = Artifact(f"out/{label.package}/{label.name}/cache", is_tree=True)
            script = f"set -e\ncd \"$WORK\"\n{tc.cache.script}\ntest -d \"$OUT/cache\"\n"
            fill = Action("run", label, "ToolchainCache", outputs=[out], toolchains=[attrs.evolve(tc, cache=None)],
                          params={"argv": ["/bin/sh", "-c", script], "env": {}}, cpus=self.jobs)
            done = self.run(fill, artifacts)
            digest = done.outputs[out.path].digest
            record.parent.mkdir(parents=True, exist_ok=True)
            tmp = record.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(f"{digest}\n")
            os.replace(tmp, record)
            return self.store.checkout(digest)

    def _collect(self, action: Action, dirs: tuple[Path, Path, Path], argv: list[str], log: Path) -> RunResult:
        outputs: dict[str, Entry] = {}
        prefix = action.output_dir + "/"
        for out in action.outputs:
            host = dirs[1] / out.path[len(prefix):]
            if out.is_tree:
                if not host.is_dir() or host.is_symlink():
                    raise _missing(action, out, argv, log)
                d = self.store.put_tree(host, move=True)
                outputs[out.path] = Entry(d.hash, d.size, True)
            else:
                try:
                    st = os.lstat(host)
                except OSError:
                    st = None
                if st is None or not stat.S_ISREG(st.st_mode):
                    raise _missing(action, out, argv, log)
                x = bool(st.st_mode & 0o111)  # as put_tree decides it for a tree's files
                d = self.store.put_file(host, move=True)
                outputs[out.path] = Entry(d.hash, d.size, False, x)
        logd = self.store.put_file(log, move=True) if log.exists() else None
        return RunResult(outputs, logd)


class Runners:
    """The runner for each action kind. With a remote executor
    (:class:`hermetic._remote_exec.RemoteExecutor`), ``run`` actions go to
    the cluster and their inputs need not be here."""

    def __init__(self, *, store: Store, sandbox: Sandbox, fetcher: FetchResolver, source_date_epoch: int,
                 jobs: int, variation: Variation | None = None, remote_executor: Any = None,
                 local_jobs: int | None = None) -> None:
        local = SandboxRunner(store, sandbox, source_date_epoch, local_jobs or jobs, variation)
        self.by_kind: dict[str, Runner] = {
            "write": WriteRunner(store), "fetch": FetchRunner(fetcher), "extract": ExtractRunner(store),
            "run": local,
        }
        self.remote_kinds: frozenset[str] = frozenset()
        if remote_executor is not None:
            from hermetic._remote_exec import RemoteRunner

            self.by_kind["run"] = RemoteRunner(remote_executor, local, local_jobs or jobs)
            self.remote_kinds = frozenset({"run"})

    def run(self, action: Action, artifacts: Artifacts) -> RunResult:
        """Run *action* from *artifacts*' inputs; its outputs are in the store
        (or, run remotely, on the remote)."""
        if action.kind in self.remote_kinds:
            phase: str | None = "remote execution"
        else:
            with _profile.phase("fetch inputs"):
                for art in action.needs:
                    artifacts.ensure_local(art.path)
            phase = None if action.kind == "run" else action.kind  # run: the sandbox runner's own phases
        with _profile.phase(phase):
            return self.by_kind[action.kind].run(action, artifacts)

    def run_local(self, action: Action, artifacts: Artifacts) -> RunResult:
        """Run *action* here whatever the configuration."""
        runner = self.by_kind[action.kind]
        local = getattr(runner, "local", runner)
        for art in action.needs:
            artifacts.ensure_local(art.path)
        return local.run(action, artifacts)


def _makedirs(d: str, made: set[str]) -> None:
    """``mkdir -p`` from the top, remembering what exists: staging one
    action's inputs asks for the same parents again and again, and each
    failed or repeated mkdir is a system call on a journaled disk. *made*
    holds a directory above every *d* asked for."""
    if d in made:
        return
    _makedirs(os.path.dirname(d), made)
    with contextlib.suppress(FileExistsError):
        os.mkdir(d)
    made.add(d)


def _missing(action: Action, out: Artifact, argv: list[str], log: Path) -> ActionFailed:
    return ActionFailed(f"did not produce its declared output {out.path}", action=action.describe(),
                        command=shell_join(argv), output_tail=tail(log), reason="missing-output")


def _free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def tail(log: Path, lines: int = 40) -> str:
    """The last *lines* lines of a log file ("" if there is none)."""
    try:
        data = log.read_bytes()[-16384:]
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def shell_join(argv: list[str]) -> str:
    import shlex

    text = shlex.join(argv)
    return text if len(text) < 2000 else text[:2000] + " ..."

"""``hermetic worker``: a bot of a Remote Execution cluster (BuildGrid's
Remote Workers API, ``google.devtools.remoteworkers.v1test2.Bots``) that
runs actions in hermetic's own sandbox.

The bot keeps one bot session: ``CreateBotSession`` with its platform
properties (OS family, ISA, its sandbox profile, the fingerprints of the
host toolchains its plugins find: the same code that fingerprints them for
a local build) and its capacity (``--jobs``), then ``UpdateBotSession`` in
a loop, always before the session's ``expire_time``. Each lease carries an
REAPI ``Action``: the worker fetches its ``Command`` and input root from
CAS into its own store (blobs by digest, hard-linked into the action's
directory; toolchain trees checked out once and shown read-only), runs the
command in the sandbox (inputs read-only at ``/hermetic/in``, as locally),
uploads the outputs and the log, and completes the lease with the
``ActionResult``. A lease the server takes back (cancelled) has its process
killed; a server that goes away is retried until it is back (a new session
if it forgot the old one).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hermetic import _reapi
from hermetic._cache import Store
from hermetic._remote import GrpcTransport, RemoteConfig, TransportError
from hermetic.model import Digest, Platform, Toolchain
from hermetic.sandbox import Sandbox, SandboxRequest

#: platforms whose toolchains a worker offers when they run host tools
_TARGETS = ("linux-x86_64-manylinux2014", "linux-aarch64-manylinux2014", "linux-x86_64-musl",
            "linux-aarch64-musl", "darwin-x86_64", "darwin-aarch64", "windows-x86_64", "windows-aarch64")
_KINDS = ("cc", "python", "make")
_OK, _INTERNAL, _FAILED_PRECONDITION, _DEADLINE = 0, 13, 9, 4


def host_toolchains(hooks: Any, host: Platform, cache_dir: Path) -> list[Toolchain]:
    """The toolchains of this host that run its own tools (for the
    ``hermetic-toolchain`` properties), as the plugins make them."""
    found: dict[str, Toolchain] = {}
    targets = [host]
    for t in _TARGETS:
        with contextlib.suppress(Exception):
            targets.append(Platform.parse(t))
    for kind in _KINDS:
        for target in targets:
            try:
                tc = hooks.toolchain(kind, target, host, cache_dir)
            except Exception:  # noqa: BLE001 - a toolchain this host cannot give is simply not offered
                continue
            if tc is not None and _reapi.host_toolchain(tc):
                found.setdefault(tc.fingerprint, tc)
    return list(found.values())


class Worker:
    def __init__(self, *, server: str, instance: str, name: str, jobs: int, store: Store, sandbox: Sandbox,
                 host: Platform, toolchains: Sequence[Toolchain], extra: Sequence[tuple[str, str]] = (),
                 config: RemoteConfig | None = None, log: Any = print) -> None:
        import grpc

        from hermetic._protos import bots_pb2, bots_pb2_grpc, remote_cache_pb2

        self.grpc = grpc
        self.bots = bots_pb2
        self.pb = remote_cache_pb2
        self.config = config or RemoteConfig(server, instance=instance, timeout=30.0)
        self.transport = GrpcTransport(self.config)
        self.stub = bots_pb2_grpc.BotsStub(self.transport.channel)  # type: ignore[no-untyped-call]
        self.instance = instance
        self.name = name
        self.jobs = jobs
        self.store = store
        self.sandbox = sandbox
        self.mounts = sorted({m for tc in toolchains for m in tc.mounts})
        props = {("OSFamily", _reapi.os_family(host.os)), ("ISA", _reapi.isa()),
                 ("hermetic-sandbox", _reapi.sandbox_property(sandbox.profile()))}
        props |= {("hermetic-toolchain", tc.fingerprint) for tc in toolchains}
        props |= set(extra)
        self.properties = sorted(props)
        self.log = log
        self.stop = threading.Event()
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self.running: dict[str, threading.Thread] = {}
        self.finished: dict[str, Any] = {}  # lease id -> completed Lease
        self.threads: dict[str, int] = {}  # lease id -> the thread ident running its process
        self.cancelled: set[str] = set()
        #: leases this worker completed: a server's answer that still lists one (it had not seen the
        #: completion yet) must not start it again
        self.completed: dict[str, tuple[float, Any]] = {}  # lease id -> (when, the completed lease)
        self.trees = store.root / "worker-trees"
        self.trees.mkdir(exist_ok=True)

    # -- the session loop ----------------------------------------------------------

    def _session(self) -> Any:
        b = self.bots
        device = b.Device(handle=self.name, properties=[b.Device.Property(key=k, value=v)
                                                         for k, v in self.properties])
        worker = b.Worker(devices=[device], configs=[b.Worker.Config(key="capacity", value=str(self.jobs))])
        return b.BotSession(bot_id=self.name, status=b.OK, worker=worker)

    def _create(self) -> Any:
        delay = 0.5
        while not self.stop.is_set():
            try:
                session = self.stub.CreateBotSession(
                    self.bots.CreateBotSessionRequest(parent=self.instance, bot_session=self._session()),
                    timeout=30, metadata=self.transport.metadata)
                self.log(f"worker {self.name}: bot session {session.name} on {self.config.url} "
                         f"(instance {self.instance!r}, {self.jobs} job(s)); properties: "
                         + ", ".join(f"{k}={v[:16]}" for k, v in self.properties))
                return session
            except self.grpc.RpcError as exc:
                self.log(f"worker {self.name}: cannot create a bot session ({exc.code().name}: {exc.details()}); "
                         f"retrying in {delay:.0f}s")
                self.stop.wait(delay)
                delay = min(delay * 2, 10)
        return None

    def serve(self) -> None:
        session = self._create()
        while session is not None and not self.stop.is_set():
            session = self._update(session)
        self._drain()

    def _deadline(self, session: Any) -> float:
        """Seconds the next UpdateBotSession may wait: well before the
        session expires (the server long-polls for new work within it)."""
        left = float(session.expire_time.seconds + session.expire_time.nanos / 1e9 - time.time())
        return max(4.0, min(30.0, left * 0.5))

    def _update(self, session: Any) -> Any:
        # report what finished; start what is new
        with self._lock:
            leases = []
            for lease in session.leases:
                done = self.finished.pop(lease.id, None)
                if done is None and lease.id in self.completed:  # the server's answer raced the completion
                    done = self.completed[lease.id][1]
                leases.append(done if done is not None else lease)
            listed = {lease.id for lease in leases}
            for lease_id in [k for k in self.finished if k not in listed]:
                leases.append(self.finished.pop(lease_id))
            del session.leases[:]
            session.leases.extend(leases)
            busy = len(self.running)
        call = self.stub.UpdateBotSession.future(
            self.bots.UpdateBotSessionRequest(name=session.name, bot_session=session),
            timeout=self._deadline(session), metadata=self.transport.metadata)
        if busy >= self.jobs:
            # no room for new work: the server answers at once; wait for a lease to finish
            self.wake.wait(self._deadline(session) * 0.5)
        while not call.done():
            if self.wake.wait(0.05) or self.stop.is_set():
                break
        self.wake.clear()
        if not call.done():
            call.cancel()  # something finished (or we stop): report it now, not at the end of the long poll
            with contextlib.suppress(Exception):
                call.result(timeout=5)
            with self._lock:  # re-send the completions with the next update
                for lease in session.leases:
                    if lease.state == self.bots.COMPLETED:
                        self.finished.setdefault(lease.id, lease)
            return session
        try:
            fresh = call.result()
        except self.grpc.FutureCancelledError:
            return session
        except self.grpc.RpcError as exc:
            code = exc.code().name
            with self._lock:
                for lease in session.leases:
                    if lease.state == self.bots.COMPLETED:
                        self.finished.setdefault(lease.id, lease)
            if code in ("NOT_FOUND", "INVALID_ARGUMENT", "FAILED_PRECONDITION", "PERMISSION_DENIED"):
                self.log(f"worker {self.name}: the server dropped the bot session ({code}); creating a new one")
                return self._create()
            if code != "DEADLINE_EXCEEDED":
                self.log(f"worker {self.name}: UpdateBotSession failed ({code}: {exc.details()}); retrying")
                self.stop.wait(1.0)
            return session
        self._sync(fresh)
        return fresh

    def _sync(self, session: Any) -> None:
        """Start new leases, kill cancelled ones, forget completed ones."""
        now = {lease.id for lease in session.leases}
        with self._lock:
            for lease_id in list(self.running):
                if lease_id not in now and lease_id not in self.finished:
                    self.cancelled.add(lease_id)
                    ident = self.threads.get(lease_id)
                    if ident is not None:
                        from hermetic.sandbox import terminate_thread

                        terminate_thread(ident)
                    self.log(f"worker {self.name}: lease {lease_id} was cancelled by the server")
            for lease in session.leases:
                if lease.id in self.completed or lease.id in self.finished:
                    continue
                if lease.state in (self.bots.PENDING, self.bots.ACTIVE) and lease.id not in self.running:
                    lease.state = self.bots.ACTIVE
                    t = threading.Thread(target=self._work, args=(lease,), name=f"lease-{lease.id[:8]}",
                                         daemon=True)
                    self.running[lease.id] = t
                    t.start()

    def _drain(self) -> None:
        for t in list(self.running.values()):
            t.join(timeout=1)

    # -- one lease ---------------------------------------------------------------------

    def _work(self, lease: Any) -> None:
        from hermetic._protos import status_pb2

        done = self.bots.Lease()
        done.CopyFrom(lease)
        done.state = self.bots.COMPLETED
        with self._lock:
            self.threads[lease.id] = threading.get_ident()
        try:
            result = self.execute(lease)
            done.result.Pack(result)
            done.status.CopyFrom(status_pb2.Status(code=_OK))
        except MissingInput as exc:
            done.status.CopyFrom(status_pb2.Status(code=_FAILED_PRECONDITION, message=str(exc)))
        except Exception as exc:  # noqa: BLE001 - reported to the server; another worker may manage
            self.log(f"worker {self.name}: lease {lease.id} failed: {exc}\n{traceback.format_exc()}")
            done.status.CopyFrom(status_pb2.Status(code=_INTERNAL, message=f"worker {self.name}: {exc}"))
        with self._lock:
            self.threads.pop(lease.id, None)
            self.running.pop(lease.id, None)
            if lease.id not in self.cancelled:
                self.finished[lease.id] = done
            self.cancelled.discard(lease.id)
            now = time.monotonic()
            self.completed[lease.id] = (now, done)
            for old in [k for k, (t, _) in self.completed.items() if now - t > 3600]:
                del self.completed[old]
        self.wake.set()

    def execute(self, lease: Any) -> Any:
        pb = self.pb
        started = time.time()
        action = pb.Action()
        if not lease.payload.Unpack(action):
            digest = pb.Digest()
            if not lease.payload.Unpack(digest):
                raise ValueError(f"lease payload is neither an Action nor a Digest: {lease.payload.type_url}")
            action = pb.Action.FromString(self._blob(digest))
        command = pb.Command.FromString(self._blob(action.command_digest))
        outs = list(command.output_paths) or [*command.output_files, *command.output_directories]
        self.log(f"worker {self.name}: lease {lease.id}: running, outputs {' '.join(outs)}")
        staging = self.store.staging_dir("lease.")
        try:
            root = staging / "root"
            fetch_start = time.time()
            binds = self._materialize(action.input_root_digest, root)
            fetch_done = time.time()
            for d in ("in", "out", "work"):
                (root / d).mkdir(exist_ok=True)
            for rel in outs:
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
            log = staging / "log"
            layout = self.sandbox.layout((root / "in", root / "out", root / "work"))
            base = layout.inputs.rsplit("/", 1)[0]
            cwd = f"{base}/{command.working_directory}".rstrip("/")
            argv = ("/bin/sh", "-c", 'cd "$0" && exec "$@"', cwd, *command.arguments)
            env = {e.name: e.value for e in command.environment_variables}
            if "HERMETIC_JOBS" in env:  # volatile by contract: at most this worker's share of its cores
                share = max(1, (os.cpu_count() or 1) // self.jobs)
                env["HERMETIC_JOBS"] = str(max(1, min(_int(env["HERMETIC_JOBS"]), share)))
            timeout = action.timeout.seconds or None
            exec_start = time.time()
            self.log(f"worker {self.name}: lease {lease.id}: inputs ready in {fetch_done - fetch_start:.1f}s, "
                     "command started")
            ran = self.sandbox.run(SandboxRequest(
                argv, env, root / "in", root / "out", root / "work", tuple(self.mounts), log,
                timeout=float(timeout) if timeout else None,
                binds=tuple((str(host), f"{base}/{rel}") for rel, host in binds)))
            exec_done = time.time()
            self.log(f"worker {self.name}: lease {lease.id}: exit code {ran.exit_code} after "
                     f"{exec_done - exec_start:.1f}s")
            result = pb.ActionResult(exit_code=ran.exit_code)
            upload: list[Digest] = []
            blobs: dict[Digest, bytes] = {}
            if ran.exit_code == 0:
                self._collect(root, outs, result, upload, blobs)
            if log.exists() and log.stat().st_size:
                logd = self.store.put_file(log, move=True)
                upload.append(logd)
                result.stdout_digest.CopyFrom(pb.Digest(hash=logd.hash, size_bytes=logd.size))
            self._upload(upload, blobs)  # outputs and log in one FindMissingBlobs and one batch
            m = result.execution_metadata
            m.worker = self.name
            for field, t in (("worker_start_timestamp", started), ("input_fetch_start_timestamp", fetch_start),
                             ("input_fetch_completed_timestamp", fetch_done),
                             ("execution_start_timestamp", exec_start), ("execution_completed_timestamp", exec_done),
                             ("output_upload_start_timestamp", exec_done),
                             ("output_upload_completed_timestamp", time.time()),
                             ("worker_completed_timestamp", time.time())):
                getattr(m, field).FromNanoseconds(int(t * 1e9))
            return result
        finally:
            from hermetic._artifacts import rmtree

            rmtree(staging)

    # -- CAS ---------------------------------------------------------------------------------

    def _blob(self, d: Any) -> bytes:
        digest = Digest(d.hash, d.size_bytes)
        if not self.store.has_blob(digest):
            self._download([digest])
        return self.store.read_bytes(digest)

    def _download(self, digests: Iterable[Digest]) -> None:
        want = sorted({d for d in digests if not self.store.has_blob(d)})
        if not want:
            return
        try:
            for d, data in self.transport.read(want):
                if Digest.of_bytes(data) != d:
                    raise MissingInput(f"blob {d.hash[:12]}… from CAS does not match its digest")
                self.store.put_bytes(data, digest=d)
        except TransportError as exc:
            raise MissingInput(f"input blobs could not be read from CAS: {exc}") from exc

    def _upload(self, digests: Sequence[Digest], blobs: dict[Digest, bytes] | None = None) -> None:
        blobs = blobs or {}
        missing = self.transport.find_missing(sorted(set(digests) | set(blobs)))
        small = []
        for d in missing:
            if d in blobs:
                small.append((d, blobs[d]))
            elif d.size <= 256 << 10:
                small.append((d, self.store.blob_path(d.hash).read_bytes()))
            else:
                self.transport.write(d, self.store.blob_path(d.hash))
        self.transport.write_batch(small)

    def _directories(self, root: Digest) -> dict[str, Any]:
        """Every Directory of the input root, by digest hash."""
        out: dict[str, Any] = {}
        level = [root]
        while level:
            self._download(level)
            nxt = []
            for d in level:
                directory = self.pb.Directory.FromString(self.store.read_bytes(d))
                out[d.hash] = directory
                nxt += [Digest(s.digest.hash, s.digest.size_bytes) for s in directory.directories
                        if s.digest.hash not in out]
            level = sorted(set(nxt))
        return out

    def _materialize(self, root_digest: Any, dest: Path) -> list[tuple[str, Path]]:
        """The input root at *dest*; toolchain trees (``toolchains/<kind>``)
        are checked out once per digest and returned as (path, host dir) to
        be shown read-only."""
        root = Digest(root_digest.hash, root_digest.size_bytes)
        dirs = self._directories(root)
        top = dirs[root.hash]
        binds: list[tuple[str, Path]] = []
        skip: set[str] = set()
        for sub in top.directories:
            if sub.name != _reapi.TOOLCHAINS:
                continue
            skip.add(sub.name)
            for tc in dirs[sub.digest.hash].directories:
                binds.append((f"{_reapi.TOOLCHAINS}/{tc.name}", self._checkout(tc.digest, dirs)))
        self._download(self._files(top, dirs, skip))
        self._write(top, dest, dirs, skip)
        return binds

    def _files(self, top: Any, dirs: dict[str, Any], skip: set[str] | None = None) -> set[Digest]:
        """Every file blob under *top* (but not its subdirectories named in *skip*)."""
        found: set[Digest] = set()
        stack = [(top, True)]
        while stack:
            d, is_top = stack.pop()
            found.update(Digest(f.digest.hash, f.digest.size_bytes) for f in d.files)
            stack += [(dirs[s.digest.hash], False) for s in d.directories if not (is_top and s.name in (skip or ()))]
        return found

    def _write(self, directory: Any, dest: Path, dirs: dict[str, Any], skip: Iterable[str] = ()) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        for f in directory.files:
            _reapi.check_name(f.name)
            self.store.link_blob(Digest(f.digest.hash, f.digest.size_bytes), dest / f.name,
                                 executable=f.is_executable)
        for s in directory.symlinks:
            _reapi.check_name(s.name)
            os.symlink(s.target, dest / s.name)
        for sub in directory.directories:
            _reapi.check_name(sub.name)
            if sub.name not in skip:
                self._write(dirs[sub.digest.hash], dest / sub.name, dirs)

    def _checkout(self, digest: Any, dirs: dict[str, Any]) -> Path:
        """A read-only tree for Directory *digest*, made once per worker."""
        dest: Path = self.trees / str(digest.hash)
        if (dest / ".complete").exists():
            return dest / "tree"
        directory = dirs[digest.hash]
        self._download(self._files(directory, dirs))
        staging = self.store.staging_dir("checkout.")
        try:
            self._write(directory, staging / "tree", dirs)
            (staging / ".complete").write_text(digest.hash)
            with contextlib.suppress(OSError):
                os.rename(staging, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return dest / "tree"

    def _collect(self, root: Path, outs: Sequence[str], result: Any, upload: list[Digest],
                 blobs: dict[Digest, bytes]) -> None:
        """The outputs that exist, into the store and *result*, their blobs
        into *upload*/*blobs*; a missing one is the client's to report."""
        pb = self.pb
        for rel in outs:
            p = root / rel
            if p.is_symlink():
                continue
            if p.is_file():
                x = os.access(p, os.X_OK)
                d = self.store.put_file(p, move=True)
                upload.append(d)
                result.output_files.add(path=rel, digest=pb.Digest(hash=d.hash, size_bytes=d.size), is_executable=x)
            elif p.is_dir():
                tree, files = _reapi.output_tree(p, lambda f: self.store.put_file(f, move=True))
                upload += files
                td, data = _reapi.serialize(tree)
                blobs[td] = data
                result.output_directories.add(path=rel, tree_digest=pb.Digest(hash=td.hash, size_bytes=td.size))


class MissingInput(Exception):
    """An input blob is not in CAS (or damaged there)."""


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 1




def run(*, server: str, instance: str, name: str, jobs: int, cache_dir: Path, hooks: Any, host: Platform,
        sandbox: Sandbox, extra: Sequence[tuple[str, str]], config: RemoteConfig | None = None) -> int:
    """``hermetic worker``: serve until SIGTERM/SIGINT."""
    store = Store(cache_dir)
    toolchains = host_toolchains(hooks, host, cache_dir)
    w = Worker(server=server, instance=instance, name=name, jobs=jobs, store=store, sandbox=sandbox, host=host,
               toolchains=toolchains, extra=extra, config=config, log=lambda m: print(m, flush=True))

    def on_signal(signum: int, frame: object) -> None:
        w.stop.set()
        w.wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    w.serve()
    from hermetic.sandbox import terminate_all

    terminate_all()
    print(f"worker {name}: stopped", flush=True)
    return 0

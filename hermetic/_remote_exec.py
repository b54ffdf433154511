"""Running ``run`` actions on a Remote Execution API v2 cluster (BuildGrid,
Buildbarn, ...): the client side.

For an action neither cache has, :class:`RemoteRunner` builds the standard
``Action`` + ``Command`` + input-root Merkle tree (:mod:`hermetic._reapi`),
uploads what ``FindMissingBlobs`` says the CAS lacks, calls
``Execution.Execute`` and follows the long-running operation (reconnecting
with ``WaitExecution`` when the stream drops), then turns the
``ActionResult`` into store entries: output files by digest, output trees
as the store's manifests (built from the REAPI ``Tree``, so remote and
local trees have one digest). Output bytes stay on the remote until
something here needs them, as with a remote cache hit.

A cluster that cannot be reached, or that cannot run an action (no worker
with matching tools, an infrastructure error after its retries), never
fails the build: hermetic says so once and runs the action here. An action
whose command fails remotely fails like a local one, with its remote output.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from hermetic import _reapi
from hermetic._artifacts import Artifacts
from hermetic._cache import Store
from hermetic._keys import Entry
from hermetic._remote import GrpcTransport, RemoteCache, RemoteConfig, TransportError
from hermetic._runners import RunResult, SandboxRunner, shell_join
from hermetic.errors import ActionFailed, CacheError
from hermetic.events import Note, Report, ignore
from hermetic.model import Action, Digest
from hermetic.sandbox import Layout, base_environment

#: gRPC codes after which an operation is looked up again (WaitExecution)
_RECONNECT = {"UNAVAILABLE", "UNKNOWN", "INTERNAL", "CANCELLED", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"}
#: the layout the base environment is made from; the script replaces these paths
_PLACEHOLDER = Layout("/in", "/out", "/work", "/home", "/tmp")


class RemoteUnavailable(Exception):
    """The cluster could not run this action (down, no worker, infrastructure)."""


def _interrupted(label: str) -> ActionFailed:
    """The build was interrupted while *label* ran remotely (its operation was cancelled)."""
    return ActionFailed("interrupted: its remote operation was cancelled", action=label, reason="action-failed")


class RemoteExecutor:
    """One build's connection to an REAPI Execution service."""

    def __init__(self, config: RemoteConfig, store: Store, cache: RemoteCache, *, os_name: str,
                 sandbox_profile: Mapping[str, Any], source_date_epoch: int, report: Report | None = None) -> None:
        import grpc

        from hermetic._protos import remote_cache_pb2, remote_cache_pb2_grpc

        self.grpc = grpc
        self.pb = remote_cache_pb2
        self.config = config
        self.url = str(config.executor)
        self.store = store
        self.cache = cache
        self.report = report or ignore
        self.os_name = os_name
        self.profile = dict(sandbox_profile)
        self.sde = source_date_epoch
        if isinstance(cache.transport, GrpcTransport) and cache.config.url == self.url:
            self.transport = cache.transport  # one channel for CAS, action cache and execution
        else:
            import attrs

            self.transport = GrpcTransport(attrs.evolve(config, url=self.url))
        self.stub = remote_cache_pb2_grpc.ExecutionStub(self.transport.channel)  # type: ignore[no-untyped-call]
        self.disabled = False
        self.cancelled = False
        self._inflight: dict[int, tuple[str, Any]] = {}  # thread -> (operation name, its stream)
        self.executed = 0
        self.workers: dict[str, int] = {}
        #: seconds summed over actions: building the Merkle tree and uploading, Execute until
        #: done, turning the result into entries; "worker": the commands themselves on workers
        self.timings = {"upload": 0.0, "execute": 0.0, "download": 0.0, "worker": 0.0}
        self._lock = threading.Lock()

    # -- faults --------------------------------------------------------------------

    def give_up(self, why: str) -> None:
        """The cluster is unusable for the rest of this build: say so once;
        the cache on the same server is not asked again either."""
        with self._lock:
            first = not self.disabled
            self.disabled = True
        if self.cache.config.url == self.url:
            self.cache.disabled = True
        if first:
            self.cache.note_once("fault", f"remote executor {self.url}: {why}; building locally from here on")

    def cancel_all(self) -> None:
        """The build was interrupted: cancel every operation in flight
        (``google.longrunning.Operations.CancelOperation``; the server takes
        the lease back from its worker, which kills the command) and stop
        waiting for them."""
        from hermetic._protos import operations_pb2, operations_pb2_grpc

        self.cancelled = True
        with self._lock:
            inflight = list(self._inflight.values())
        ops = operations_pb2_grpc.OperationsStub(self.transport.channel)  # type: ignore[no-untyped-call]
        for name, stream in inflight:
            if name:
                try:
                    ops.CancelOperation(operations_pb2.CancelOperationRequest(name=name), timeout=5,
                                        metadata=self.transport.metadata)
                except self.grpc.RpcError:
                    pass  # the server may be gone too; nothing more to do
            stream.cancel()

    # -- one action ------------------------------------------------------------------

    def execute(self, action: Action, artifacts: Artifacts) -> RunResult:
        """Run *action* on the cluster. Raises :class:`ActionFailed` when
        its command fails there, :class:`RemoteUnavailable` when the
        cluster cannot run it."""
        if self.disabled:
            raise RemoteUnavailable("disabled")
        label = action.describe()
        t0 = time.monotonic()
        props = _reapi.platform_properties(action, self.os_name, self.profile)
        root, blobs, files = self._input_root(action, artifacts, label)
        command = _reapi.build_command(action, base_environment(_PLACEHOLDER, self.sde), props)
        cmd_d, cmd_b = _reapi.serialize(command)
        act_d, act_b = _reapi.serialize(_reapi.build_action(cmd_d, root, props))
        blobs[cmd_d] = cmd_b
        blobs[act_d] = act_b
        try:
            self._upload(blobs, files, artifacts, label)
        except TransportError as exc:
            self.give_up(f"uploading the inputs of {label} failed ({exc})")
            raise RemoteUnavailable(str(exc)) from exc
        t1 = time.monotonic()
        response = self._run(act_d, label)
        t2 = time.monotonic()
        result = response.result
        worker = result.execution_metadata.worker or "?"
        where = "remote-cache" if response.cached_result else f"remote:{worker}"
        try:
            log = self._log(result)
        except TransportError as exc:
            self.give_up(f"downloading the output of {label} failed ({exc})")
            raise RemoteUnavailable(str(exc)) from exc
        if result.exit_code != 0:
            from hermetic._runners import tail

            raise ActionFailed(f"exit code {result.exit_code} on remote worker {worker}", action=label,
                               command=shell_join(command.arguments[:2] + ["..."]), exit_code=result.exit_code,
                               output_tail=tail(self.store.blob_path(log.hash)) if log else "",
                               reason="action-failed")
        outputs = self._outputs(action, result, label)
        t3 = time.monotonic()
        with self._lock:
            if not response.cached_result:
                self.executed += 1
                self.workers[worker] = self.workers.get(worker, 0) + 1
            self.timings["upload"] += t1 - t0
            self.timings["execute"] += t2 - t1
            self.timings["download"] += t3 - t2
            m = result.execution_metadata
            if m.HasField("execution_completed_timestamp") and not response.cached_result:
                self.timings["worker"] += (m.execution_completed_timestamp.ToNanoseconds()
                                           - m.execution_start_timestamp.ToNanoseconds()) / 1e9
        return RunResult(outputs, log, where)

    def _input_root(self, action: Action, artifacts: Artifacts, label: str
                    ) -> tuple[Digest, dict[Digest, bytes], dict[Digest, str]]:
        tree = _reapi.MerkleTree()
        files: dict[Digest, str] = {}  # file blob -> the artifact that brings it (to make it local if need be)
        for art in action.inputs:
            e = artifacts.entry(art)
            if e.tree:
                m = self._manifest(e, art.path, artifacts, label)
                tree.add_manifest(f"in/{art.path}", m)
                for _, h, size, _x in m["files"]:
                    files.setdefault(Digest(h, size), art.path)
            else:
                tree.add_file(f"in/{art.path}", e.digest, e.executable)
                files.setdefault(e.digest, art.path)
        for tc in action.toolchains:
            for name, script in tc.wrappers.items():
                d = self.store.put_bytes(script.encode())
                tree.add_file(f"in/{tc.bin_dir}/{tc.wrapper_name(name)}", d, True)
                files.setdefault(d, "")
            if tc.tree is not None:
                e = artifacts.entry(tc.tree)
                m = self._manifest(e, tc.tree.path, artifacts, label)
                tree.add_manifest(f"{_reapi.TOOLCHAINS}/{tc.kind}", m)
                for _, h, size, _x in m["files"]:
                    files.setdefault(Digest(h, size), tc.tree.path)
            elif tc.root:
                raise RemoteUnavailable(f"toolchain {tc.kind} lives in a host directory of this machine")
        root, blobs, _ = tree.finish()
        return root, blobs, files

    def _manifest(self, e: Entry, path: str, artifacts: Artifacts, label: str) -> dict[str, Any]:
        """A tree's manifest: the small blob only, never its members."""
        if not self.store.has_blob(e.digest) and not self.cache.fetch(e.digest, False, label):
            artifacts.ensure_local(path)
        try:
            return self.store.tree_manifest(e.digest)
        except CacheError:
            artifacts.ensure_local(path)
            return self.store.tree_manifest(e.digest)

    def _upload(self, blobs: dict[Digest, bytes], files: dict[Digest, str], artifacts: Artifacts,
                label: str) -> None:
        wanted = sorted(set(blobs) | set(files))
        missing = self.transport.find_missing(wanted)
        small: list[tuple[Digest, bytes]] = []
        for d in missing:
            if d in blobs:
                small.append((d, blobs[d]))
                continue
            if not self.store.has_blob(d) and files.get(d):
                artifacts.ensure_local(files[d])  # lost remotely: download it, or build it here
            if not self.store.has_blob(d) and files.get(d) in artifacts.sources:
                self.store.put_file(artifacts.sources[files[d]])  # a source file, not stored yet
            if not self.store.verify_blob(d):
                raise TransportError(f"input blob {d.hash[:12]}… of {label} is neither here nor on the remote")
            if d.size <= 256 << 10:
                small.append((d, self.store.blob_path(d.hash).read_bytes()))
            else:
                self.transport.write(d, self.store.blob_path(d.hash))
            self.cache.count_up(d.size)
        self.transport.write_batch(small)

    def _run(self, action_digest: Digest, label: str) -> Any:
        """Execute and follow the operation to its end; the ExecuteResponse."""
        grpc, pb = self.grpc, self.pb
        request = pb.ExecuteRequest(instance_name=self.config.instance,
                                    action_digest=pb.Digest(hash=action_digest.hash, size_bytes=action_digest.size))
        name = ""
        budget = max(self.config.timeout, 5.0)
        lost_since: float | None = None
        while True:
            try:
                if self.cancelled:
                    raise _interrupted(label)
                stream = (self.stub.WaitExecution(pb.WaitExecutionRequest(name=name), metadata=self.transport.metadata)
                          if name else self.stub.Execute(request, metadata=self.transport.metadata))
                with self._lock:
                    self._inflight[threading.get_ident()] = (name, stream)
                for op in stream:
                    lost_since = None
                    if op.name and op.name != name:
                        name = op.name
                        with self._lock:
                            self._inflight[threading.get_ident()] = (name, stream)
                    if op.done:
                        return self._response(op, label)
            except grpc.RpcError as exc:
                if self.cancelled:
                    raise _interrupted(label) from exc
                code = exc.code().name
                if code == "NOT_FOUND" and name:
                    name = ""  # the server forgot the operation (restarted): ask again
                    continue
                if code not in _RECONNECT:
                    self.give_up(f"executing {label} failed ({code}: {exc.details()})")
                    raise RemoteUnavailable(code) from exc
                now = time.monotonic()
                lost_since = lost_since or now
                if now - lost_since > budget:
                    self.give_up(f"lost contact while executing {label} ({code}: {exc.details()})")
                    raise RemoteUnavailable(code) from exc
                time.sleep(0.5)
                continue
            finally:
                with self._lock:
                    self._inflight.pop(threading.get_ident(), None)
            # the stream ended without the operation being done: wait for it again

    def _response(self, op: Any, label: str) -> Any:
        pb = self.pb
        if op.HasField("error") and op.error.code != 0:
            self.report(Note(f"remote executor {self.url}: {label} could not run there "
                             f"(status {op.error.code}: {op.error.message}); running it here"))
            raise RemoteUnavailable(op.error.message)
        response = pb.ExecuteResponse()
        if not op.response.Unpack(response):
            self.give_up(f"the operation for {label} did not return an ExecuteResponse")
            raise RemoteUnavailable("no ExecuteResponse")
        if response.status.code != 0:
            if response.status.code == 4:  # DEADLINE_EXCEEDED: the action's own timeout
                raise ActionFailed(f"timed out on the remote worker ({response.status.message})",
                                   action=label, reason="action-failed")
            self.report(Note(f"remote executor {self.url}: {label} could not run there "
                             f"(status {response.status.code}: {response.status.message}); running it here"))
            raise RemoteUnavailable(response.status.message)
        return response

    def _log(self, result: Any) -> Digest | None:
        """stdout then stderr, as one log blob in the store (a local
        action's log is its combined output)."""
        parts = []
        for raw, d in ((result.stdout_raw, result.stdout_digest), (result.stderr_raw, result.stderr_digest)):
            if raw:
                parts.append(bytes(raw))
            elif d.hash and d.size_bytes:
                digest = Digest(d.hash, d.size_bytes)
                if not self.store.has_blob(digest) and not self.cache.fetch(digest, False, "a remote log"):
                    raise TransportError(f"log {d.hash[:12]}… could not be downloaded")
                parts.append(self.store.read_bytes(digest))
        if not parts:
            return None
        return self.store.put_bytes(parts[0] if len(parts) == 1 else b"".join(parts))

    def _outputs(self, action: Action, result: Any, label: str) -> dict[str, Entry]:
        prefix = action.output_dir + "/"
        want = {"out/" + o.path[len(prefix):]: o for o in action.outputs}
        files = {f.path: f for f in result.output_files}
        dirs = {d.path: d for d in result.output_directories}
        outputs: dict[str, Entry] = {}
        for rel, art in want.items():
            if art.is_tree and rel in dirs:
                outputs[art.path] = self._tree(dirs[rel].tree_digest, label)
            elif not art.is_tree and rel in files:
                f = files[rel]
                outputs[art.path] = Entry(f.digest.hash, f.digest.size_bytes, False, bool(f.is_executable))
            else:
                raise ActionFailed(f"did not produce its declared output {art.path} on the remote worker",
                                   action=label, reason="missing-output")
        return outputs

    def _tree(self, d: Any, label: str) -> Entry:
        from hermetic._archive import check_link_target
        from hermetic.errors import HermeticError

        digest = Digest(d.hash, d.size_bytes)
        if not self.store.has_blob(digest) and not self.cache.fetch(digest, False, label):
            raise RemoteUnavailable(f"output tree {digest.hash[:12]}… could not be downloaded")
        tree = self.pb.Tree.FromString(self.store.read_bytes(digest))
        try:
            manifest = _reapi.tree_to_manifest(tree)
            for rel, target in manifest["links"]:
                check_link_target(rel, target, "/")
        except (ValueError, HermeticError) as exc:
            raise ActionFailed(f"its remote output tree is unusable: {exc}", action=label,
                               reason="bad-output") from exc
        from hermetic.model import canonical_json

        m = self.store.put_bytes(canonical_json(manifest))
        return Entry(m.hash, m.size, True)


class RemoteRunner:
    """``run`` actions on the cluster; here when it cannot take them (then
    at most as many at once as this machine has cores: ``-j`` may be larger
    when executing remotely)."""

    def __init__(self, remote: RemoteExecutor, local: SandboxRunner, local_jobs: int) -> None:
        self.remote = remote
        self.local = local
        self.slots = threading.BoundedSemaphore(max(1, local_jobs))

    def run(self, action: Action, artifacts: Artifacts) -> RunResult:
        if not self.remote.disabled:
            try:
                return self.remote.execute(action, artifacts)
            except RemoteUnavailable:
                pass
        for art in action.needs:
            artifacts.ensure_local(art.path)
        with self.slots:
            return self.local.run(action, artifacts)

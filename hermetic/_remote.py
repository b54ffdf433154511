"""Remote caches a team shares: the Bazel HTTP cache protocol
(``http://``/``https://``: ``/ac/<key>``, ``/cas/<sha256>``; nginx WebDAV,
bazel-remote) and the Remote Execution API v2 cache services
(``grpc://``/``grpcs://``: ContentAddressableStorage, ActionCache, ByteStream;
BuildGrid, bazel-remote, Buildbarn).

What is stored is protocol-standard: an action result is an REAPI
``ActionResult`` whose output files are the action's outputs plus
``hermetic/result.json``, an envelope holding hermetic's result record and
its ed25519 signatures. Every blob read from a remote is hash-checked before
use; a result whose signature is not trusted is ignored; a remote that is
down, slow or returns garbage never fails a build (see :class:`RemoteCache`).
"""

from __future__ import annotations

import json
import os
import threading
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import attrs

from hermetic import _signing
from hermetic._cache import Store, hash_file
from hermetic.errors import RemoteError
from hermetic.events import Note, Report, ignore
from hermetic.model import Digest, canonical_json

RESULT_FILE = "hermetic/result.json"
SCHEMA = 1
BATCH_LIMIT = 1 << 20  # blobs up to 1 MiB travel in batch requests (gRPC)



class TransportError(Exception):
    """The remote did not answer as the protocol says (down, slow, error)."""


# -- configuration -----------------------------------------------------------


@attrs.frozen
class RemoteConfig:
    url: str
    upload: bool = True
    instance: str = ""
    timeout: float = 10.0
    token: str | None = attrs.field(default=None, repr=False)
    tls_ca_file: str | None = None
    tls_client_cert: str | None = None
    tls_client_key: str | None = None
    trusted_keys: tuple[_signing.PublicKey, ...] = ()
    signing_key: _signing.SecretKey | None = attrs.field(default=None, repr=False)
    max_errors: int = 3
    upload_local_hits: bool = False
    #: a Remote Execution API endpoint (grpc:// or grpcs://) that runs actions
    executor: str | None = None
    #: k of n: a remote result is used only if this many distinct trusted keys signed its outputs
    min_signers: int = 1

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "hermetic" / "config.toml"


_BOOL = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def resolve(cli: Mapping[str, Any], workspace: Mapping[str, Any], where: str,
            env: Mapping[str, str] | None = None, user_file: Path | None = None) -> RemoteConfig | None:
    """The remote settings in force: command line over environment over the
    user's config file (``[remote]``) over the workspace's
    (``[workspace.remote]`` in the root BUILD.toml). None: no remote."""
    env = os.environ if env is None else env
    user_file = user_config_path() if user_file is None else user_file
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}

    def take(values: Mapping[str, Any], source: str) -> None:
        for k, v in values.items():
            if v is not None and v != [] and v != "":
                merged[k] = v
                origin[k] = source

    if not isinstance(workspace, Mapping):
        raise RemoteError(f"{where}: [workspace.remote] must be a table")
    take(workspace, where)
    if user_file.is_file():
        try:
            data = tomllib.loads(user_file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise RemoteError(f"{user_file}: {exc}", hint="fix or remove the file") from exc
        section = data.get("remote", {})
        if not isinstance(section, dict):
            raise RemoteError(f"{user_file}: [remote] must be a table")
        take(section, str(user_file))
    take({"cache": env.get("HERMETIC_REMOTE_CACHE"), "upload": env.get("HERMETIC_REMOTE_UPLOAD"),
          "executor": env.get("HERMETIC_REMOTE_EXECUTOR"), "min_signers": env.get("HERMETIC_REMOTE_MIN_SIGNERS")},
         "the environment")
    take(cli, "the command line")
    executor = merged.get("executor")
    if executor:
        if urlsplit(str(executor)).scheme not in ("grpc", "grpcs"):
            raise RemoteError(f'{origin["executor"]}: remote executor "{executor}" is not a grpc(s):// URL',
                              hint="the Remote Execution API speaks gRPC: e.g. --remote-executor grpc://host:50051")
        executor = str(executor).rstrip("/")
        if not merged.get("cache"):  # results of remote actions are shared through the same server
            merged["cache"] = executor
            origin["cache"] = origin["executor"]
    url = merged.get("cache")
    if not url:
        return None
    known = {"cache", "upload", "instance", "timeout", "token_env", "token_file", "tls_ca_file",
             "tls_client_cert", "tls_client_key", "trusted_keys", "signing_key", "max_errors", "upload_local_hits",
             "executor", "min_signers"}
    for k in merged:
        if k not in known:
            raise RemoteError(f'{origin[k]}: unknown remote setting "{k}"',
                              hint="known settings: " + ", ".join(sorted(known)))
    scheme = urlsplit(str(url)).scheme
    if scheme not in ("http", "https", "grpc", "grpcs"):
        raise RemoteError(f'{origin["cache"]}: remote cache "{url}" is not an http(s):// or grpc(s):// URL',
                          hint="e.g. --remote-cache http://cache.example:8080/hermetic or grpc://host:8980")
    def flag(name: str, default: bool) -> bool:
        value = merged.get(name, default)
        if isinstance(value, str):
            if value.lower() not in _BOOL:
                raise RemoteError(f'{origin[name]}: {name} must be true or false, not "{value}"')
            return _BOOL[value.lower()]
        return bool(value)

    upload = flag("upload", True)
    upload_local_hits = flag("upload_local_hits", False)
    token = None
    token_env = str(merged.get("token_env", "HERMETIC_REMOTE_TOKEN"))
    if merged.get("token_file"):
        try:
            token = Path(str(merged["token_file"])).expanduser().read_text().strip()
        except OSError as exc:
            raise RemoteError(f'{origin["token_file"]}: cannot read token_file {merged["token_file"]}: '
                              f"{exc.strerror}") from exc
    elif env.get(token_env):
        token = env[token_env].strip()
    trusted = tuple(_signing.PublicKey.parse(str(k), f"{origin['trusted_keys']}: trusted key")
                    for k in merged.get("trusted_keys", ()))
    signing = None
    if merged.get("signing_key"):
        signing = _signing.SecretKey.load(Path(str(merged["signing_key"])).expanduser())
    try:
        timeout = float(merged.get("timeout", 10.0))
        max_errors = int(merged.get("max_errors", 3))
    except (TypeError, ValueError) as exc:
        raise RemoteError(f"remote timeout/max_errors must be numbers ({exc})") from exc
    min_signers = merged.get("min_signers", 1)
    if isinstance(min_signers, str) and min_signers.strip().isdigit():
        min_signers = int(min_signers)
    if isinstance(min_signers, bool) or not isinstance(min_signers, int) or min_signers < 1:
        raise RemoteError(f'{origin["min_signers"]}: min_signers must be a whole number of at least 1, '
                          f'not "{min_signers}"', hint="e.g. min_signers = 2 with two or more trusted_keys")
    if min_signers > 1 and min_signers > len({k.name for k in trusted}):
        raise RemoteError(f'{origin["min_signers"]}: min_signers = {min_signers} needs at least {min_signers} '
                          f"trusted keys with distinct names, and {len(trusted)} are set"
                          + (f' ({origin["trusted_keys"]})' if "trusted_keys" in origin else ""),
                          hint="add the builders' public keys to trusted_keys (--trusted-key KEY, once per key)")
    return RemoteConfig(str(url).rstrip("/"), bool(upload), str(merged.get("instance", "")), timeout, token,
                        merged.get("tls_ca_file"), merged.get("tls_client_cert"), merged.get("tls_client_key"),
                        trusted, signing, max_errors, upload_local_hits, executor or None, min_signers)


# -- transports ----------------------------------------------------------------


class Transport(Protocol):
    def get_ac(self, key: str, size: int) -> bytes | None: ...
    def put_ac(self, key: str, size: int, data: bytes) -> None: ...
    def find_missing(self, digests: Sequence[Digest]) -> list[Digest]: ...
    def read(self, digests: Sequence[Digest]) -> Iterable[tuple[Digest, bytes]]: ...
    def write(self, digest: Digest, path: Path) -> None: ...
    def close(self) -> None: ...


class HttpTransport:
    """The Bazel HTTP cache protocol over urllib3 (pooled, keep-alive)."""

    def __init__(self, config: RemoteConfig) -> None:
        import urllib3

        self.base = config.url
        headers = {"User-Agent": "hermetic"}
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        kw: dict[str, Any] = {}
        if config.tls_ca_file:
            kw["ca_certs"] = config.tls_ca_file
        if config.tls_client_cert:
            kw["cert_file"] = config.tls_client_cert
            kw["key_file"] = config.tls_client_key
        self.http = urllib3.PoolManager(num_pools=4, maxsize=8, headers=headers,
                                        timeout=urllib3.Timeout(connect=min(config.timeout, 3.0),
                                                                read=config.timeout),
                                        retries=urllib3.Retry(total=1, connect=1, read=0, redirect=2,
                                                              status=0, backoff_factor=0.1), **kw)
        self._urllib3 = urllib3

    def _request(self, method: str, path: str, body: Any = None, preload: bool = True) -> Any:
        try:
            return self.http.request(method, f"{self.base}/{path}", body=body, preload_content=preload)
        except self._urllib3.exceptions.HTTPError as exc:
            raise TransportError(f"{method} /{path}: {exc}") from exc

    def get_ac(self, key: str, size: int) -> bytes | None:
        r = self._request("GET", f"ac/{key}")
        if r.status == 404:
            return None
        if r.status != 200:
            raise TransportError(f"GET /ac/{key[:12]}…: HTTP {r.status}")
        return r.data  # type: ignore[no-any-return]

    def put_ac(self, key: str, size: int, data: bytes) -> None:
        r = self._request("PUT", f"ac/{key}", body=data)
        if r.status not in (200, 201, 204):
            raise TransportError(f"PUT /ac/{key[:12]}…: HTTP {r.status}")

    def find_missing(self, digests: Sequence[Digest]) -> list[Digest]:
        missing = []
        for d in digests:
            r = self._request("HEAD", f"cas/{d.hash}")
            if r.status == 404:
                missing.append(d)
            elif r.status != 200:
                raise TransportError(f"HEAD /cas/{d.hash[:12]}…: HTTP {r.status}")
        return missing

    def read(self, digests: Sequence[Digest]) -> Iterable[tuple[Digest, bytes]]:
        for d in digests:
            r = self._request("GET", f"cas/{d.hash}")
            if r.status == 404:
                raise TransportError(f"blob {d.hash[:12]}… is missing on the remote")
            if r.status != 200:
                raise TransportError(f"GET /cas/{d.hash[:12]}…: HTTP {r.status}")
            yield d, r.data

    def write(self, digest: Digest, path: Path) -> None:
        r = self._request("PUT", f"cas/{digest.hash}", body=path.read_bytes())
        if r.status not in (200, 201, 204):
            raise TransportError(f"PUT /cas/{digest.hash[:12]}…: HTTP {r.status}")

    def close(self) -> None:
        self.http.clear()


class GrpcTransport:
    """REAPI v2 ContentAddressableStorage + ActionCache, ByteStream for blobs
    larger than one batch."""

    def __init__(self, config: RemoteConfig) -> None:
        import grpc

        from hermetic._protos import bytestream_pb2, bytestream_pb2_grpc, remote_cache_pb2, remote_cache_pb2_grpc

        self.grpc = grpc
        self.pb = remote_cache_pb2
        self.bs = bytestream_pb2
        parts = urlsplit(config.url)
        target = parts.netloc
        options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
        if parts.scheme == "grpcs":
            def read(p: str | None) -> bytes | None:
                return Path(p).read_bytes() if p else None

            creds = grpc.ssl_channel_credentials(read(config.tls_ca_file), read(config.tls_client_key),
                                                 read(config.tls_client_cert))
            self.channel = grpc.secure_channel(target, creds, options)
        else:
            self.channel = grpc.insecure_channel(target, options)
        self.instance = config.instance
        self.timeout = config.timeout
        self.metadata = (("authorization", f"Bearer {config.token}"),) if config.token else ()
        self.cas = remote_cache_pb2_grpc.ContentAddressableStorageStub(self.channel)  # type: ignore[no-untyped-call]
        self.ac = remote_cache_pb2_grpc.ActionCacheStub(self.channel)  # type: ignore[no-untyped-call]
        self.stream = bytestream_pb2_grpc.ByteStreamStub(self.channel)  # type: ignore[no-untyped-call]

    def _call(self, fn: Any, request: Any, size: int = 0) -> Any:
        import time

        for delay in (0.1, 0.3, 0.9, None):
            try:
                return fn(request, timeout=self.timeout + size / 5e6, metadata=self.metadata)
            except self.grpc.RpcError as exc:
                if exc.code() == self.grpc.StatusCode.NOT_FOUND:
                    raise
                # a busy server (its concurrent-request limit): ask again shortly, not a fault yet
                if exc.code() == self.grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None:
                    time.sleep(delay)
                    continue
                raise TransportError(f"{exc.code().name}: {exc.details()}") from exc
        raise AssertionError("unreachable")

    def _digest(self, d: Digest) -> Any:
        return self.pb.Digest(hash=d.hash, size_bytes=d.size)

    def get_ac(self, key: str, size: int) -> bytes | None:
        req = self.pb.GetActionResultRequest(instance_name=self.instance, action_digest=self._digest(Digest(key, size)))
        try:
            return self._call(self.ac.GetActionResult, req).SerializeToString()  # type: ignore[no-any-return]
        except self.grpc.RpcError:
            return None  # NOT_FOUND

    def put_ac(self, key: str, size: int, data: bytes) -> None:
        result = self.pb.ActionResult.FromString(data)
        self._call(self.ac.UpdateActionResult, self.pb.UpdateActionResultRequest(
            instance_name=self.instance, action_digest=self._digest(Digest(key, size)), action_result=result))

    def find_missing(self, digests: Sequence[Digest]) -> list[Digest]:
        missing: list[Digest] = []
        for i in range(0, len(digests), 1000):
            chunk = digests[i:i + 1000]
            resp = self._call(self.cas.FindMissingBlobs, self.pb.FindMissingBlobsRequest(
                instance_name=self.instance, blob_digests=[self._digest(d) for d in chunk]))
            missing += [Digest(m.hash, m.size_bytes) for m in resp.missing_blob_digests]
        return missing

    def read(self, digests: Sequence[Digest]) -> Iterable[tuple[Digest, bytes]]:
        batch: list[Digest] = []
        total = 0
        for d in digests:
            if d.size > BATCH_LIMIT:
                yield d, self._read_stream(d)
                continue
            if total + d.size > BATCH_LIMIT * 3 and batch:
                yield from self._read_batch(batch)
                batch, total = [], 0
            batch.append(d)
            total += d.size
        if batch:
            yield from self._read_batch(batch)

    def _read_batch(self, digests: list[Digest]) -> Iterable[tuple[Digest, bytes]]:
        resp = self._call(self.cas.BatchReadBlobs, self.pb.BatchReadBlobsRequest(
            instance_name=self.instance, digests=[self._digest(d) for d in digests]), sum(d.size for d in digests))
        for r in resp.responses:
            if r.status.code != 0:
                raise TransportError(f"blob {r.digest.hash[:12]}…: status {r.status.code} {r.status.message}")
            yield Digest(r.digest.hash, r.digest.size_bytes), r.data

    def _read_stream(self, d: Digest) -> bytes:
        name = f"{self.instance}/blobs/{d.hash}/{d.size}" if self.instance else f"blobs/{d.hash}/{d.size}"
        try:
            chunks = [r.data for r in self.stream.Read(self.bs.ReadRequest(resource_name=name),
                                                       timeout=self.timeout + d.size / 5e6, metadata=self.metadata)]
        except self.grpc.RpcError as exc:
            raise TransportError(f"ByteStream.Read {d.hash[:12]}…: {exc.code().name}") from exc
        return b"".join(chunks)

    def write_batch(self, blobs: Sequence[tuple[Digest, bytes]]) -> None:
        """Small blobs in as few BatchUpdateBlobs requests as fit."""
        batch: list[Any] = []
        total = 0

        def flush() -> None:
            if not batch:
                return
            resp = self._call(self.cas.BatchUpdateBlobs, self.pb.BatchUpdateBlobsRequest(
                instance_name=self.instance, requests=batch), total)
            for r in resp.responses:
                if r.status.code != 0:
                    raise TransportError(f"upload {r.digest.hash[:12]}…: status {r.status.code} {r.status.message}")
            batch.clear()

        for d, data in blobs:
            if total + d.size > BATCH_LIMIT * 3:
                flush()
                total = 0
            batch.append(self.pb.BatchUpdateBlobsRequest.Request(digest=self._digest(d), data=data))
            total += d.size
        flush()

    def write(self, digest: Digest, path: Path) -> None:
        if digest.size <= BATCH_LIMIT:
            self.write_batch([(digest, path.read_bytes())])
            return
        import uuid

        prefix = f"{self.instance}/" if self.instance else ""
        name = f"{prefix}uploads/{uuid.uuid4()}/blobs/{digest.hash}/{digest.size}"

        def chunks() -> Iterable[Any]:
            with open(path, "rb") as f:
                offset = 0
                while True:
                    data = f.read(1 << 20)
                    last = offset + len(data) >= digest.size
                    yield self.bs.WriteRequest(resource_name=name if offset == 0 else "", write_offset=offset,
                                               finish_write=last, data=data)
                    offset += len(data)
                    if last:
                        return

        try:
            resp = self.stream.Write(chunks(), timeout=self.timeout + digest.size / 5e6, metadata=self.metadata)
        except self.grpc.RpcError as exc:
            raise TransportError(f"ByteStream.Write {digest.hash[:12]}…: {exc.code().name}") from exc
        if resp.committed_size != digest.size:
            raise TransportError(f"ByteStream.Write {digest.hash[:12]}… committed {resp.committed_size} bytes")

    def close(self) -> None:
        self.channel.close()


def transport_for(config: RemoteConfig) -> Transport:
    if config.scheme in ("http", "https"):
        return HttpTransport(config)
    return GrpcTransport(config)


# -- the cache the executor talks to -----------------------------------------------


@attrs.define
class RemoteStats:
    hits: int = 0
    misses: int = 0
    untrusted: int = 0
    #: signed by some trusted keys, but fewer than min_signers (k of n)
    short: int = 0
    countersigned: int = 0
    corrupt: int = 0
    errors: int = 0
    uploads: int = 0
    bytes_down: int = 0
    bytes_up: int = 0

    def to_json(self) -> dict[str, int]:
        return attrs.asdict(self)


class RemoteCache:
    """Lookups, downloads and uploads with trust and fault handling.

    Faults (connection refused, timeouts, HTTP/gRPC errors, bytes that do
    not match their digest) are never raised to the build: the lookup counts
    as a miss, hermetic says once that it is falling back to local execution,
    and after ``max_errors`` transport errors the remote is not asked again
    in this build."""

    def __init__(self, config: RemoteConfig, store: Store, report: Report | None = None,
                 transport: Transport | None = None) -> None:
        self.config = config
        self.store = store
        self.report = report or ignore
        self.transport = transport or transport_for(config)
        self.stats = RemoteStats()
        self.disabled = False
        self._lock = threading.Lock()
        self._said: set[str] = set()

    # -- faults ----------------------------------------------------------------

    def note_once(self, kind: str, message: str) -> None:
        """Say *message* unless something of *kind* was said in this build
        (a remote executor on the same server shares the one fault message)."""
        self._note_once(kind, message)

    def count_up(self, n: int) -> None:
        with self._lock:
            self.stats.bytes_up += n

    def _note_once(self, kind: str, message: str) -> None:
        with self._lock:
            if kind in self._said:
                return
            self._said.add(kind)
        self.report(Note(message))

    def _fault(self, exc: Exception, doing: str) -> None:
        with self._lock:
            self.stats.errors += 1
            errors = self.stats.errors
            if errors >= self.config.max_errors:
                self.disabled = True
        self._note_once("fault", f"remote cache {self.config.url}: {doing} failed ({exc}); "
                                 "falling back to local execution")
        if errors >= self.config.max_errors:
            self._note_once("disabled", f"remote cache {self.config.url}: {errors} errors, not used for the "
                                        "rest of this build")

    # -- reading -------------------------------------------------------------

    def lookup(self, key: str, material_size: int, label: str) -> dict[str, Any] | None:
        """The trusted result for *key*, or None. Output blobs are not
        downloaded here (see :meth:`fetch`)."""
        found = self._envelope(key, material_size, label)
        if found is None:
            return None
        result, sigs = found["result"], found.get("signatures", [])
        keys, k = self.config.trusted_keys, self.config.min_signers
        if keys:
            v = _signing.verdict(key, result, sigs, keys)
            if len(v.agree) < k:
                with self._lock:
                    if v.agree:
                        self.stats.short += 1
                    else:
                        self.stats.untrusted += 1
                if not v.agree and not v.disagree:
                    why = "is not signed by a trusted key"
                else:
                    why = v.describe(k)
                self._note_once(f"untrusted:{label}", f"remote result for {label} {why}: ignored, building locally"
                                if not v.agree and not v.disagree else
                                f"remote result for {label} refused: {why}; building locally")
                return None
        with self._lock:
            self.stats.hits += 1
        return result  # type: ignore[no-any-return]

    def _envelope(self, key: str, material_size: int, label: str, count: bool = True) -> dict[str, Any] | None:
        """The remote's envelope for *key* (result and signatures), checked
        against its digest and schema; None: none, or unusable. *count*: a
        lookup (a miss is counted), not a writer's look before it writes."""
        if self.disabled:
            return None
        try:
            data = self.transport.get_ac(key, material_size)
            if data is None:
                if count:
                    with self._lock:
                        self.stats.misses += 1
                return None
            envelope_digest = self._envelope_digest(data)
            ((_, raw),) = list(self.transport.read([envelope_digest]))
        except TransportError as exc:
            self._fault(exc, f"looking up {label}")
            return None
        except (ValueError, KeyError) as exc:
            return self._corrupt(label, f"unreadable action result ({exc})")
        self._count_down(len(raw))
        if Digest.of_bytes(raw) != envelope_digest:
            return self._corrupt(label, "its result record does not match its digest")
        try:
            env = json.loads(raw)
            result = env["result"]
            if env.get("schema") != SCHEMA or env.get("key") != key or not isinstance(result, dict) or \
                    not isinstance(env.get("signatures", []), list):
                raise ValueError("not a result for this action")
        except (ValueError, KeyError, TypeError) as exc:
            return self._corrupt(label, f"its result record is malformed ({exc})")
        return env  # type: ignore[no-any-return]

    def _corrupt(self, label: str, why: str) -> None:
        with self._lock:
            self.stats.corrupt += 1
        self.report(Note(f"remote result for {label} ignored: {why}"))
        return None

    def _envelope_digest(self, data: bytes) -> Digest:
        from hermetic._protos import remote_cache_pb2

        try:
            ar = remote_cache_pb2.ActionResult.FromString(data)
        except Exception as exc:  # protobuf's DecodeError
            raise ValueError(f"not an ActionResult: {exc}") from exc
        for f in ar.output_files:
            if f.path == RESULT_FILE:
                return Digest(f.digest.hash, f.digest.size_bytes)
        raise KeyError(RESULT_FILE)

    def _count_down(self, n: int) -> None:
        with self._lock:
            self.stats.bytes_down += n

    def fetch(self, digest: Digest, tree: bool, label: str) -> bool:
        """Bring a file blob, or a tree manifest and its members, into the
        local store, each hash-checked. False if the remote cannot serve it."""
        if self.disabled:
            return False
        try:
            if not self.store.has_blob(digest) or not self.store.verify_blob(digest):
                if not self._fetch_blobs([digest], label):
                    return False
            if tree:
                members = [d for d in self.store.tree_blobs(digest) if not self.store.has_blob(d)]
                unique = sorted(set(members))
                if unique and not self._fetch_blobs(unique, label):
                    return False
        except TransportError as exc:
            self._fault(exc, f"downloading outputs of {label}")
            return False
        return True

    def _fetch_blobs(self, digests: Sequence[Digest], label: str) -> bool:
        for d, data in self.transport.read(list(digests)):
            self._count_down(len(data))
            if Digest.of_bytes(data) != d:
                self._corrupt(label, f"blob {d.hash[:12]}… from the remote does not match its digest")
                return False
            self.store.put_bytes(data, digest=d)  # just checked: not hashed twice
        return True

    # -- writing -------------------------------------------------------------

    def share_local_hit(self, key: str, material: bytes, result: dict[str, Any], label: str) -> None:
        """With ``upload_local_hits``: upload a result found in the local
        store that the remote does not have (seeding a team cache)."""
        if self.disabled or not self.config.upload or not self.config.upload_local_hits:
            return
        try:
            if self.transport.get_ac(key, len(material)) is not None:
                return
        except TransportError as exc:
            self._fault(exc, f"looking up {label}")
            return
        self.upload(key, material, {k: v for k, v in result.items() if k != "remote"}, label)

    def upload(self, key: str, material: bytes, result: dict[str, Any], label: str) -> None:
        """Blobs first (what the remote lacks), then the signed result. If
        the remote already holds a result with the same outputs, this
        builder reproduced it: its signature is added to that envelope
        (countersigning) instead of replacing it. A different result is
        replaced only if fewer than min_signers trusted keys vouch for it."""
        if self.disabled or not self.config.upload:
            return
        signatures: list[dict[str, Any]] = []
        existing = self._envelope(key, len(material), label, count=False)
        if existing is not None:
            if existing["result"].get("outputs") == result.get("outputs"):
                self.countersign(key, len(material), result, label, existing)  # (no key: nothing to add)
                return
            keys = self.config.trusted_keys
            v = _signing.verdict(key, existing["result"], existing.get("signatures", []), keys)
            if keys and len(v.agree) >= self.config.min_signers:
                self.report(Note(f"remote result for {label} has other outputs than this build's and is "
                                 f"{v.describe(self.config.min_signers)}: not replaced (hermetic verify "
                                 "--against-cache names the difference)"))
                return
        if self.config.signing_key is not None:
            signatures.append(_signing.sign(key, result, self.config.signing_key))
        self.put_envelope(key, len(material), result, signatures, label)

    def countersign(self, key: str, material_size: int, result: dict[str, Any], label: str,
                    existing: dict[str, Any] | None = None) -> str:
        """Add this builder's signature to the remote's result for *key* if
        its outputs are *result*'s (this builder made the same bytes).
        Returns ``signed``, ``already`` (this key signed it before),
        ``differs`` (other outputs: nothing signed), ``missing`` or ``no-key``."""
        secret = self.config.signing_key
        if secret is None:
            return "no-key"
        env = existing if existing is not None else self._envelope(key, material_size, label, count=False)
        if env is None:
            return "missing"
        theirs = env["result"]
        if theirs.get("outputs") != result.get("outputs"):
            return "differs"
        sigs = [s for s in env.get("signatures", []) if isinstance(s, dict)]
        mine = _signing.verdict(key, theirs, sigs, [secret.public()])
        if mine.agree:
            return "already"
        sigs.append(_signing.sign(key, theirs, secret))
        if self.put_envelope(key, material_size, theirs, sigs, label):
            with self._lock:
                self.stats.countersigned += 1
            return "signed"
        return "missing"

    def put_envelope(self, key: str, material_size: int, result: dict[str, Any],
                     signatures: list[dict[str, Any]], label: str) -> bool:
        """Write *result* with exactly *signatures* under *key* (its blobs
        first). False: not written (a fault, or a blob this store lacks)."""
        envelope: dict[str, Any] = {"schema": SCHEMA, "key": key, "result": result, "signatures": signatures}
        env_d = self.store.put_bytes(canonical_json(envelope))
        from hermetic._protos import remote_cache_pb2 as pb

        files = [pb.OutputFile(path=RESULT_FILE, digest=pb.Digest(hash=env_d.hash, size_bytes=env_d.size))]
        # The action digest is (key, len(material)); the material itself is not
        # uploaded under it: servers may parse that blob as an REAPI Action.
        blobs = {env_d}
        for path, e in sorted(result["outputs"].items()):
            d = Digest(e["hash"], e["size"])
            blobs.add(d)
            if e.get("tree"):
                blobs.update(self.store.tree_blobs(d))
            files.append(pb.OutputFile(path=path, digest=pb.Digest(hash=d.hash, size_bytes=d.size),
                                       is_executable=bool(e.get("x"))))
        if result.get("log"):
            blobs.add(Digest(result["log"]["hash"], result["log"]["size"]))
        try:
            missing = self.transport.find_missing(sorted(blobs))
            for d in missing:
                path = self.store.blob_path(d.hash)
                try:
                    ok = hash_file(path) == d
                except OSError:
                    ok = False
                if not ok:  # our own store lost or damaged it: nothing to share
                    return False
                self.transport.write(d, path)
                with self._lock:
                    self.stats.bytes_up += d.size
            self.transport.put_ac(key, material_size, pb.ActionResult(output_files=files).SerializeToString())
            with self._lock:
                self.stats.uploads += 1
        except TransportError as exc:
            self._fault(exc, f"uploading {label}")
            return False
        return True

    def close(self) -> None:
        try:
            self.transport.close()
        except Exception:  # noqa: BLE001 - closing a broken connection is not an error
            pass

"""The local content-addressed store (blobs by sha256) and action cache.

Layout under the cache root::

    cas/<2 hex>/<sha256>     blobs, read-only, written by atomic rename
    ac/<2 hex>/<key>         action results: checksummed JSON
    tmp/                     staging and sandbox directories (same filesystem)
    digests.json             source digest cache: path+inode+size+mtime -> sha256
    last-build.json          what the last build hit, missed and ran
    lock                     shared by builds, exclusive for gc and clean

Every write lands under a temporary name and is renamed into place, so a
reader sees a whole entry or none, and two builds writing the same blob or
result (same key, same bytes) cannot corrupt each other. Every read checks:
blobs by size (and by content before use as an action's input or output), and
results by their checksum and the presence of the blobs they name.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import json
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from hermetic._archive import check_link_target
from hermetic.errors import CacheError
from hermetic.model import Digest, canonical_json

_CHUNK = 1 << 20
T = TypeVar("T")
AC_VERSION = 1
#: this process's id, for temporary names (kept up to date across fork)
_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


def hash_file(path: Path | str) -> Digest:
    return hash_file_stat(path)[0]


def hash_file_stat(path: Path | str) -> tuple[Digest, os.stat_result]:
    """The file's digest and its stat, as it was opened. A file of up to a
    megabyte (most outputs) is one read: four system calls in all, where a
    buffered file object made nine."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if st.st_size < _CHUNK:
            data = os.read(fd, st.st_size + 1)  # a short read of a regular file: its end
            if len(data) <= st.st_size:
                return Digest(hashlib.sha256(data).hexdigest(), len(data)), st
            os.lseek(fd, 0, os.SEEK_SET)  # it grew while we looked: read it whole below
        with open(fd, "rb", closefd=False) as f:
            h = hashlib.file_digest(f, "sha256")
            return Digest(h.hexdigest(), f.tell()), st
    finally:
        os.close(fd)


def default_cache_dir() -> Path:
    env = os.environ.get("HERMETIC_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hermetic"


def _disk_error(exc: OSError, what: str) -> CacheError:
    if exc.errno == errno.ENOSPC:
        return CacheError(f"no space left on device while {what}", hint="free disk space or run "
                          "`hermetic cache gc --max-size SIZE`", reason="disk-full")
    return CacheError(f"{what}: {exc}", reason="cache-io")


class Store:
    """Content-addressed blobs + action cache in one directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.cas = self.root / "cas"
        self.ac = self.root / "ac"
        self.tmp = self.root / "tmp"
        self._cas, self._ac = str(self.cas), str(self.ac)
        self._shards: set[Path] = set()
        self._tmp = str(self.tmp)
        self._names = itertools.count()  # staging and temporary names: unique with the pid
        for d in (self.cas, self.ac, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        self._digests: dict[str, list[Any]] | None = None
        self._digests_dirty = False
        self._lock = threading.Lock()
        self._known: dict[str, tuple[int, int, int]] = {}  # blobs hashed by this process: (inode, size, mtime)

    # -- locking ------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, exclusive: bool = False) -> Iterator[None]:
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    # -- blobs --------------------------------------------------------------

    def _shard(self, d: Path) -> None:
        """Make a fan-out directory (``cas/ab``, ``ac/ab``) once per process."""
        if d not in self._shards:
            d.mkdir(exist_ok=True)
            self._shards.add(d)

    def blob_path(self, sha256: str) -> Path:
        return self.cas / sha256[:2] / sha256

    def has_blob(self, digest: Digest) -> bool:
        h = digest.hash
        try:  # a string path: the no-op and re-check paths ask this once per output
            return os.stat(f"{self._cas}/{h[:2]}/{h}").st_size == digest.size
        except OSError:
            return False

    def verify_blob(self, digest: Digest) -> bool:
        """Re-hash a blob; a corrupt one is deleted (and reported as absent).
        A blob this process stored or re-hashed, whose inode, size and mtime
        are what they were then, is not hashed again (an input read by many
        actions of one build is hashed once; a write to it changes its mtime:
        with the fine-grained timestamps of Linux 6.13 and later even within
        one clock tick of the store's own stat, before that not within it,
        the same limit as make's and ninja's)."""
        h = digest.hash
        p = f"{self._cas}/{h[:2]}/{h}"
        try:
            st = os.stat(p)
            if self._known.get(digest.hash) == (st.st_ino, st.st_size, st.st_mtime_ns) and st.st_size == digest.size:
                return True
            got = hash_file(p)
        except OSError:
            return False
        if got != digest:
            with contextlib.suppress(OSError):
                os.unlink(p)
            return False
        self._known[digest.hash] = (st.st_ino, st.st_size, st.st_mtime_ns)
        return True

    def _remember(self, dest: Path, d: Digest) -> None:
        with contextlib.suppress(OSError):
            st = os.stat(dest)
            if st.st_size == d.size:
                self._known[d.hash] = (st.st_ino, st.st_size, st.st_mtime_ns)

    def _fresh_name(self, prefix: str) -> str:
        """A name under tmp/ no one else uses now (pid and a counter: no
        random name, no getpid per call), for a file the caller creates
        exclusively (and, on a clash with a stale one, asks again)."""
        return f"{self._tmp}/{prefix}{_PID[0]}.{next(self._names)}"

    def _create_fresh(self, prefix: str, create: Callable[[str], T]) -> tuple[str, T]:
        """``create(name)`` (which fails if the name exists) under a fresh
        name; a name left by a process that had this pid: the next one."""
        while True:
            name = self._fresh_name(prefix)
            try:
                return name, create(name)
            except FileExistsError:
                continue

    def staging_dir(self, prefix: str) -> Path:
        return Path(self._create_fresh(prefix, lambda p: os.mkdir(p, 0o700))[0])

    def _copy_to_tmp(self, path: Path | str) -> str:
        """A read-only copy of *path* under tmp/, to install as a blob."""
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="blob.")
        os.close(fd)
        shutil.copyfile(path, tmp)
        os.chmod(tmp, 0o444)
        return tmp

    def put_file(self, path: Path, *, move: bool = False, digest: Digest | None = None,
                 keep: bool = False) -> Digest:
        """Add the file at *path*. With *move* the file is renamed into the
        store (it must be on the same filesystem) instead of copied; with
        *keep* as well, it also stays at *path*, read-only: the same inode
        (or, if the store has those bytes already, its own)."""
        st = None
        try:
            if digest is None:
                d, st = hash_file_stat(path)
            else:
                d = digest
            dest = self.blob_path(d.hash)
            if self.has_blob(d):
                with contextlib.suppress(OSError):
                    # recently used, for gc: the access time only. The blob may be hard-linked
                    # into a running action's inputs, where a newer mtime would tell make that
                    # a source changed mid-build (OpenSSL's Makefile then re-runs Configure)
                    os.utime(dest, ns=(time.time_ns(), os.stat(dest).st_mtime_ns))
                if keep:
                    os.chmod(path, 0o444)
                return d
            self._shard(dest.parent)
            if move:  # linked into the store from where it is: no temporary file to create
                tmp = str(path)
                os.chmod(tmp, 0o444)
            else:
                tmp = self._copy_to_tmp(path)
            if self._install(tmp, dest, d, keep=move and keep):
                if move and st is not None and st.st_size == d.size:  # the same inode, mtime untouched
                    self._known[d.hash] = (st.st_ino, st.st_size, st.st_mtime_ns)
                else:
                    self._remember(dest, d)
            return d
        except OSError as exc:
            with contextlib.suppress(Exception):
                os.unlink(tmp)  # type: ignore[possibly-undefined]
            raise _disk_error(exc, f"storing {path}") from exc

    def _install(self, tmp: str, dest: Path, d: Digest, keep: bool = False) -> bool:
        """Move the finished blob *tmp* to *dest* unless another writer got
        there first (False: the blob there is theirs); with *keep*, link it
        there and leave *tmp* where it is. A blob is never renamed over:
        link(2) of a path that a concurrent rename replaces can fail with
        ENOENT, so a reader hard-linking the blob into an action's inputs
        would see it vanish."""
        ours = True
        try:
            os.link(tmp, dest)
        except FileExistsError:
            if not self.has_blob(d):  # the one there is damaged: replace it
                os.replace(self._copy_if(keep, tmp), dest)
                return True
            ours = False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            os.replace(self._copy_if(keep, tmp), dest)  # a file system without hard links
            return True
        if not keep:
            os.unlink(tmp)
        return ours

    def _copy_if(self, keep: bool, path: str) -> str:
        """*path*, or (*keep*: it must stay) a read-only copy of it under tmp/."""
        return self._copy_to_tmp(path) if keep else path

    def put_bytes(self, data: bytes, *, digest: Digest | None = None) -> Digest:
        """Add *data*; *digest*, if the caller has just computed it, is not
        computed again."""
        d = digest or Digest.of_bytes(data)
        if self.has_blob(d):
            return d
        try:
            fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="blob.")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o444)
            dest = self.blob_path(d.hash)
            self._shard(dest.parent)
            if self._install(tmp, dest, d):
                self._remember(dest, d)
        except OSError as exc:
            with contextlib.suppress(Exception):
                os.unlink(tmp)
            raise _disk_error(exc, "storing a blob") from exc
        return d

    def read_bytes(self, digest: Digest) -> bytes:
        try:
            data = self.blob_path(digest.hash).read_bytes()
        except OSError as exc:
            raise CacheError(f"blob {digest} is missing from the store", reason="missing-blob") from exc
        if Digest.of_bytes(data) != digest:
            self.blob_path(digest.hash).unlink(missing_ok=True)
            raise CacheError(f"blob {digest} is corrupt; it was removed", hint="build again",
                             reason="corrupt-blob")
        return data

    def link_blob(self, digest: Digest, dest: Path | str, *, executable: bool = False) -> None:
        """Place blob at *dest*: a hard link (read-only) or, for executables
        and across filesystems, a copy."""
        h = digest.hash
        src = f"{self._cas}/{h[:2]}/{h}"
        if not executable:
            try:
                os.link(src, dest)
                return
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EMLINK, errno.EPERM):
                    raise
        shutil.copyfile(src, dest)
        os.chmod(dest, 0o555 if executable else 0o444)

    # -- trees --------------------------------------------------------------

    def put_tree(self, root: Path, *, move: bool = True, digests: dict[str, tuple[str, int]] | None = None,
                 keep: bool = False) -> Digest:
        """Store every file under *root* and a manifest; return the manifest's
        digest (the tree's Merkle digest). Symlinks must stay inside the tree.
        *digests*: (sha256, size) by path in the tree that the caller took as
        it wrote the files (not read again). *keep*: the files stay under
        *root* too, read-only (executables a copy, 0555): the tree is then
        what :meth:`checkout` would make of it (see :meth:`adopt_checkout`)."""
        files: list[list[Any]] = []
        links: list[list[str]] = []
        dirs: list[str] = []
        root = Path(root)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            for name in sorted(dirnames):
                full = os.path.join(dirpath, name)
                rel = os.path.normpath(os.path.join(rel_dir, name))
                if os.path.islink(full):
                    links.append([rel, _check_link(root, full, rel)])
                else:
                    dirs.append(rel)
            dirnames[:] = [n for n in dirnames if not os.path.islink(os.path.join(dirpath, n))]
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                rel = os.path.normpath(os.path.join(rel_dir, name))
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    links.append([rel, _check_link(root, full, rel)])
                    continue
                if not stat.S_ISREG(st.st_mode):
                    raise CacheError(f"{rel}: not a regular file, cannot be stored", reason="bad-output")
                x = bool(st.st_mode & 0o111)
                known = digests.get(rel) if digests is not None else None
                d = Digest(*known) if known is not None and known[1] == st.st_size else None
                if keep and x:  # a blob is 0444: the checkout's executable is a file of its own
                    d = self.put_file(Path(full), digest=d)
                    os.chmod(full, 0o555)
                else:
                    d = self.put_file(Path(full), move=move, digest=d, keep=keep)
                files.append([rel, d.hash, d.size, x])
        manifest = {"dirs": sorted(dirs), "files": sorted(files), "links": sorted(links)}
        return self.put_bytes(canonical_json(manifest))

    def tree_manifest(self, digest: Digest) -> dict[str, Any]:
        return json.loads(self.read_bytes(digest))  # type: ignore[no-any-return]

    def materialize_tree(self, digest: Digest, dest: Path, *, verify: bool = True,
                         writable: bool = False) -> None:
        m = self.tree_manifest(digest)
        dest.mkdir(parents=True, exist_ok=True)
        for d in m["dirs"]:
            (dest / d).mkdir(parents=True, exist_ok=True)
        for rel, h, size, x in m["files"]:
            blob = Digest(h, size)
            if verify and not self.verify_blob(blob):
                raise CacheError(f"blob {blob} of a stored tree is missing or corrupt",
                                 hint="build again: the entry has been discarded", reason="corrupt-blob")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if writable:
                shutil.copyfile(self.blob_path(h), target)
                os.chmod(target, 0o755 if x else 0o644)
            else:
                self.link_blob(blob, target, executable=x)
        for rel, tgt in m["links"]:
            p = dest / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(tgt, p)

    def checkout(self, digest: Digest) -> Path:
        """A read-only copy of stored tree *digest* (hard links to its blobs,
        each re-hashed once, when the checkout is made), shared by every
        action that reads it: toolchain packages are shown to sandboxes from
        here instead of being linked into each action's inputs file by file.
        ``gc`` removes checkouts; the next use makes them again."""
        dest = self.root / "trees" / digest.hash
        if (dest / ".complete").is_file():
            return dest
        staging = self.staging_dir("checkout.")
        try:
            self.materialize_tree(digest, staging / "tree", verify=True)
            return self.adopt_checkout(staging / "tree", digest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def adopt_checkout(self, tree: Path, digest: Digest) -> Path:
        """Make *tree* (read-only files with stored tree *digest*'s bytes:
        :meth:`put_tree` with keep) the checkout of *digest*, by renaming it,
        unless there is one already (then *tree* stays where it is)."""
        dest = self.root / "trees" / digest.hash
        try:
            if (dest / ".complete").is_file():
                return dest
            dest.parent.mkdir(parents=True, exist_ok=True)
            (tree / ".complete").write_text(str(digest) + "\n")
            try:
                os.rename(tree, dest)
            except OSError:
                if not (dest / ".complete").is_file():  # not another build that made it first
                    raise
        except OSError as exc:
            raise _disk_error(exc, f"checking out tree {digest}") from exc
        return dest

    def tree_blobs(self, digest: Digest) -> list[Digest]:
        m = self.tree_manifest(digest)
        return [Digest(h, s) for _, h, s, _ in m["files"]]

    # -- action cache -------------------------------------------------------

    def _ac_path(self, key: str) -> Path:
        return self.ac / key[:2] / key

    def action_size(self, key: str) -> int | None:
        """The size of *key*'s action-cache entry (None: there is none)."""
        try:
            return os.stat(f"{self._ac}/{key[:2]}/{key}").st_size
        except OSError:
            return None

    def get_action(self, key: str, *, deep: bool = False) -> dict[str, Any] | None:
        """The stored result for *key*, or None. A damaged entry, or one whose
        blobs are gone, is discarded. *deep* also checks every file of every
        output tree (gc does; the no-op path checks tree manifests only and
        re-hashes members when it uses them)."""
        p = self._ac_path(key)
        try:
            raw = p.read_bytes()
        except OSError:
            return None
        try:
            env = json.loads(raw)
            payload = env["result"]
            ok = (env.get("sha256") == hashlib.sha256(canonical_json(payload)).hexdigest()
                  and payload.get("key") == key and payload.get("version") == AC_VERSION)
        except (ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if ok:
            for out in payload["outputs"].values():
                d = Digest(out["hash"], out["size"])
                if not self.has_blob(d):
                    ok = False
                    break
                if deep and out.get("tree"):
                    try:
                        members = self.tree_blobs(d)
                    except (CacheError, ValueError, KeyError, TypeError):
                        ok = False
                        break
                    if not all(self.has_blob(m) for m in members):
                        ok = False
                        break
        if not ok:
            with contextlib.suppress(OSError):
                p.unlink()
            return None
        return payload  # type: ignore[no-any-return]

    def drop_action(self, key: str) -> None:
        if key:
            with contextlib.suppress(OSError):
                self._ac_path(key).unlink()

    def put_action(self, key: str, result: dict[str, Any]) -> None:
        payload = canonical_json(dict(result, key=key, version=AC_VERSION))
        # canonical_json({"result": payload, "sha256": ...}), the payload encoded once
        data = b'{"result":' + payload + b',"sha256":"' + hashlib.sha256(payload).hexdigest().encode() + b'"}'
        p = self._ac_path(key)
        try:
            self._shard(p.parent)
            tmp, fd = self._create_fresh(
                "ac.", lambda p: os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.replace(tmp, p)
        except OSError as exc:
            with contextlib.suppress(Exception):
                os.unlink(tmp)
            raise _disk_error(exc, "writing an action result") from exc

    # -- digest cache for source files ---------------------------------------

    def source_digest(self, path: Path) -> Digest:
        """sha256 of a workspace file, remembered by (inode, size, mtime,
        ctime). A file modified in the last two seconds is always re-hashed,
        so a same-size edit within the mtime granularity is never missed."""
        st = os.stat(path)
        with self._lock:
            if self._digests is None:
                try:
                    self._digests = json.loads((self.root / "digests.json").read_text())
                except (OSError, ValueError):
                    self._digests = {}
            sig = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
            hit = self._digests.get(str(path))
            if hit and hit[:4] == sig:
                return Digest(hit[4], st.st_size)
        d = hash_file(path)
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > 2_000_000_000:
            with self._lock:
                assert self._digests is not None
                self._digests[str(path)] = [*sig, d.hash]
                self._digests_dirty = True
        return d

    def save_digests(self) -> None:
        with self._lock:
            if not self._digests_dirty or self._digests is None:
                return
            with contextlib.suppress(OSError):
                fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="digests.")
                with os.fdopen(fd, "w") as f:
                    json.dump(self._digests, f)
                os.replace(tmp, self.root / "digests.json")
            self._digests_dirty = False

    # -- maintenance --------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        blobs = size = acs = 0
        for sub in self.cas.iterdir() if self.cas.exists() else ():
            for f in sub.iterdir():
                blobs += 1
                size += f.stat().st_size
        for sub in self.ac.iterdir() if self.ac.exists() else ():
            acs += sum(1 for _ in sub.iterdir())
        last: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            last = json.loads((self.root / "last-build.json").read_text())
        return {"root": str(self.root), "blobs": blobs, "bytes": size, "action_results": acs,
                "last_build": last}

    def gc(self, max_size: int) -> dict[str, int]:
        """Delete least recently used blobs until the store fits *max_size*
        bytes, then every action result that names a deleted blob."""
        with self.locked(exclusive=True):
            entries = []
            total = 0
            for sub in self.cas.iterdir():
                for f in sub.iterdir():
                    st = f.stat()
                    entries.append((max(st.st_atime, st.st_mtime), st.st_size, f))
                    total += st.st_size
            entries.sort()
            removed = freed = 0
            for _, size, f in entries:
                if total <= max_size:
                    break
                f.unlink(missing_ok=True)
                total -= size
                freed += size
                removed += 1
            dropped = 0
            if removed:  # the action logs and build records may name what is gone
                from hermetic._incremental import forget

                forget(self.root)
                for sub in self.ac.iterdir():
                    for f in sub.iterdir():
                        if self.get_action(f.name, deep=True) is None:
                            dropped += 1
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir(exist_ok=True)
            shutil.rmtree(self.root / "trees", ignore_errors=True)  # checkouts: made again when used
            from hermetic._history import prune

            prune(self.root, {f.name for sub in self.ac.iterdir() for f in sub.iterdir()})
            return {"blobs_removed": removed, "bytes_freed": freed, "results_dropped": dropped,
                    "bytes_kept": total}


def _check_link(root: Path, full: str, rel: str) -> str:
    target = os.readlink(full)
    check_link_target(rel, target, str(root))
    return target

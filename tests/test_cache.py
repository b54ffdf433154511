"""The local store: atomic, verified on read, garbage-collected by size."""

import os

import pytest

from hermetic._cache import Store
from hermetic.model import Digest


def test_put_and_read(tmp_path):
    s = Store(tmp_path)
    d = s.put_bytes(b"hello")
    assert d == Digest.of_bytes(b"hello")
    assert s.read_bytes(d) == b"hello"
    assert os.stat(s.blob_path(d.hash)).st_mode & 0o777 == 0o444
    assert not list(s.tmp.iterdir())


def test_corrupt_blob_detected_and_removed(tmp_path):
    s = Store(tmp_path)
    d = s.put_bytes(b"hello")
    p = s.blob_path(d.hash)
    p.chmod(0o644)
    p.write_bytes(b"jello")
    assert not s.verify_blob(d)
    assert not p.exists()


def test_action_result_checksum(tmp_path):
    s = Store(tmp_path)
    d = s.put_bytes(b"x")
    s.put_action("k" * 64, {"outputs": {"o": {"hash": d.hash, "size": d.size}}})
    assert s.get_action("k" * 64)["outputs"]["o"]["hash"] == d.hash
    f = s.ac / "kk" / ("k" * 64)
    f.write_bytes(f.read_bytes().replace(b'"size":1', b'"size":2'))
    assert s.get_action("k" * 64) is None and not f.exists()


def test_result_with_missing_blob_is_a_miss(tmp_path):
    s = Store(tmp_path)
    d = s.put_bytes(b"x")
    s.put_action("a" * 64, {"outputs": {"o": {"hash": d.hash, "size": d.size}}})
    s.blob_path(d.hash).unlink()
    assert s.get_action("a" * 64) is None


def test_gc_evicts_least_recently_used(tmp_path):
    s = Store(tmp_path)
    old = s.put_bytes(b"a" * 1000)
    os.utime(s.blob_path(old.hash), (1, 1))
    new = s.put_bytes(b"b" * 1000)
    s.put_action("c" * 64, {"outputs": {"o": {"hash": old.hash, "size": old.size}}})
    res = s.gc(1500)
    assert res["blobs_removed"] == 1 and res["results_dropped"] == 1
    assert s.has_blob(new) and not s.has_blob(old)


def test_source_digest_sees_same_size_edit(tmp_path):
    s = Store(tmp_path / "c")
    f = tmp_path / "f.c"
    f.write_text("int a;")
    d1 = s.source_digest(f)
    f.write_text("int b;")  # same size, within the mtime granularity
    assert s.source_digest(f) != d1


def test_disk_full_is_a_clear_error(tmp_path, monkeypatch):
    s = Store(tmp_path)
    import errno
    import tempfile

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(Exception) as e:
        s.put_bytes(b"data")
    assert e.value.reason == "disk-full"
    assert not any(p.is_file() for p in s.cas.rglob("*"))


def test_gc_drops_results_whose_tree_lost_a_member(tmp_path):
    s = Store(tmp_path / "c")
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "a").write_bytes(b"a" * 1000)
    (tree / "b").write_bytes(b"b" * 10)
    d = s.put_tree(tree)
    s.put_action("d" * 64, {"outputs": {"o": {"hash": d.hash, "size": d.size, "tree": True}}})
    big = s.blob_path(Digest.of_bytes(b"a" * 1000).hash)
    os.utime(big, (1, 1))  # the oldest: evicted first, the manifest survives
    res = s.gc(800)
    assert res["results_dropped"] == 1 and s.get_action("d" * 64) is None



def test_concurrent_first_puts_never_make_a_blob_vanish(tmp_path):
    """Two actions storing the same new sources at once, each hard-linking
    them into its inputs right after: the second writer must not rename over
    the first's blob (link(2) of the replaced inode fails with ENOENT). The
    old rename-over code failed here 4 to 9 times in 300 rounds."""
    import threading

    store = Store(tmp_path / "store")
    srcs = []
    for i in range(12):
        p = tmp_path / f"src{i}"
        p.write_bytes(b"x%d\n" % i * 50)
        srcs.append(p)
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker(n: int) -> None:
        for r in range(300):
            barrier.wait()
            for i, src in enumerate(srcs):
                try:
                    store.link_blob(store.put_file(src), tmp_path / f"in-{n}-{r}-{i}")
                except OSError as exc:
                    errors.append(exc)
            barrier.wait()
            if n == 0:  # the sources are new again in the next round
                for f in store.cas.rglob("*"):
                    if f.is_file():
                        f.unlink()
                for f in tmp_path.glob("in-*"):
                    f.unlink()
            barrier.wait()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_unchanged_sources_are_not_rehashed(tmp_path, monkeypatch):
    """The digest cache answers for a file untouched since (inode, size,
    mtime, ctime) were recorded, outside the racy two-second window."""
    import hermetic._cache as cache_mod

    s = Store(tmp_path / "store")
    src = tmp_path / "big.c"
    src.write_bytes(b"int x;\n" * 1000)
    old = src.stat().st_mtime - 10
    os.utime(src, (old, old))
    calls = []
    real = cache_mod.hash_file_stat  # hash_file's too
    monkeypatch.setattr(cache_mod, "hash_file_stat", lambda p: calls.append(p) or real(p))
    import time

    time.sleep(2.1)  # ctime (set by utime) must leave the racy window too
    first = s.source_digest(src)
    s.save_digests()
    again = Store(tmp_path / "store").source_digest(src)  # a new process: the cache is on disk
    assert first == again and len(calls) == 1


def test_reusing_a_blob_never_changes_its_mtime(tmp_path):
    """A blob is hard-linked into running actions' inputs: marking it used
    (for gc) must not make make(1) there think a source changed mid-build."""
    import os
    import time

    store = Store(tmp_path / "store")
    src = tmp_path / "Configure"
    src.write_bytes(b"#!/usr/bin/perl\n")
    d = store.put_file(src)
    blob = store.blob_path(d.hash)
    os.utime(blob, ns=(1_000_000_000, 1_000_000_000))
    store.put_file(src)  # the same content again (another action's output, an extract)
    st = os.stat(blob)
    assert st.st_mtime_ns == 1_000_000_000
    assert st.st_atime_ns > time.time_ns() - 60_000_000_000  # but it counts as recently used


def test_a_blob_this_process_hashed_is_not_hashed_again_until_it_changes(tmp_path, monkeypatch):
    """An input read by many actions of one build is hashed when stored and
    then only stat'ed; a write to it (a new mtime) is still caught."""
    import hermetic._cache as cache_mod

    calls = []
    real = cache_mod.hash_file_stat  # hash_file's too
    monkeypatch.setattr(cache_mod, "hash_file_stat", lambda p: calls.append(p) or real(p))
    s = Store(tmp_path)
    src = tmp_path / "out.o"
    src.write_bytes(b"object code")
    d = s.put_file(src, move=True)
    assert len(calls) == 1
    assert all(s.verify_blob(d) for _ in range(5)) and len(calls) == 1
    assert Store(tmp_path).verify_blob(d) and len(calls) == 2  # another process hashes once itself
    p = s.blob_path(d.hash)
    p.chmod(0o644)
    p.write_bytes(b"object cod3")  # same size
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # whatever the clock's granularity
    assert not s.verify_blob(d) and not p.exists()


def test_file_digests_at_every_size_and_fresh_names_skip_stale_ones(tmp_path):
    """hash_file reads a small file in one go and a large one in chunks; both
    agree with hashlib. A staging name left by an earlier process with this
    pid is skipped, not reused; an action result written by the single-encode
    path reads back."""
    import hashlib

    from hermetic._cache import _CHUNK, hash_file

    for size in (0, 1, _CHUNK - 1, _CHUNK, 3 * _CHUNK + 5):
        f = tmp_path / f"f{size}"
        data = os.urandom(size)
        f.write_bytes(data)
        assert hash_file(f) == Digest(hashlib.sha256(data).hexdigest(), size), size
    s = Store(tmp_path / "store")
    stale = s._fresh_name("action.")
    nxt = stale.rsplit(".", 1)[0] + "." + str(int(stale.rsplit(".", 1)[1]) + 1)
    os.mkdir(nxt)  # the one it would take next exists already
    got = s.staging_dir("action.")
    assert str(got) != nxt and got.is_dir() and not any(got.iterdir())
    s.put_action("k" * 64, {"outputs": {}, "mnemonic": "M"})
    assert s.get_action("k" * 64) == {"outputs": {}, "mnemonic": "M", "key": "k" * 64, "version": 1}


def test_an_unpacked_tree_kept_in_place_is_the_checkout_materializing_would_make(tmp_path):
    """A toolchain's package is unpacked once: the extracted files are
    hashed as they are written, linked into the store where they are, and
    the tree becomes the checkout, the same files, modes and links that
    materializing the stored tree makes, and the same tree digest."""
    import stat
    import zipfile

    from hermetic import _archive
    from hermetic._cache import hash_file

    whl = tmp_path / "pkg.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("pkg/__init__.py", "")
        zf.writestr("pkg/lib/a.h", "int a;\n")
        zf.writestr("pkg/lib/same.h", "int a;\n")  # the same bytes as a.h: one blob
        tool = zipfile.ZipInfo("pkg/tool")
        tool.external_attr = (0o100755 << 16)
        zf.writestr(tool, "#!/bin/sh\necho hi\n")
        link = zipfile.ZipInfo("pkg/lib/b.h")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "a.h")
    digests: dict[str, tuple[str, int]] = {}
    first = tmp_path / "first"
    first.mkdir()
    _archive.extract(whl, first, digests=digests)
    assert digests == {rel: (hash_file(first / rel).hash, hash_file(first / rel).size) for rel in ("pkg/__init__.py", "pkg/lib/a.h",
                                                                     "pkg/lib/same.h", "pkg/tool")}
    s = Store(tmp_path / "store")
    d = s.put_tree(first, digests=digests, keep=True)
    adopted = s.adopt_checkout(first, d)
    assert adopted == s.checkout(d) and not first.exists()

    plain = tmp_path / "plain"
    plain.mkdir()
    _archive.extract(whl, plain)
    other = Store(tmp_path / "other")
    assert other.put_tree(plain) == d
    made = other.checkout(d)

    def listing(root):
        out = {}
        for p in sorted(root.rglob("*")):
            st = p.lstat()
            out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                             os.readlink(p) if p.is_symlink() else
                                             p.read_bytes() if p.is_file() else None)
        return out

    assert listing(adopted) == listing(made)
    assert listing(adopted)["pkg/tool"][1] == 0o555 and listing(adopted)["pkg/lib/a.h"][1] == 0o444
    # every file is its blob (hard links), but the executable, which is a copy of its own
    a = (adopted / "pkg/lib/a.h").stat()
    assert a.st_ino == s.blob_path(digests["pkg/lib/a.h"][0]).stat().st_ino
    assert (adopted / "pkg/tool").stat().st_ino != s.blob_path(digests["pkg/tool"][0]).stat().st_ino
    assert all(s.verify_blob(b) for b in s.tree_blobs(d))

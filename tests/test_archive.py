"""Hostile archives are refused before anything lands outside the tree."""

import io
import os
import tarfile
import zipfile

import pytest
from reliability import record, sabotaged

from hermetic._archive import extract
from hermetic.errors import ArchiveError


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            name, kind = m[0], m[1]
            ti = tarfile.TarInfo(name)
            if kind == "file":
                data = m[2]
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, m[2]
                tf.addfile(ti)
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, m[2]
                tf.addfile(ti)
            elif kind == "dev":
                ti.type = tarfile.CHRTYPE
                tf.addfile(ti)
    return path


def _files_outside(root, dest, archive):
    """Every file under *root* that is neither the archive nor under *dest*."""
    return sorted(p for p in root.rglob("*") if not p.is_dir() and p != archive and dest not in p.parents)


def attempt(tmp_path, archive, expected, unprotected=False, **kw):
    """Extract a hostile *archive*, record what happened (measured), then
    check it: refused with reason *expected*, nothing written outside."""
    dest = tmp_path / "out"
    dest.mkdir()
    reason = None
    try:
        if unprotected:  # a deliberate failure (reliability.sabotaged): what a naive extractor does
            with tarfile.open(archive) as tf:
                for m in tf.getmembers():
                    target = os.path.normpath(dest / m.name)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with open(target, "wb") as f:
                        f.write(tf.extractfile(m).read())
        else:
            extract(archive, dest, **kw)
    except ArchiveError as exc:
        reason = exc.reason
    outside = _files_outside(tmp_path, dest, archive)
    record("hostile archives", attempts=1, rejected=int(reason is not None), written_outside=len(outside))
    assert reason == expected
    assert outside == []


@pytest.mark.parametrize("members,reason", [
    pytest.param([("p/../../evil", "file", b"x")], "path-escape", id="dotdot"),
    pytest.param([("/etc/evil", "file", b"x")], "path-escape", id="absolute"),
    pytest.param([("p/link", "sym", "/etc")], "link-escape", id="symlink-absolute"),
    pytest.param([("p/link", "sym", "../../outside")], "link-escape", id="symlink-up"),
    pytest.param([("p/hard", "hard", "/etc/passwd")], "path-escape", id="hardlink-out"),
    pytest.param([("p/dev", "dev")], "special-file", id="device"),
    pytest.param([("q/file", "file", b"x")], "bad-prefix", id="outside-prefix"),
])
def test_hostile_tar(tmp_path, members, reason, request):
    archive = _tar(tmp_path / "a.tar.gz", members)
    unprotected = request.node.callspec.id == "dotdot" and sabotaged("hostile-archives")
    attempt(tmp_path, archive, reason, unprotected, strip_prefix="p")


def test_links_inside_tree_are_kept(tmp_path):
    archive = _tar(tmp_path / "a.tgz", [("p/d/f", "file", b"data"), ("p/l", "sym", "d/f"), ("p/h", "hard", "p/d/f")])
    dest = tmp_path / "out"
    dest.mkdir()
    extract(archive, dest, strip_prefix="p")
    assert (dest / "l").read_bytes() == b"data" and (dest / "h").read_bytes() == b"data"


def test_bomb_is_refused(tmp_path):
    archive = _tar(tmp_path / "bomb.tar.gz", [("p/zeros", "file", bytes(300 << 20))])
    attempt(tmp_path, archive, "bomb", strip_prefix="p")


def test_truncated_archive(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [("p/f", "file", bytes(range(256)) * 4000)])
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    attempt(tmp_path, archive, "bad-archive", strip_prefix="p")


def test_zip_escape(tmp_path):
    z = tmp_path / "w.whl"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../evil.py", "x")
    attempt(tmp_path, z, "path-escape")

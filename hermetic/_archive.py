"""Safe extraction of tar and zip archives.

Every entry is checked before anything is written: no absolute paths, no
``..``, no device files, symlinks and hard links only to places inside the
tree, and a bound on total size and entry count (decompression bombs). Links
are created after all files, so nothing is ever written through one.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tarfile

from hermetic.errors import ArchiveError

MAX_TOTAL_BYTES = 8 << 30
MAX_ENTRIES = 1_000_000
MAX_RATIO = 200  # extracted bytes per compressed byte, beyond any real source archive


def _clean(name: str, strip: str, archive: str, subdir: str = "") -> str | None:
    """Return the entry's path inside the tree, None for the stripped prefix
    itself (and, with *subdir*, for anything outside it), or raise for
    anything that escapes."""
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or "\\" in name:
        raise ArchiveError(f"{archive}: entry {name!r} has an absolute path", reason="path-escape",
                           hint="the archive is malicious or corrupt; check its source and pin")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"{archive}: entry {name!r} escapes the extraction directory",
                           reason="path-escape", hint="the archive is malicious or corrupt; check its source and pin")
    if strip:
        sp = strip.split("/")
        if parts[: len(sp)] != sp:
            raise ArchiveError(f"{archive}: entry {name!r} is not under strip_prefix {strip!r}",
                               reason="bad-prefix", hint="fix strip_prefix in the BUILD file")
        parts = parts[len(sp):]
    if subdir:
        sd = subdir.split("/")
        if parts[: len(sd)] != sd:
            return None  # not part of the subtree asked for
        parts = parts[len(sd):]
    return "/".join(parts) if parts else None


def check_link_target(rel: str, target: str, archive: str) -> None:
    if target.startswith("/"):
        raise ArchiveError(f"{archive}: link {rel!r} -> {target!r} points outside the tree",
                           reason="link-escape")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    if resolved == ".." or resolved.startswith("../"):
        raise ArchiveError(f"{archive}: link {rel!r} -> {target!r} points outside the tree",
                           reason="link-escape")


def _inside(dest: Path, path: Path) -> bool:
    real = os.path.realpath(path)
    root = os.path.realpath(dest)
    return real == root or real.startswith(root + os.sep)


def _make_parent(dest: Path, target: Path, entry: str, label: str, total: int, budget: int,
                 made: set[Path]) -> None:
    """Before writing a file entry: refuse a bomb (*total* bytes so far over
    *budget*) and a path that goes through a link; make its directory (once:
    *made* holds the directories made and checked so far, and no link exists
    in the tree before every file is written)."""
    if total > budget:
        raise ArchiveError(f"{label}: expands to more than {budget} bytes; refusing (decompression bomb?)",
                           reason="bomb")
    if target.parent in made:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if not _inside(dest, target.parent):
        raise ArchiveError(f"{label}: entry {entry!r} would be written through a link", reason="path-escape")
    made.add(target.parent)


def _write(src: object, target: Path, mode: int, limit: int | None, what: str, label: str,
           digests: dict[str, tuple[str, int]] | None, rel: str) -> None:
    """Copy the open entry *src* to *target* (at most *limit* bytes), its
    sha256 taken on the way when *digests* is kept."""
    h = hashlib.sha256() if digests is not None else None
    copied = 0
    with open(target, "wb") as out:
        while chunk := src.read(1 << 20):  # type: ignore[attr-defined]
            copied += len(chunk)
            if limit is not None and copied > limit:
                raise ArchiveError(f"{label}: entry {what!r} is larger than it claims (bomb?)", reason="bomb")
            if h is not None:
                h.update(chunk)
            out.write(chunk)
    os.chmod(target, 0o755 if mode & 0o111 else 0o644)
    if digests is not None and h is not None:
        digests[rel] = (h.hexdigest(), copied)


def extract(archive: Path, dest: Path, *, strip_prefix: str = "", name: str | None = None,
            subdir: str = "", digests: dict[str, tuple[str, int]] | None = None) -> None:
    """Extract *archive* (tar.*, zip or wheel) into the empty directory *dest*;
    with *subdir*, only that directory (below *strip_prefix*). *digests*, if
    given, receives each regular file's (sha256, size) by its path in the
    tree, taken as it was written (the store need not read it again)."""
    import tarfile
    import zipfile

    label = name or archive.name
    compressed = max(archive.stat().st_size, 1)
    budget = min(MAX_TOTAL_BYTES, compressed * MAX_RATIO + (64 << 20))
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, dest, strip_prefix, label, budget, subdir, digests)
    else:
        try:
            tf = tarfile.open(archive, "r:*")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ArchiveError(f"{label}: not a readable tar or zip archive ({exc})",
                               reason="bad-archive", hint="the download is truncated or not an archive") from exc
        with tf:
            _extract_tar(tf, dest, strip_prefix, label, budget, subdir, digests)


def _extract_tar(tf: tarfile.TarFile, dest: Path, strip: str, label: str, budget: int, subdir: str = "",
                 digests: dict[str, tuple[str, int]] | None = None) -> None:
    import tarfile
    import zlib

    links: list[tuple[str, str, bool]] = []
    total = count = 0
    made = {dest}
    try:
        for m in tf:
            count += 1
            if count > MAX_ENTRIES:
                raise ArchiveError(f"{label}: more than {MAX_ENTRIES} entries", reason="bomb")
            rel = _clean(m.name, strip, label, subdir)
            if rel is None:
                continue
            target = dest / rel
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif m.isfile():
                total += m.size
                _make_parent(dest, target, m.name, label, total, budget, made)
                src = tf.extractfile(m)
                assert src is not None
                with src:
                    _write(src, target, m.mode, None, m.name, label, digests, rel)
            elif m.issym():
                check_link_target(rel, m.linkname, label)
                links.append((rel, m.linkname, False))
            elif m.islnk():
                lrel = _clean(m.linkname, strip, label, subdir)
                if lrel is None:
                    raise ArchiveError(f"{label}: hard link {m.name!r} to a directory or outside the extracted tree",
                                       reason="link-escape")
                links.append((rel, lrel, True))
            else:
                raise ArchiveError(f"{label}: entry {m.name!r} is a device, fifo or other special file",
                                   reason="special-file")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ArchiveError(f"{label}: archive is truncated or corrupt ({exc})", reason="bad-archive",
                           hint="fetch it again; if it persists the pinned source is damaged") from exc
    _make_links(dest, links, label, digests)


def _extract_zip(archive: Path, dest: Path, strip: str, label: str, budget: int, subdir: str = "",
                 digests: dict[str, tuple[str, int]] | None = None) -> None:
    import zipfile
    import zlib

    total = 0
    made = {dest}
    links: list[tuple[str, str, bool]] = []
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ENTRIES:
                raise ArchiveError(f"{label}: more than {MAX_ENTRIES} entries", reason="bomb")
            for info in infos:
                rel = _clean(info.filename, strip, label, subdir)
                if rel is None:
                    continue
                mode = (info.external_attr >> 16) & 0o177777
                target = dest / rel
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if mode and (mode & 0o170000) == 0o120000:
                    link = zf.read(info).decode()
                    check_link_target(rel, link, label)
                    links.append((rel, link, False))
                    continue
                if mode and (mode & 0o170000) not in (0, 0o100000):
                    raise ArchiveError(f"{label}: entry {info.filename!r} is a special file",
                                       reason="special-file")
                total += info.file_size
                _make_parent(dest, target, info.filename, label, total, budget, made)
                with zf.open(info) as src:
                    _write(src, target, mode, info.file_size, info.filename, label, digests, rel)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise ArchiveError(f"{label}: zip archive is truncated or corrupt ({exc})", reason="bad-archive",
                           hint="fetch it again; if it persists the pinned source is damaged") from exc
    _make_links(dest, links, label, digests)


def _make_links(dest: Path, links: list[tuple[str, str, bool]], label: str,
                digests: dict[str, tuple[str, int]] | None = None) -> None:
    for rel, target, hard in links:
        p = dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if not _inside(dest, p.parent):
            raise ArchiveError(f"{label}: link {rel!r} would be created through a link", reason="link-escape")
        if hard:
            src = dest / target
            if not src.is_file() or src.is_symlink() or not _inside(dest, src):
                raise ArchiveError(f"{label}: hard link {rel!r} -> {target!r} has no file inside the tree",
                                   reason="link-escape")
            shutil.copy2(src, p)
            if digests is not None and target in digests:
                digests[rel] = digests[target]
        else:
            os.symlink(target, p)

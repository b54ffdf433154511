"""How two builds of one output differ, for ``hermetic verify``: diffoscope
when it is installed, otherwise our own summary (differing members of zip,
tar and ar archives, differing lines of text, differing byte ranges and
printable strings of binaries)."""

from __future__ import annotations

import difflib
import io
import re
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

MAX_LINES = 80
_STRINGS = re.compile(rb"[\x20-\x7e\t]{6,}")


def diffoscope_available() -> str | None:
    from hermetic.toolchain import find_program

    return find_program("diffoscope")


def run_diffoscope(reference: Path, rebuilt: Path, *, timeout: float = 600) -> str:
    """diffoscope's text report of *reference* vs *rebuilt* (trimmed)."""
    exe = diffoscope_available()
    assert exe is not None
    try:
        done = subprocess.run([exe, "--no-progress", "--text", "-", "--max-text-report-size", "200000",
                               "--exclude-directory-metadata", "yes", str(reference), str(rebuilt)],
                              capture_output=True, text=True, errors="replace", timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"diffoscope did not finish within {timeout:.0f}s"
    text = done.stdout if done.returncode in (0, 1) else done.stdout + done.stderr
    lines = text.splitlines()
    if len(lines) > 4 * MAX_LINES:
        lines = [*lines[:4 * MAX_LINES], f"... ({len(lines) - 4 * MAX_LINES} more lines)"]
    return "\n".join(lines)


def describe(name: str, a: bytes, b: bytes, depth: int = 0) -> list[str]:
    """Lines saying how *a* (reference) and *b* (rebuilt) differ; *name* is
    what they are called in the report."""
    if a == b:
        return []
    if depth < 3:
        for probe in (_zip_members, _tar_members, _ar_members):
            ma, mb = probe(a), probe(b)
            if ma is not None and mb is not None:
                return _members(name, ma, mb, depth)
    ta, tb = _text(a), _text(b)
    if ta is not None and tb is not None:
        diff = list(difflib.unified_diff(ta.splitlines(), tb.splitlines(), "reference", "rebuilt", lineterm="",
                                         n=1))
        return [f"{name}: text differs", *_cap([f"  {line}" for line in diff])]
    return [f"{name}: binary differs ({len(a)} vs {len(b)} bytes)", *_byte_ranges(a, b), *_strings(a, b)]


def _members(name: str, ma: dict[str, tuple[str, bytes]], mb: dict[str, tuple[str, bytes]],
             depth: int) -> list[str]:
    out = [f"{name}: archive members differ"]
    for m in sorted(ma.keys() - mb.keys()):
        out.append(f"  only in reference: {m}")
    for m in sorted(mb.keys() - ma.keys()):
        out.append(f"  only in rebuilt: {m}")
    if list(ma) != list(mb) and ma.keys() == mb.keys():
        out.append("  members are in a different order")
    for m in sorted(ma.keys() & mb.keys()):
        (meta_a, data_a), (meta_b, data_b) = ma[m], mb[m]
        if meta_a != meta_b:
            out.append(f"  {m}: metadata {meta_a} vs {meta_b}")
        if data_a != data_b:
            out.extend("  " + line for line in describe(m, data_a, data_b, depth + 1))
    return _cap(out)


def _zip_members(data: bytes) -> dict[str, tuple[str, bytes]] | None:
    if not data.startswith(b"PK"):
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return {i.filename: (f"time={i.date_time} attr={i.external_attr:o} compress={i.compress_type}",
                                 z.read(i)) for i in z.infolist()}
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def _tar_members(data: bytes) -> dict[str, tuple[str, bytes]] | None:
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            out = {}
            for m in t.getmembers():
                f = t.extractfile(m) if m.isfile() else None
                out[m.name] = (f"mtime={m.mtime} uid={m.uid} gid={m.gid} mode={m.mode:o} "
                               f"owner={m.uname}:{m.gname}", f.read() if f else b"")
            return out
    except (tarfile.TarError, OSError, ValueError, EOFError):
        return None


def _ar_members(data: bytes) -> dict[str, tuple[str, bytes]] | None:
    """Members of a Unix ``ar`` archive (static library), GNU long names."""
    if not data.startswith(b"!<arch>\n"):
        return None
    out: dict[str, tuple[str, bytes]] = {}
    names = b""
    pos = 8
    seen: dict[str, int] = {}
    while pos + 60 <= len(data):
        hdr = data[pos:pos + 60]
        try:
            size = int(hdr[48:58].decode().strip())
        except ValueError:
            return None
        body = data[pos + 60:pos + 60 + size]
        raw = hdr[:16].decode(errors="replace").rstrip()
        meta = (f"mtime={hdr[16:28].decode(errors='replace').strip()} uid={hdr[28:34].decode(errors='replace').strip()} "
                f"gid={hdr[34:40].decode(errors='replace').strip()} mode={hdr[40:48].decode(errors='replace').strip()}")
        if raw == "//":
            names = body
        elif raw.startswith("/") and raw[1:].isdigit() and names:
            off = int(raw[1:])
            end = names.find(b"/\n", off)
            name = names[off:end].decode(errors="replace")
            out[_unique(name, seen)] = (meta, body)
        elif raw not in ("/", "/SYM64/"):
            out[_unique(raw.rstrip("/"), seen)] = (meta, body)
        else:
            out[f"(symbol table {raw})"] = (meta, body)
        pos += 60 + size + (size & 1)
    return out


def _unique(name: str, seen: dict[str, int]) -> str:
    n = seen.get(name, 0)
    seen[name] = n + 1
    return name if n == 0 else f"{name} ({n + 1})"


def _text(data: bytes) -> str | None:
    if len(data) > 2_000_000 or b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _byte_ranges(a: bytes, b: bytes, limit: int = 8) -> list[str]:
    ranges = list(_ranges(a, b))
    out = [f"  {len(ranges)} differing byte range(s)" + (f", first {limit}:" if len(ranges) > limit else ":")]
    for start, end in ranges[:limit]:
        out.append(f"    0x{start:08x}-0x{end:08x}: {a[start:min(end, start + 16)].hex(' ')} -> "
                   f"{b[start:min(end, start + 16)].hex(' ')}")
    return out


def _ranges(a: bytes, b: bytes) -> Iterator[tuple[int, int]]:
    n = min(len(a), len(b))
    i = 0
    block = 4096
    while i < n:
        if a[i:i + block] == b[i:i + block]:
            i += block
            continue
        end = min(i + block, n)
        j = i
        while j < end:
            if a[j] != b[j]:
                k = j
                while k < n and a[k] != b[k]:
                    k += 1
                yield j, k
                j = k
            else:
                j += 1
        i = end
    if len(a) != len(b):
        yield n, max(len(a), len(b))


def _strings(a: bytes, b: bytes, limit: int = 10) -> list[str]:
    sa, sb = set(_STRINGS.findall(a)), set(_STRINGS.findall(b))
    only_a, only_b = sorted(sa - sb)[:limit], sorted(sb - sa)[:limit]
    if not only_a and not only_b:
        return []
    out = ["  printable strings that differ:"]
    out += [f"    - {s.decode(errors='replace')[:160]}" for s in only_a]
    out += [f"    + {s.decode(errors='replace')[:160]}" for s in only_b]
    return out


def _cap(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_LINES:
        return lines
    return [*lines[:MAX_LINES], f"  ... ({len(lines) - MAX_LINES} more lines)"]

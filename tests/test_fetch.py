"""Pinned downloads are all or nothing: a wrong hash, a tampered archive, a
bad signature or an escaping entry each fail clearly and leave the store
without the bad bytes."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from hermetic._session import Session
from hermetic.errors import BuildFailed
from hermetic.model import Label
from hermetic.testing import write_workspace


def make_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def workspace(root: Path, sha256: str, extra: str = "") -> Path:
    return write_workspace(root, {"BUILD.toml": f"""
        [workspace]
        [src]
        rule = "archive"
        filename = "lib-1.0.tar.gz"
        strip_prefix = "lib-1.0"
        sha256 = "{sha256}"
        {extra}
    """})


def build(ws: Path, tmp_path: Path, distdir: Path):
    return Session(ws, cache_dir=tmp_path / "cache", distdirs=[distdir]).build([Label("", "src")])


def blobs(tmp_path: Path) -> set[bytes]:
    return {p.read_bytes() for p in (tmp_path / "cache" / "cas").rglob("*") if p.is_file()}


@pytest.fixture
def good(tmp_path):
    d = tmp_path / "dist"
    d.mkdir()
    return make_tar(d / "lib-1.0.tar.gz", {"lib-1.0/a.c": b"int a;\n"})


@pytest.mark.linux
def test_pinned_archive_from_distdir(tmp_path, good):
    r = build(workspace(tmp_path / "ws", sha(good)), tmp_path, good.parent)
    assert r.stats.executed == 2


@pytest.mark.linux
def test_an_archive_without_strip_prefix(tmp_path):
    """strip_prefix is optional: the archive's entries are the tree as they are."""
    d = tmp_path / "dist"
    d.mkdir()
    flat = make_tar(d / "flat-1.0.tar.gz", {"a.c": b"int a;\n", "sub/b.h": b"int b;\n"})
    ws = write_workspace(tmp_path / "ws", {"BUILD.toml": f"""
        [workspace]
        [src]
        rule = "archive"
        filename = "flat-1.0.tar.gz"
        sha256 = "{sha(flat)}"
    """})
    r = Session(ws, cache_dir=tmp_path / "cache", distdirs=[d]).build([Label("", "src")])
    tree = [p for p in r.outputs[Label("", "src")] if p.is_dir()][0]
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file()) == ["a.c", "sub/b.h"]


def test_wrong_sha256(tmp_path, good):
    with pytest.raises(BuildFailed) as e:
        build(workspace(tmp_path / "ws", "0" * 64), tmp_path, good.parent)
    (f,) = e.value.failures
    assert f.reason == "hash-mismatch"
    assert "expected " + "0" * 64 in str(f) and str(good.parent) in str(f)
    assert good.read_bytes() not in blobs(tmp_path)


@pytest.mark.linux
def test_tampered_archive(tmp_path, good):
    pin = sha(good)
    make_tar(good, {"lib-1.0/a.c": b"int a; /* backdoor */\n"})
    with pytest.raises(BuildFailed) as e:
        build(workspace(tmp_path / "ws", pin), tmp_path, good.parent)
    assert e.value.failures[0].reason == "hash-mismatch"
    assert good.read_bytes() not in blobs(tmp_path)
    assert not any((tmp_path / "cache" / "ac").rglob("*/*"))


@pytest.mark.linux
def test_unreachable_everywhere(tmp_path):
    empty = tmp_path / "dist"
    empty.mkdir()
    ws = workspace(tmp_path / "ws", "1" * 64, 'urls = ["http://127.0.0.1:9/lib-1.0.tar.gz"]')
    with pytest.raises(BuildFailed) as e:
        build(ws, tmp_path, empty)
    f = e.value.failures[0]
    assert f.reason == "fetch-failed" and "127.0.0.1:9" in str(f) and "--distdir" in f.hint


@pytest.mark.linux
def test_escaping_entry(tmp_path):
    d = tmp_path / "dist"
    d.mkdir()
    evil = make_tar(d / "lib-1.0.tar.gz", {"lib-1.0/ok.c": b"1", "lib-1.0/../../escaped": b"pwned"})
    with pytest.raises(BuildFailed) as e:
        build(workspace(tmp_path / "ws", sha(evil)), tmp_path, d)
    assert e.value.failures[0].reason == "path-escape"
    assert not list(tmp_path.rglob("escaped"))
    assert b"pwned" not in blobs(tmp_path) and b"1" not in blobs(tmp_path)
    assert evil.read_bytes() not in blobs(tmp_path)


# -- OpenPGP ------------------------------------------------------------------


def _gpg(home: Path, *args: str, stdin: bytes | None = None) -> bytes:
    env = {"GNUPGHOME": str(home), "PATH": "/usr/bin:/bin", "LC_ALL": "C"}
    return subprocess.run(["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", "", *args],
                          env=env, check=True, capture_output=True, input=stdin).stdout


def _key(tmp_path: Path, name: str) -> tuple[Path, str, Path]:
    home = tmp_path / f"gpg-{name}"
    home.mkdir(mode=0o700)
    _gpg(home, "--quick-gen-key", f"{name} <{name}@example.invalid>", "ed25519", "sign", "never")
    fpr = [ln.split(":")[9] for ln in _gpg(home, "--with-colons", "--list-keys").decode().splitlines()
           if ln.startswith("fpr:")][0]
    pub = tmp_path / f"{name}.asc"
    pub.write_bytes(_gpg(home, "--armor", "--export", fpr))
    return home, fpr, pub


@pytest.fixture
def keys(tmp_path):
    if not os.path.exists("/usr/bin/gpg"):
        pytest.skip("gpg is not installed")
    made = []
    try:
        made.append(_key(tmp_path, "alice"))
        made.append(_key(tmp_path, "mallory"))
        yield made[0], made[1]
    finally:
        for home, _, _ in made:  # gpg started an agent per home: stop what we started
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True,
                           env={"GNUPGHOME": str(home), "PATH": "/usr/bin:/bin"})


def _signed_ws(tmp_path, good, signer, pinned):
    home, _, _ = signer
    _, fpr, pub = pinned
    sig = good.parent / (good.name + ".asc")
    sig.write_bytes(_gpg(home, "--armor", "--detach-sign", "--output", "-", str(good)))
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "key.asc").write_bytes(pub.read_bytes())
    extra = (f'signing_key = ["key.asc"]\nfingerprint = "{fpr}"\n'
             f'signature = {{ sha256 = "{sha(sig)}", filename = "{sig.name}" }}')
    return workspace(ws, sha(good), extra)


@pytest.mark.linux
def test_good_signature(tmp_path, good, keys):
    alice, _ = keys
    r = build(_signed_ws(tmp_path, good, alice, alice), tmp_path, good.parent)
    assert r.stats.executed == 2


@pytest.mark.linux
def test_a_key_that_expired_after_signing_is_accepted_with_a_warning(tmp_path, good, keys):
    """The repository's own OpenSSL key expired on 2026-09-08: a release it
    signed before then still verifies, and the build says the key expired."""
    from hermetic.events import Note

    home = tmp_path / "gpg-old"
    home.mkdir(mode=0o700)
    then = "20200101T000000"  # a key made on 2020-01-01, valid for one day, signing that day
    _gpg(home, "--faked-system-time", then, "--quick-gen-key", "old <old@example.invalid>", "ed25519", "sign", "1d")
    fpr = [ln.split(":")[9] for ln in _gpg(home, "--with-colons", "--list-keys").decode().splitlines()
           if ln.startswith("fpr:")][0]
    pub = tmp_path / "old.asc"
    pub.write_bytes(_gpg(home, "--armor", "--export", fpr))
    sig = good.parent / (good.name + ".asc")
    sig.write_bytes(_gpg(home, "--faked-system-time", "20200101T060000", "--armor", "--detach-sign", "--output",
                         "-", str(good)))
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True,
                   env={"GNUPGHOME": str(home), "PATH": "/usr/bin:/bin"})
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "key.asc").write_bytes(pub.read_bytes())
    extra = (f'signing_key = ["key.asc"]\nfingerprint = "{fpr}"\n'
             f'signature = {{ sha256 = "{sha(sig)}", filename = "{sig.name}" }}')
    events = []
    r = Session(workspace(ws, sha(good), extra), cache_dir=tmp_path / "cache", distdirs=[good.parent],
                report=events.append).build([Label("", "src")])
    assert r.stats.executed == 2
    warnings = [e.message for e in events if isinstance(e, Note) and e.level == "warning"]
    assert len(warnings) == 1 and f"the signing key {fpr} expired on 2020-01-02" in warnings[0], warnings


@pytest.mark.linux
def test_signature_by_another_key(tmp_path, good, keys):
    alice, mallory = keys
    with pytest.raises(BuildFailed) as e:
        build(_signed_ws(tmp_path, good, mallory, alice), tmp_path, good.parent)
    assert e.value.failures[0].reason == "bad-signature"
    assert good.read_bytes() not in blobs(tmp_path)

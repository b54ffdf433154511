"""Signed provenance: with a signing key the in-toto statement beside a
wheel is also a DSSE envelope signed by that key; `hermetic provenance
verify` checks the signer against trusted keys, the subject against the
wheel's sha256, and the materials against the workspace's pins."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from conftest import FLAGSHIP, copy_workspace, hermetic_cli

from hermetic import _provenance
from hermetic._signing import SecretKey

pytestmark = [pytest.mark.integration, pytest.mark.linux, pytest.mark.network, pytest.mark.bwrap]

OUT = "hermetic-out/linux-x86_64-manylinux2014/wheel/hermetic-openssl"


def _verify(ws: Path, store: Path, wheel: Path, *extra: str) -> tuple[int, str]:
    proc = hermetic_cli("--cache-dir", str(store), "provenance", "verify", str(wheel), *extra, cwd=ws, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_signed_provenance_is_checked_against_signer_wheel_and_pins(tmp_path, warm_store):
    keys = tmp_path / "keys"
    for name in ("ci", "mallory"):
        hermetic_cli("cache", "keygen", name, "--dir", str(keys), cwd=tmp_path)
    ci, mallory = ((keys / f"{n}.pub").read_text().strip() for n in ("ci", "mallory"))
    ws = copy_workspace(tmp_path / "ws")

    # without a key: the statement, unsigned, and verify says there is nothing signed to check
    hermetic_cli("--cache-dir", str(warm_store), "build", FLAGSHIP, cwd=ws)
    (wheel,) = (ws / OUT / "dist").glob("*.whl")
    assert (ws / OUT / f"{wheel.name}.provenance.json").is_file()
    assert not (ws / OUT / f"{wheel.name}.provenance.dsse.json").exists()
    code, out = _verify(ws, warm_store, wheel, "--trusted-key", ci)
    assert code == 3 and "no signed provenance (only the unsigned statement is there)" in out

    # with the workspace's signing key (everything cached: signing is part of delivering)
    hermetic_cli("--cache-dir", str(warm_store), "build", FLAGSHIP, "--signing-key", str(keys / "ci.secret"),
                 cwd=ws)
    envelope = ws / OUT / f"{wheel.name}.provenance.dsse.json"
    env = json.loads(envelope.read_text())
    assert env["payloadType"] == "application/vnd.in-toto+json" and env["signatures"][0]["keyid"] == "ci"
    assert json.loads(base64.b64decode(env["payload"])) == json.loads(
        (ws / OUT / f"{wheel.name}.provenance.json").read_text())
    code, out = _verify(ws, warm_store, wheel, "--trusted-key", ci)
    assert code == 0, out
    assert "signed by ci, subject sha256 matches" in out

    # an untrusted signer
    code, out = _verify(ws, warm_store, wheel, "--trusted-key", mallory)
    assert code == 3 and "signed by ci, none of them a trusted key (mallory)" in out

    # the wheel with one byte changed
    bad = tmp_path / "bad" / wheel.name
    bad.parent.mkdir()
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 1
    bad.write_bytes(bytes(data))
    code, out = _verify(ws, warm_store, bad, "--envelope", str(envelope), "--trusted-key", ci)
    assert code == 3 and f"the statement is about {wheel.name} sha256" in out

    # the statement changed after signing: the signature no longer covers it
    stmt = json.loads(base64.b64decode(env["payload"]))
    deps = stmt["predicate"]["buildDefinition"]["resolvedDependencies"]
    (ossl,) = [d for d in deps if d["name"].startswith("openssl-") and d["name"].endswith(".tar.gz")]
    ossl["digest"]["sha256"] = "0" * 64
    forged = dict(env, payload=base64.b64encode(json.dumps(stmt).encode()).decode())
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    code, out = _verify(ws, warm_store, wheel, "--envelope", str(tmp_path / "forged.json"), "--trusted-key", ci)
    assert code == 3 and "the signature by ci does not verify" in out

    # a statement, properly signed by the trusted key, whose materials name another OpenSSL tarball
    (tmp_path / "other.json").write_text(json.dumps(_provenance.envelope(stmt, SecretKey.load(keys / "ci.secret"))))
    code, out = _verify(ws, warm_store, wheel, "--envelope", str(tmp_path / "other.json"), "--trusted-key", ci)
    assert code == 3
    assert f"material {ossl['name']}: the statement says sha256 {'0' * 64}, the workspace pins" in out

    # and a workspace pinning other sources than the wheel was built from fails with that difference
    other = copy_workspace(tmp_path / "ws2")
    build = other / "recipes" / "openssl" / "BUILD.toml"
    pinned = next(d["digest"]["sha256"] for d in json.loads(base64.b64decode(env["payload"]))["predicate"][
        "buildDefinition"]["resolvedDependencies"] if d["name"] == ossl["name"])
    build.write_text(build.read_text().replace(pinned, "1" * 64))
    shutil.copytree(ws / OUT, other / OUT)
    code, out = _verify(other, warm_store, other / OUT / "dist" / wheel.name, "--trusted-key", ci)
    assert code == 3 and f"the workspace pins {'1' * 64}" in out

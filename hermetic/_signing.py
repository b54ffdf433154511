"""ed25519 signatures on action results shared through a remote cache, in
the manner of Nix's binary cache keys: a key has a name; the secret key file
holds ``name:base64(seed)``, the public key is ``name:base64(public)``.

A signature (version 2) covers what reproduction can vouch for: the action
key and the outputs (not the log, whose timings differ between builders),
with the signer's name and the time it signed::

    canonical_json({"v": 2, "key": action_key, "outputs": result["outputs"],
                    "signer": name, "time": unix_seconds})

and the record beside it says which outputs it is about (their digest), so
a reader can tell a signer who vouched for *other* outputs from one who did
not sign. An envelope keeps every signature: a builder that reproduces a
result adds its own (countersigning), never replacing another's. A reader
accepts a result when at least ``min_signers`` distinct trusted keys signed
its outputs (k of n; version 1 signatures, over the whole result, still
count)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from hermetic.errors import RemoteError
from hermetic.model import canonical_json

_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def _named_key(text: str) -> tuple[str, bytes] | None:
    """``name:<base64 of 32 bytes>`` (the format of both key files) -> its parts."""
    name, sep, b64 = text.strip().partition(":")
    try:
        raw = base64.b64decode(b64, validate=True)
    except ValueError:
        return None
    return (name, raw) if sep and _NAME.match(name) and len(raw) == 32 else None


@attrs.frozen
class PublicKey:
    name: str
    raw: bytes

    @classmethod
    def parse(cls, text: str, where: str = "a trusted key") -> PublicKey:
        named = _named_key(text)
        if named is None:
            raise RemoteError(f'{where} "{text.strip()[:60]}" is not a public key',
                            hint='public keys look like "name:<base64 of 32 bytes>" (hermetic cache keygen prints one)')
        return cls(*named)

    def __str__(self) -> str:
        return f"{self.name}:{base64.b64encode(self.raw).decode()}"


@attrs.frozen
class SecretKey:
    name: str
    seed: bytes

    @classmethod
    def load(cls, path: Path) -> SecretKey:
        try:
            text = Path(path).read_text().strip()
        except OSError as exc:
            raise RemoteError(f"cannot read the signing key {path}: {exc.strerror}",
                            hint="create one with `hermetic cache keygen NAME`") from exc
        named = _named_key(text)
        if named is None:
            raise RemoteError(f"{path} is not a hermetic signing key",
                            hint="create one with `hermetic cache keygen NAME`")
        return cls(*named)

    def public(self) -> PublicKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        pub = Ed25519PrivateKey.from_private_bytes(self.seed).public_key()
        return PublicKey(self.name, pub.public_bytes(Encoding.Raw, PublicFormat.Raw))

    def sign(self, message: bytes) -> str:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return base64.b64encode(Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)).decode()


def generate(name: str, directory: Path) -> tuple[Path, PublicKey]:
    """Write ``NAME.secret`` (mode 600) and ``NAME.pub`` into *directory*."""
    if not _NAME.match(name):
        raise RemoteError(f'"{name}" is not a key name', hint="use letters, digits, dot, dash, underscore")
    secret_path = directory / f"{name}.secret"
    if secret_path.exists():
        raise RemoteError(f"{secret_path} already exists", hint="choose another name or directory; "
                        "a signing key is never overwritten")
    directory.mkdir(parents=True, exist_ok=True)
    seed = os.urandom(32)
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{name}:{base64.b64encode(seed).decode()}\n")
    pub = SecretKey(name, seed).public()
    (directory / f"{name}.pub").write_text(f"{pub}\n")
    return secret_path, pub


def message(key: str, result: dict[str, Any]) -> bytes:
    """What a version 1 signature covered: the whole result."""
    return canonical_json({"key": key, "result": result})


def outputs_digest(result: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(result.get("outputs", {}))).hexdigest()


def _message_v2(key: str, outputs: Any, signer: str, when: int) -> bytes:
    return canonical_json({"v": 2, "key": key, "outputs": outputs, "signer": signer, "time": when})


def sign(key: str, result: dict[str, Any], secret: SecretKey, when: int | None = None) -> dict[str, Any]:
    """A signature record for *result*'s outputs under action *key*."""
    when = int(time.time()) if when is None else when
    return {"v": 2, "key": secret.name, "time": when, "outputs": outputs_digest(result),
            "sig": secret.sign(_message_v2(key, result.get("outputs", {}), secret.name, when))}


def _valid(key: str, result: dict[str, Any], s: Mapping[str, Any], pub: PublicKey) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if s.get("v") == 2:
        try:
            msg = _message_v2(key, result.get("outputs", {}), pub.name, int(s.get("time", 0)))
        except (TypeError, ValueError):
            return False
    else:
        msg = message(key, result)
    try:
        Ed25519PublicKey.from_public_bytes(pub.raw).verify(base64.b64decode(str(s.get("sig", ""))), msg)
        return True
    except (InvalidSignature, ValueError):
        return False


@attrs.frozen
class Verdict:
    """Who vouches for a result: trusted signers whose signature covers its
    outputs (*agree*), trusted signers whose signature is about other
    outputs (*disagree*: the result was changed after they signed), and
    signatures by keys not trusted here (*unknown*)."""

    agree: tuple[str, ...]
    disagree: tuple[str, ...]
    unknown: tuple[str, ...]

    def describe(self, needed: int) -> str:
        agree = ", ".join(self.agree) or "no trusted key"
        text = f"signed by {len(self.agree)} of the {needed} trusted keys required ({agree})"
        if self.disagree:
            text += f"; {', '.join(self.disagree)} signed other outputs for this action"
        if self.unknown:
            text += f"; not trusted here: {', '.join(self.unknown)}"
        return text


def verdict(key: str, result: dict[str, Any], signatures: Sequence[Mapping[str, Any]],
            keys: Sequence[PublicKey]) -> Verdict:
    by_name = {k.name: k for k in keys}
    agree: dict[str, None] = {}
    disagree: dict[str, None] = {}
    unknown: dict[str, None] = {}
    for s in signatures:
        if not isinstance(s, Mapping):
            continue
        name = str(s.get("key", ""))
        pub = by_name.get(name)
        if pub is None:
            unknown[name] = None
        elif _valid(key, result, s, pub):
            agree[name] = None
        else:
            disagree[name] = None
    return Verdict(tuple(agree), tuple(d for d in disagree if d not in agree), tuple(unknown))


def trusted(key: str, result: dict[str, Any], signatures: Sequence[dict[str, Any]],
            keys: Sequence[PublicKey], min_signers: int = 1) -> bool:
    """Whether at least *min_signers* distinct keys of *keys* signed *result*'s outputs for *key*."""
    return len(verdict(key, result, signatures, keys).agree) >= min_signers

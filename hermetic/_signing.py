"""ed25519 signatures on action results shared through a remote cache, in
the manner of Nix's binary cache keys: a key has a name; the secret key file
holds ``name:base64(seed)``, the public key is ``name:base64(public)``.

A writer signs ``canonical_json({"key": action_key, "result": result})``.
A reader with trusted public keys accepts a result only if one of its
signatures verifies under a trusted key of the same name."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Sequence
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
    return canonical_json({"key": key, "result": result})


def sign(key: str, result: dict[str, Any], secret: SecretKey) -> dict[str, str]:
    return {"key": secret.name, "sig": secret.sign(message(key, result))}


def trusted(key: str, result: dict[str, Any], signatures: Sequence[dict[str, Any]],
            keys: Sequence[PublicKey]) -> bool:
    """Whether a signature by one of *keys* covers *result* for *key*."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    msg = message(key, result)
    by_name = {k.name: k for k in keys}
    for s in signatures:
        pub = by_name.get(str(s.get("key", "")))
        if pub is None:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(pub.raw).verify(base64.b64decode(str(s.get("sig", ""))), msg)
            return True
        except (InvalidSignature, ValueError):
            continue
    return False

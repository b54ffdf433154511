"""hermetic_openssl: a small cffi binding to a statically linked OpenSSL 3.5.

Digests, HMAC, random bytes and AES-256-GCM, through OpenSSL's EVP API. The
OpenSSL inside is private to this module: its symbols are hidden, so it never
clashes with another libcrypto loaded in the same process.
"""

from __future__ import annotations

from hermetic_openssl._binding import ffi, lib

__all__ = ["InvalidTag", "aes256gcm_decrypt", "aes256gcm_encrypt", "digest", "hmac",
           "openssl_version", "openssl_version_number", "random_bytes", "sha256"]

_MAX_MD = 64


class InvalidTag(ValueError):
    """AES-GCM authentication failed: wrong key, IV, AAD, tag, or tampered data."""


def openssl_version() -> str:
    """OpenSSL's version string, e.g. ``"OpenSSL 3.5.7 9 Jun 2026"``."""
    return ffi.string(lib.OpenSSL_version(lib.OPENSSL_VERSION)).decode()


def openssl_version_number() -> int:
    return int(lib.OpenSSL_version_num())


def openssl_info(what: str) -> str:
    """One of "cflags", "built_on", "platform" (OpenSSL_version's other fields)."""
    key = {"cflags": lib.OPENSSL_CFLAGS, "built_on": lib.OPENSSL_BUILT_ON, "platform": lib.OPENSSL_PLATFORM}[what]
    return ffi.string(lib.OpenSSL_version(key)).decode()


def digest(name: str, data: bytes) -> bytes:
    """Hash *data* with the digest *name* ("SHA256", "SHA512", "SHA3-256", ...)."""
    out = ffi.new("unsigned char[]", _MAX_MD)
    n = ffi.new("size_t *")
    if lib.hx_digest(name.encode(), data, len(data), out, _MAX_MD, n) != 1:
        raise ValueError(f"unknown or unsupported digest {name!r}")
    return bytes(ffi.buffer(out, n[0]))


def sha256(data: bytes) -> bytes:
    return digest("SHA256", data)


def hmac(name: str, key: bytes, data: bytes) -> bytes:
    """HMAC of *data* under *key* with digest *name*."""
    out = ffi.new("unsigned char[]", _MAX_MD)
    n = ffi.new("size_t *")
    if lib.hx_hmac(name.encode(), key, len(key), data, len(data), out, _MAX_MD, n) != 1:
        raise ValueError(f"HMAC with digest {name!r} failed")
    return bytes(ffi.buffer(out, n[0]))


def random_bytes(n: int) -> bytes:
    """*n* bytes from OpenSSL's CSPRNG."""
    if n < 0:
        raise ValueError("n must be >= 0")
    buf = ffi.new("unsigned char[]", max(n, 1))
    if lib.hx_random(buf, n) != 1:
        raise RuntimeError("RAND_bytes failed")
    return bytes(ffi.buffer(buf, n))


def _check(key: bytes, iv: bytes) -> None:
    if len(key) != 32:
        raise ValueError("AES-256-GCM needs a 32-byte key")
    if not iv:
        raise ValueError("the IV must not be empty")


def aes256gcm_encrypt(key: bytes, iv: bytes, plaintext: bytes, aad: bytes = b"") -> tuple[bytes, bytes]:
    """Encrypt; return (ciphertext, 16-byte tag)."""
    _check(key, iv)
    ct = ffi.new("unsigned char[]", max(len(plaintext), 1))
    tag = ffi.new("unsigned char[]", 16)
    if lib.hx_aes256gcm_encrypt(key, iv, len(iv), aad, len(aad), plaintext, len(plaintext), ct, tag, 16) != 1:
        raise RuntimeError("AES-256-GCM encryption failed")
    return bytes(ffi.buffer(ct, len(plaintext))), bytes(ffi.buffer(tag, 16))


def aes256gcm_decrypt(key: bytes, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes = b"") -> bytes:
    """Decrypt and authenticate; raise InvalidTag if anything was altered."""
    _check(key, iv)
    if not 4 <= len(tag) <= 16:
        raise ValueError("tag must be 4..16 bytes")
    pt = ffi.new("unsigned char[]", max(len(ciphertext), 1))
    rc = lib.hx_aes256gcm_decrypt(key, iv, len(iv), aad, len(aad), ciphertext, len(ciphertext), tag, len(tag), pt)
    if rc == 0:
        raise InvalidTag("authentication failed")
    if rc != 1:
        raise RuntimeError("AES-256-GCM decryption failed")
    return bytes(ffi.buffer(pt, len(ciphertext)))

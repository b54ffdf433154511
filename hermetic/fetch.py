"""The fetcher API: how plugins teach hermetic to obtain pinned blobs.

A fetcher handles one URL scheme and writes the bytes it finds to a path it is
given; hermetic checks the sha256 itself, so a fetcher needs no trust. A
signature verifier checks a detached signature against a pinned key.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Protocol, final

__all__ = ["Fetcher", "FetcherRegistry", "SignatureVerifier", "Verified"]


class Verified(NamedTuple):
    """A good signature: who made it and when (*description*), and what the
    user should still know (*warnings*: e.g. the key has expired since)."""

    description: str
    warnings: tuple[str, ...] = ()


class Fetcher(Protocol):
    def __call__(self, url: str, dest: Path, *, sha256: str, timeout: float) -> None:
        """Write the resource at *url* to *dest*, or raise FetchError."""
        ...


class SignatureVerifier(Protocol):
    def __call__(self, data: Path, signature: Path, key: Path, fingerprint: str) -> str | Verified:
        """Check *signature* of *data* with the public *key*, whose primary
        fingerprint must be *fingerprint*. Return what was verified (a
        one-line description, or :class:`Verified` with warnings); raise
        FetchError otherwise."""
        ...


@final
class FetcherRegistry:
    """Filled in by ``hermetic_register_fetchers`` hooks."""

    def __init__(self) -> None:
        self.fetchers: dict[str, Fetcher] = {}
        self.verifiers: dict[str, SignatureVerifier] = {}

    def add_fetcher(self, scheme: str, fetcher: Fetcher) -> None:
        self.fetchers[scheme] = fetcher

    def add_verifier(self, kind: str, verifier: SignatureVerifier) -> None:
        self.verifiers[kind] = verifier

    def for_url(self, url: str) -> Fetcher | None:
        scheme = url.split(":", 1)[0].lower() if ":" in url else "file"
        return self.fetchers.get(scheme)

"""Resolving a pinned blob: the local store, then distdirs, then mirrors, then
upstream URLs. Bytes reach the store only after their sha256 (and, where the
recipe pins one, their signature) checks out: all or nothing."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hermetic._cache import Store, hash_file
from hermetic.errors import FetchError, HermeticError
from hermetic.events import FetchMismatch, Note, Report, ignore
from hermetic.fetch import FetcherRegistry
from hermetic.model import Digest



class FetchResolver:
    def __init__(self, store: Store, registry: FetcherRegistry, distdirs: Sequence[Path] = (),
                 timeout: float = 30.0, report: Report | None = None) -> None:
        self.store = store
        self.registry = registry
        self.distdirs = [Path(d) for d in distdirs]
        self.timeout = timeout
        self.report = report or ignore

    def candidates(self, name: str, sha256: str, mirrors: Sequence[str], urls: Sequence[str]) -> list[str]:
        out = []
        for d in self.distdirs:
            for n in (name, sha256):
                p = d / n
                if p.is_file():
                    out.append(p.resolve().as_uri())
        return out + list(mirrors) + list(urls)

    def _stage(self, name: str, sha256: str, size: int | None, mirrors: Sequence[str],
               urls: Sequence[str]) -> tuple[Path, Digest]:
        """Download to a staging file whose hash is checked; raise with every
        attempt listed when no source has the right bytes."""
        attempts: list[str] = []
        mismatched = False
        for url in self.candidates(name, sha256, mirrors, urls):
            fetcher = self.registry.for_url(url)
            if fetcher is None:
                attempts.append(f"{url}: no fetcher for this URL scheme")
                continue
            tmpdir = self.store.staging_dir("fetch.")
            dest = tmpdir / "blob"
            try:
                fetcher(url, dest, sha256=sha256, timeout=self.timeout)
                got = hash_file(dest)
            except HermeticError as exc:
                attempts.append(f"{url}: {exc}")
                _rm(tmpdir)
                continue
            except OSError as exc:
                attempts.append(f"{url}: {exc}")
                _rm(tmpdir)
                continue
            if got.hash != sha256 or (size is not None and got.size != size):
                attempts.append(f"{url}: got sha256 {got.hash} ({got.size} bytes), expected {sha256}"
                                + (f" ({size} bytes)" if size is not None else ""))
                mismatched = True
                self.report(FetchMismatch(url, name))
                _rm(tmpdir)
                continue
            return dest, got
        tried = "\n".join("  - " + a for a in attempts) or "  (no source: no distdir, mirror or URL)"
        raise FetchError(
            f"cannot fetch {name} (sha256 {sha256}); tried:\n{tried}",
            hint=f"put the file {name} into a directory passed with --distdir, or check the pinned sha256",
            reason="hash-mismatch" if mismatched else "fetch-failed",
        )

    def fetch(self, params: dict[str, Any], key_path: Path | None) -> Digest:
        sha256 = params["sha256"]
        size = params.get("size")
        existing = self.store.blob_path(sha256)
        if existing.exists():
            d = hash_file(existing)
            if d.hash == sha256:
                return d
            existing.unlink(missing_ok=True)
        data, digest = self._stage(params["name"], sha256, size, params.get("mirrors", []),
                                   params.get("urls", []))
        try:
            sig = params.get("signature")
            if sig:
                assert key_path is not None
                sig_path, sig_digest = self._stage(sig.get("name", params["name"] + ".asc"), sig["sha256"],
                                                   None, sig.get("mirrors", []), sig.get("urls", []))
                verifier = self.registry.verifiers.get(sig.get("kind", "openpgp"))
                if verifier is None:
                    raise FetchError(f"no verifier for {sig.get('kind')} signatures", reason="no-verifier")
                try:
                    verified = verifier(data, sig_path, key_path, sig["fingerprint"])
                    for warning in getattr(verified, "warnings", ()):
                        self.report(Note(f"{params['name']}: {warning}", level="warning"))
                finally:
                    _rm(sig_path.parent)
            return self.store.put_file(data, move=True, digest=digest)
        finally:
            _rm(data.parent)


def _rm(d: Path) -> None:
    import shutil

    with contextlib.suppress(OSError):
        shutil.rmtree(d)
    with contextlib.suppress(OSError):
        os.unlink(d)

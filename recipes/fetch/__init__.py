"""Pinned downloads: the ``archive`` and ``python_wheel`` rules, the fetchers
(file, http(s), Debian source packages, pip) and the OpenPGP verifier."""

from __future__ import annotations

import atexit
import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from hermetic.conventions import PythonConventions
from hermetic.errors import FetchError
from hermetic.fetch import FetcherRegistry, Verified
from hermetic.hookspecs import hookimpl
from hermetic.model import Artifact, Platform, Provider, Toolchain
from hermetic.providers import PinnedWheel, PyWheelInfo, SourceInfo, wheel_fits
from hermetic.rules import DefaultInfo, RuleContext, RuleRegistry, attr

# -- rules ----------------------------------------------------------------------


def _archive(ctx: RuleContext) -> list[Provider]:
    a = ctx.attr
    if not re.fullmatch(r"[0-9a-f]{64}", a.sha256.lower()):
        raise ctx.error(f'sha256 "{a.sha256}" is not 64 hex digits')
    filename = a.filename or (a.urls[0].rsplit("/", 1)[-1] if a.urls else "")
    if not filename:
        raise ctx.error("set filename (or at least one URL)")
    archive = ctx.declare_output(filename)
    signature = None
    if a.signature:
        if not a.signing_key or not a.fingerprint:
            raise ctx.error("a signature needs signing_key and fingerprint")
        sig = dict(a.signature)
        signature = {"kind": sig.get("kind", "openpgp"), "sha256": str(sig["sha256"]).lower(),
                     "urls": list(sig.get("urls", [])), "mirrors": list(sig.get("mirrors", [])),
                     "name": sig.get("filename", filename + ".asc"), "key": a.signing_key[0],
                     "fingerprint": a.fingerprint.replace(" ", "").upper()}
    ctx.actions.fetch(archive, sha256=a.sha256, urls=a.urls, mirrors=a.mirrors,
                      size=a.size or None, signature=signature)
    tree = ctx.declare_output("src", tree=True)
    ctx.actions.extract(archive, tree, strip_prefix=a.strip_prefix, subdir=a.subdir)
    return [SourceInfo(archive, tree, a.source_date_epoch or 0), DefaultInfo((tree,))]


def wheel_matches(filename: str, python: Toolchain, platform: Platform) -> bool:
    """Whether the wheel *filename* installs on *python* for *platform*."""
    return wheel_fits(filename, python.conventions(PythonConventions).tag, platform)


def _python_wheel(ctx: RuleContext) -> list[Provider]:
    python = ctx.toolchain("python")
    pins = []
    for entry in ctx.attr.wheels:
        fname, _, digest = entry.partition(" sha256:")
        if not digest:
            raise ctx.error(f'wheel pin "{entry}" must be "<filename> sha256:<hex>"')
        pins.append((fname.strip(), digest.strip()))
    chosen = next(((f, d) for f, d in pins if wheel_matches(f, python, ctx.platform)), None)
    if chosen is None:
        raise ctx.error(f"no pinned wheel of {ctx.attr.distribution} fits Python {python.conventions(PythonConventions).tag} "
                        f"on {ctx.platform}", hint=f"add a pin for it: pip download --only-binary :all: "
                        f"--no-deps {ctx.attr.distribution}=={ctx.attr.version}, then sha256sum")

    def fetch(fname: str, digest: str, wheel: Artifact, site: Artifact, suffix: str = "") -> None:
        ctx.actions.fetch(wheel, sha256=digest, urls=[f"pip:{ctx.attr.distribution}=={ctx.attr.version}/{fname}"],
                          mnemonic="FetchWheel" + suffix)
        ctx.actions.extract(wheel, site, mnemonic="UnpackWheel" + suffix)

    fname, digest = chosen
    wheel = ctx.declare_output(fname)
    unpacked = ctx.declare_output("site", tree=True)
    fetch(fname, digest, wheel, unpacked)
    candidates = []
    if len(pins) > 1:
        # every pinned file, for rules that choose per interpreter (a matrix cell): the same for
        # every platform this target is analysed for, and fetched only when a cell needs it
        for f, d in pins:
            tags = f.removesuffix(".whl").split("-", 2)[-1]
            w = ctx.declare_output(f"pins/{f}", shared=True)
            site = ctx.declare_output(f"pins/{tags}", tree=True, shared=True)
            fetch(f, d, w, site, f"[{tags}]")
            candidates.append(PinnedWheel(f, w, site))
    else:
        candidates.append(PinnedWheel(fname, wheel, unpacked))
    return [PyWheelInfo(ctx.attr.distribution, ctx.attr.version, wheel, unpacked, tuple(candidates)),
            DefaultInfo((wheel,))]


@hookimpl
def hermetic_register_rules(registry: RuleRegistry) -> None:
    registry.rule("archive", attrs={
        "sha256": attr.string(mandatory=True, doc="sha256 of the archive: the pin"),
        "size": attr.int(doc="size in bytes (optional extra check)"),
        "urls": attr.string_list(doc="upstream URLs, tried last"),
        "mirrors": attr.string_list(doc="mirrors, tried after distdirs and before urls"),
        "filename": attr.string(doc="file name (for distdirs); default: last part of the first URL"),
        "strip_prefix": attr.string(doc="directory inside the archive to extract"),
        "subdir": attr.string(doc="only this directory below strip_prefix (a library vendored in a bigger source)"),
        "signature": attr.string_dict(doc="{sha256, urls, mirrors, filename}: a detached OpenPGP signature"),
        "signing_key": attr.files(doc="the public key file that must have made the signature"),
        "fingerprint": attr.string(doc="the key's primary fingerprint"),
        "source_date_epoch": attr.int(doc="the release's date (Unix time): the SOURCE_DATE_EPOCH of builds "
                                          "from this source, instead of the workspace's"),
    }, doc="A pinned, verified source archive, extracted.", platform_independent=True)(_archive)
    registry.rule("python_wheel", attrs={
        "distribution": attr.string(mandatory=True),
        "version": attr.string(mandatory=True),
        "wheels": attr.string_list(mandatory=True, doc='"<wheel filename> sha256:<hex>" per platform'),
    }, doc="A pinned binary wheel from the configured package index.")(_python_wheel)


# -- fetchers ---------------------------------------------------------------------


def fetch_file(url: str, dest: Path, *, sha256: str, timeout: float) -> None:
    path = urllib.parse.urlparse(url).path if url.startswith("file:") else url
    try:
        shutil.copyfile(urllib.parse.unquote(path), dest)
    except OSError as exc:
        raise FetchError(f"cannot read: {exc.strerror}") from exc


def fetch_http(url: str, dest: Path, *, sha256: str, timeout: float) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "hermetic"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise FetchError(f"unreachable ({getattr(exc, 'reason', exc)})") from exc


_apt_lock = threading.Lock()
_apt_dirs: dict[str, Path] = {}


def _cleanup_apt() -> None:
    for d in _apt_dirs.values():
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup_apt)


def fetch_apt_source(url: str, dest: Path, *, sha256: str, timeout: float) -> None:
    """``apt-source:<package>=<version>/<file>``: a file of a Debian source
    package, downloaded with ``apt-get source --download-only``. apt checks it
    against the archive's signed index; hermetic checks the pin on top."""
    spec, _, filename = url.split(":", 1)[1].partition("/")
    if not shutil.which("apt-get"):
        raise FetchError("apt-get is not available (not a Debian host)")
    with _apt_lock:
        d = _apt_dirs.get(spec)
        if d is None:
            d = Path(tempfile.mkdtemp(prefix="hermetic-apt."))
            os.chmod(d, 0o755)
            proc = subprocess.run(["apt-get", "source", "--download-only", "-q", spec], cwd=d,
                                  capture_output=True, text=True, timeout=max(timeout, 300),
                                  env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
            if proc.returncode != 0 and (d / filename).is_file():
                # another file of the package (its .dsc, say) is missing on this mirror, but apt fetched
                # and checked this one (apt moves a file in only once it matches the signed index);
                # the pin is checked on top
                shutil.copyfile(d / filename, dest)
                shutil.rmtree(d, ignore_errors=True)
                return
            if proc.returncode != 0:
                shutil.rmtree(d, ignore_errors=True)
                msg = " ".join(line for line in proc.stderr.splitlines() if line.startswith("E:"))
                if "deb-src" in msg:
                    hint = "enable Debian source packages (scripts/setup-debian.sh adds a deb-src entry)"
                elif "find version" in msg or "Unable to find a source package" in msg:
                    hint = ("Debian replaced this version; `apt-cache showsrc "
                            f"{spec.split('=')[0]}` lists what it has: bump the pin")
                else:
                    hint = ""
                raise FetchError(f"apt-get source {spec} failed: {msg or proc.stderr.strip()[-300:]}"
                                 + (f" ({hint})" if hint else ""))
            _apt_dirs[spec] = d
    src = d / filename
    if not src.is_file():
        raise FetchError(f"Debian source package {spec} has no file {filename}")
    shutil.copyfile(src, dest)


def fetch_pip(url: str, dest: Path, *, sha256: str, timeout: float) -> None:
    """``pip:<name>==<version>/<filename>``: a wheel or a source
    distribution, from the indexes pip is configured with, found by its file
    name through the simple repository API and checked against the pin
    (:mod:`hermetic.pyindex`). Nothing of the package runs: no
    ``pip download``, whose metadata step would execute an sdist's build
    backend on the host."""
    from hermetic import pyindex as simple_index

    req, _, filename = url.split(":", 1)[1].partition("/")
    name, sep, version = req.partition("==")
    if not sep or not name or not version or not filename:
        raise FetchError(f'"{url}" is not pip:NAME==VERSION/FILENAME')
    if version not in filename:
        raise FetchError(f"{filename} is not version {version} of {name}", hint="fix the pip: URL")
    simple_index.fetch(name, filename, sha256, dest)


# -- OpenPGP ----------------------------------------------------------------------


def dearmor(text: str) -> bytes:
    """ASCII-armored OpenPGP key block(s) -> binary packets (what gpgv reads)."""
    out = b""
    blocks = re.findall(r"-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n(.*?)-----END PGP PUBLIC KEY BLOCK-----",
                        text, re.S)
    if not blocks:
        raise FetchError("the signing key file holds no ASCII-armored public key block")
    for block in blocks:
        lines = block.splitlines()
        i = 0
        while i < len(lines) and lines[i].strip():  # armor headers end at the first blank line
            if ":" not in lines[i]:
                break
            i += 1
        body = "".join(ln.strip() for ln in lines[i:] if ln.strip() and not ln.startswith("="))
        out += base64.b64decode(body)
    return out


def verify_openpgp(data: Path, signature: Path, key: Path, fingerprint: str) -> Verified:
    """gpgv against the pinned key. A key that has expired since is accepted
    for signatures made while it was valid, with a warning naming the date
    (upstream's key file needs refreshing); a signature made after the key
    expired is refused."""
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise FetchError("gpgv is not installed; it checks the pinned signature",
                         hint="apt-get install gpgv", reason="no-gpgv")
    tmp = Path(tempfile.mkdtemp(prefix="hermetic-gpg."))
    try:
        keyring = tmp / "keyring.gpg"
        keyring.write_bytes(dearmor(key.read_text()))
        proc = subprocess.run([gpgv, "--homedir", str(tmp), "--status-fd", "1", "--keyring", str(keyring),
                               str(signature), str(data)], capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin", "LC_ALL": "C", "TZ": "UTC"})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    want = fingerprint.replace(" ", "").upper()
    expired = next((int(p[2]) for p in (ln.split() for ln in proc.stdout.splitlines())
                    if len(p) >= 3 and p[1] == "KEYEXPIRED" and p[2].isdigit()), None)
    for line in proc.stdout.splitlines():
        parts = line.split()
        # VALIDSIG <sig fpr> <date> <ts> <exp> <ver> <res> <pk algo> <hash> <class> <primary fpr>
        if len(parts) >= 12 and parts[1] == "VALIDSIG" and proc.returncode == 0:
            if parts[-1].upper() != want:
                raise FetchError(f"signature is by key {parts[-1]}, not the pinned {want}", reason="bad-signature",
                                 hint="the pinned key or fingerprint is wrong, or the release was re-signed")
            made = int(parts[4]) if parts[4].isdigit() else 0
            if expired is None:
                return Verified(f"good signature by {want} made {parts[3]}")
            until = time.strftime("%Y-%m-%d", time.gmtime(expired))
            if made > expired:
                raise FetchError(f"signature made {parts[3]} by key {want}, which expired on {until}",
                                 reason="bad-signature",
                                 hint="a signature made with an expired key proves nothing: get the release "
                                      "signed by a current key, and pin that key")
            return Verified(f"good signature by {want} made {parts[3]}", (
                f"the signing key {want} expired on {until}; the signature was made {parts[3]}, while it was "
                "valid, so it is accepted. Refresh the pinned key file from upstream (a renewed key keeps its "
                "fingerprint) before a release signed after that date",))
    detail = " ".join(line for line in (proc.stdout + proc.stderr).splitlines()
                      if "BADSIG" in line or "ERRSIG" in line or "NO_PUBKEY" in line or "gpgv:" in line)
    raise FetchError(f"OpenPGP signature check failed: {detail.strip() or 'no valid signature'}",
                     reason="bad-signature",
                     hint="the archive or its signature was tampered with, or the pinned key is not the signer")


@hookimpl
def hermetic_register_fetchers(registry: FetcherRegistry) -> None:
    registry.add_fetcher("file", fetch_file)
    registry.add_fetcher("http", fetch_http)
    registry.add_fetcher("https", fetch_http)
    registry.add_fetcher("apt-source", fetch_apt_source)
    registry.add_fetcher("pip", fetch_pip)
    registry.add_verifier("openpgp", verify_openpgp)

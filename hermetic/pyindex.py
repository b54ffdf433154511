"""Finding one pinned file on the package indexes pip is configured with,
and downloading it, without running anything of the package.

``pip download`` of an sdist prepares its metadata: it installs the build
requirements and executes the package's build backend on the host, with
network, outside any sandbox. A pinned fetch needs none of that: the file's
name and sha256 are known, so the only questions are where the bytes are and
whether they are the pinned ones. This module asks pip's configuration (the
same ``index-url``, ``extra-index-url``, ``find-links``, ``cert`` and
``timeout`` that ``pip download`` would use, from its config files and
``PIP_*`` variables) where to look, reads each index's project page through
the simple repository API (PEP 691 JSON, or the PEP 503 HTML page), takes
the link whose file name is the pinned one, and downloads that URL and
nothing else.
"""

from __future__ import annotations

import ast
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hermetic.errors import FetchError

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


@dataclass
class PipSettings:
    """Where pip would look, in pip's order: the index, the extra indexes,
    then find-links locations."""

    index_urls: list[str] = field(default_factory=list)
    find_links: list[str] = field(default_factory=list)
    cert: str | None = None
    timeout: float = 60.0


def _split(value: str) -> list[str]:
    return [v for v in re.split(r"\s+", value.strip()) if v]


def pip_settings() -> PipSettings:
    """pip's own view of its configuration (``pip config list``: files and
    ``PIP_*`` variables; a command's section over ``[global]``, the
    environment over both), and pip's default index when none is set."""
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                          check=False, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    if proc.returncode != 0:
        raise FetchError(f"pip config list failed: {proc.stderr.strip()[-300:]}",
                         hint="hermetic fetches pip: URLs from the indexes pip is configured with")
    values: dict[str, dict[str, str]] = {}
    for line in proc.stdout.splitlines():
        key, sep, raw = line.partition("=")
        if not sep or "." not in key:
            continue
        section, _, name = key.rpartition(".")
        try:
            value = str(ast.literal_eval(raw.strip()))  # pip prints values as Python string literals
        except (ValueError, SyntaxError):
            value = raw.strip()
        values.setdefault(name, {})[section] = value

    def get(name: str) -> str | None:
        for section in (":env:", "download", "global"):
            if section in values.get(name, {}):
                return values[name][section]
        return None

    index = get("index-url") or _default_index()
    no_index = (get("no-index") or "").lower() in ("1", "true", "yes", "on")
    settings = PipSettings(
        index_urls=[] if no_index else [index, *_split(get("extra-index-url") or "")],
        find_links=_split(get("find-links") or ""),
        cert=get("cert"),
    )
    try:
        settings.timeout = float(get("timeout") or get("default-timeout") or 60)
    except ValueError:
        pass
    return settings


def _default_index() -> str:
    """The index pip uses when none is configured (asked of pip itself, so
    no index host is written here)."""
    proc = subprocess.run([sys.executable, "-c", "from pip._internal.models.index import PyPI; "
                           "print(PyPI.simple_url)"], capture_output=True, text=True, check=False)
    url = proc.stdout.strip()
    if proc.returncode != 0 or not url:
        raise FetchError("cannot tell which index pip uses by default",
                         hint="set index-url in pip's configuration (pip config set global.index-url URL)")
    return url


def normalize(name: str) -> str:
    """PEP 503 project name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


class Index:
    """HTTP(S) and file:// reads with pip's certificate and timeout."""

    def __init__(self, settings: PipSettings) -> None:
        self.settings = settings
        self.requests: list[str] = []  # every URL read (tests check nothing else is asked for)
        self._http: Any = None

    def _pool(self) -> Any:
        if self._http is None:
            import urllib3

            kw = {"ca_certs": self.settings.cert} if self.settings.cert else {}
            self._http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=min(self.settings.timeout, 10),
                                                                     read=self.settings.timeout),
                                             retries=urllib3.Retry(total=2, backoff_factor=0.2),
                                             headers={"User-Agent": "hermetic"}, **kw)
        return self._http

    def read(self, url: str, accept: str | None = None) -> tuple[bytes, str, str] | None:
        """(body, content type, final URL); None when there is no such page."""
        self.requests.append(url)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "file":
            path = Path(urllib.request.url2pathname(parts.path))
            if path.is_dir():
                path = path / "index.html"
            if not path.is_file():
                return None
            return path.read_bytes(), "text/html", path.as_uri()
        try:
            r = self._pool().request("GET", url, headers={"Accept": accept} if accept else None)
        except Exception as exc:  # urllib3's errors: one message for the fetch to report
            raise FetchError(f"GET {url}: {exc}") from exc
        if r.status == 404:
            return None
        if r.status != 200:
            raise FetchError(f"GET {url}: HTTP {r.status}")
        # after redirects, where the page is (urllib3 may give only its path)
        return r.data, r.headers.get("Content-Type", ""), urllib.parse.urljoin(url, r.geturl() or url)

    def download(self, url: str, dest: Path) -> None:
        self.requests.append(url)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "file":
            shutil.copyfile(urllib.request.url2pathname(parts.path), dest)
            return
        try:
            r = self._pool().request("GET", url, preload_content=False)
            if r.status != 200:
                raise FetchError(f"GET {url}: HTTP {r.status}")
            with open(dest, "wb") as out:
                for chunk in r.stream(1 << 20):
                    out.write(chunk)
            r.release_conn()
        except FetchError:
            raise
        except Exception as exc:
            raise FetchError(f"GET {url}: {exc}") from exc


def _project_links(index: Index, base: str, project: str) -> Iterator[tuple[str, str | None]]:
    """(file URL, its sha256 if the index says) for each file on a project page."""
    page = index.read(base.rstrip("/") + f"/{project}/", accept=f"{JSON_TYPE}, text/html;q=0.1")
    if page is None:
        return
    body, ctype, url = page
    if JSON_TYPE in ctype:
        data = json.loads(body)
        for f in data.get("files", []):
            yield urllib.parse.urljoin(url, f["url"]), (f.get("hashes") or {}).get("sha256")
        return
    parser = _Links()
    parser.feed(body.decode("utf-8", "replace"))
    for href in parser.links:
        full = urllib.parse.urljoin(url, href)
        frag = urllib.parse.urlsplit(full).fragment
        sha = frag.split("=", 1)[1] if frag.startswith("sha256=") else None
        yield full.split("#", 1)[0], sha


def _find_links(index: Index, location: str) -> Iterator[tuple[str, str | None]]:
    """A find-links location: a local directory's files, or a page's links."""
    if "://" not in location:
        d = Path(location)
        if d.is_dir():
            index.requests.append(d.as_uri())
            for p in sorted(d.iterdir()):
                yield p.as_uri(), None
        return
    page = index.read(location)
    if page is None:
        return
    parser = _Links()
    parser.feed(page[0].decode("utf-8", "replace"))
    for href in parser.links:
        full = urllib.parse.urljoin(page[2], href)
        frag = urllib.parse.urlsplit(full).fragment
        yield full.split("#", 1)[0], frag.split("=", 1)[1] if frag.startswith("sha256=") else None


def _sources(index: Index, project: str) -> list[tuple[str, Iterator[tuple[str, str | None]]]]:
    """(where, its links, read lazily) for each place pip would look, in pip's order."""
    sources = [(base, _project_links(index, base, normalize(project))) for base in index.settings.index_urls]
    return sources + [(loc, _find_links(index, loc)) for loc in index.settings.find_links]


def sdists(index: Index, project: str) -> list[tuple[str, str, str, str | None]]:
    """Every source distribution of *project* on pip's indexes: (version,
    file name, URL, sha256 if the index says), from the listings alone."""
    from packaging.utils import InvalidSdistFilename, canonicalize_name, parse_sdist_filename

    found: dict[str, tuple[str, str, str, str | None]] = {}
    for _where, links in _sources(index, project):
        for url, sha in links:
            name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
            try:
                dist, version = parse_sdist_filename(name)
            except InvalidSdistFilename:
                continue
            if dist == canonicalize_name(project):
                found.setdefault(name, (str(version), name, url, sha))
    return sorted(found.values())


def locate(index: Index, project: str, filename: str, sha256: str) -> str:
    """The URL of *filename* on pip's indexes; an index that names another
    sha256 for it is an error (the pin or the index is wrong)."""
    seen: list[str] = []
    # in pip's order; each location is read only if the ones before it lack the file
    for where, links in _sources(index, project):
        for url, sha in links:
            name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
            if name != filename:
                continue
            if sha is not None and sha.lower() != sha256.lower():
                raise FetchError(f"{where} lists {filename} with sha256 {sha}, not the pinned {sha256}",
                                 reason="hash-mismatch",
                                 hint="the pin is wrong, or the index serves other bytes under this name")
            return url
        seen.append(where)
    raise FetchError(f"{filename} is on none of pip's indexes ({', '.join(seen) or 'none configured'})",
                     hint="check the file name and version, or pip's index-url/find-links settings")


def fetch(project: str, filename: str, sha256: str, dest: Path, settings: PipSettings | None = None) -> Index:
    """Download pinned *filename* of *project* to *dest* and check it."""
    index = Index(settings or pip_settings())
    url = locate(index, project, filename, sha256)
    index.download(url, dest)
    from hermetic._cache import hash_file

    got = hash_file(dest).hash
    if got != sha256.lower():
        dest.unlink(missing_ok=True)
        raise FetchError(f"{url} has sha256 {got}, not the pinned {sha256}", reason="hash-mismatch")
    return index

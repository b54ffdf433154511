"""BUILD.toml files -> target declarations, with file and line for every one.

A workspace is the directory whose BUILD.toml has a ``[workspace]`` table. A
package's targets live in ``<package>/BUILD.toml`` as tables named by target,
or in the root BUILD.toml as tables named by full label
(``["//wheel:linux-x86_64"]``). A table holds ``rule = "..."`` and the rule's
attributes.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import attrs

from hermetic.errors import BuildFileError, HermeticError, Location, did_you_mean
from hermetic.model import Label

BUILD_FILE = "BUILD.toml"
COMMON_ATTRS = {"rule", "platform", "doc", "tags"}

_HEADER = re.compile(r"^\s*\[(?!\[)\s*(.+?)\s*\]\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)\s*=""")


@attrs.frozen
class TargetDecl:
    """One target as written: its rule name, raw attributes and where."""

    label: Label
    rule: str
    values: dict[str, Any] = attrs.field(eq=False)
    where: Location
    attr_lines: dict[str, int] = attrs.field(eq=False, factory=dict)

    def at(self, attr: str) -> Location:
        return Location(self.where.file, self.attr_lines.get(attr, self.where.line))


@attrs.frozen
class WorkspaceConfig:
    source_date_epoch: int = 315532800  # 1980-01-01, the earliest a zip can say
    raw: dict[str, Any] = attrs.field(factory=dict, eq=False)


def _source_date_epoch(table: dict[str, Any], root: Path, where: Location) -> int:
    """The workspace's SOURCE_DATE_EPOCH: a pinned integer, or ``"git"`` for
    the committer time of the repository's last commit. Never the clock."""
    value = table.get("source_date_epoch", 315532800)
    if value == "git":
        try:
            out = subprocess.run(["git", "-c", "safe.directory=*", "-C", str(root), "log", "-1", "--format=%ct"], capture_output=True,
                                 text=True, check=False, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                                              "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"})
        except OSError as exc:
            raise BuildFileError(f'source_date_epoch = "git" needs git: {exc}', where=where, reason="bad-value",
                                 hint="install git, or pin an integer (Unix time)") from exc
        text = out.stdout.strip()
        if out.returncode != 0 or not text.isdigit():
            raise BuildFileError(f'source_date_epoch = "git" but {root} has no commit to take it from '
                                 f"({out.stderr.strip() or 'empty history'})", where=where, reason="bad-value",
                                 hint="commit first, or pin an integer (Unix time)")
        return int(text)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise BuildFileError(f"source_date_epoch must be a Unix time (integer) or \"git\", not {value!r}",
                             where=where, reason="bad-value")
    return value


def _unquote(key: str) -> str:
    key = key.strip()
    if len(key) >= 2 and key[0] == key[-1] and key[0] in "\"'":
        return key[1:-1]
    return key


def _scan_lines(text: str) -> dict[str, tuple[int, dict[str, int]]]:
    """Table name -> (header line, {key: line}). Enough TOML to give errors
    a line number; the values themselves come from tomllib."""
    tables: dict[str, tuple[int, dict[str, int]]] = {}
    current: dict[str, int] | None = None
    for no, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if m:
            current = {}
            tables[_unquote(m.group(1))] = (no, current)
            continue
        k = _KEY.match(line)
        if k and current is not None:
            current.setdefault(_unquote(k.group(1)), no)
    return tables


_WORKSPACE_HEADER = re.compile(r"^[ \t]*\[[ \t]*workspace[ \t]*[\].]", re.MULTILINE)


def find_workspace(start: Path) -> Path:
    here = start.resolve()
    for d in (here, *here.parents):
        f = d / BUILD_FILE
        if f.is_file():
            try:
                text = f.read_text()
                # a [workspace] header says it without parsing a root BUILD file of 1,000 targets
                # twice (the loader parses it next); anything else is asked of the TOML parser
                if _WORKSPACE_HEADER.search(text) or "workspace" in tomllib.loads(text):
                    return d
            except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
                return d  # let the loader report the syntax error with a line
    raise HermeticError(
        f"no workspace found at or above {here}",
        hint=f"run hermetic inside a directory tree whose top {BUILD_FILE} has a [workspace] table",
        reason="no-workspace",
    )


class Workspace:
    """Loads BUILD files on demand and remembers every target declared."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.targets: dict[Label, TargetDecl] = {}
        self._loaded: set[str] = set()
        #: what loading read, for the analysis cache (:mod:`hermetic._incremental`):
        #: package -> sha256 of its BUILD file (None: it has none); (package, pattern) -> files
        self.build_files: dict[str, str | None] = {}
        self.globs: dict[tuple[str, str], list[str]] = {}
        self.config = WorkspaceConfig()
        self._load_file(root / BUILD_FILE, "", root_file=True)

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def _load_file(self, path: Path, package: str, *, root_file: bool = False) -> None:
        self._loaded.add(package)
        shown = self.rel(path)
        try:
            text = path.read_text()
            self.build_files[package] = hashlib.sha256(text.encode()).hexdigest()
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"at line (\d+)", str(exc))
            raise BuildFileError(f"invalid TOML: {exc}", where=Location(shown, int(m.group(1)) if m else None),
                                 reason="toml-syntax") from exc
        except OSError as exc:
            raise BuildFileError(f"cannot read: {exc}", where=Location(shown)) from exc
        lines = _scan_lines(text)
        problems: list[HermeticError] = []
        for key, table in data.items():
            line, attr_lines = lines.get(key, (None, {}))
            where = Location(shown, line)
            if key == "workspace" and root_file:
                sde_where = Location(shown, attr_lines.get("source_date_epoch", line))
                try:
                    self.config = WorkspaceConfig(_source_date_epoch(table, self.root, sde_where), table)
                except BuildFileError as exc:
                    problems.append(exc)
                continue
            if not isinstance(table, dict):
                problems.append(BuildFileError(f'"{key}" must be a table ([{key}]) describing a target',
                                               where=where, reason="not-a-table"))
                continue
            try:
                if key.startswith("//"):
                    if not root_file:
                        raise BuildFileError(f'"{key}": a full label as table name is only allowed in the '
                                             f"root {BUILD_FILE}", where=where,
                                             hint=f'name the table by target alone: [{key.rsplit(":", 1)[-1]}]')
                    label = Label.parse(key)
                else:
                    label = Label.parse(f":{key}", package)
            except HermeticError as exc:
                problems.append(BuildFileError(str(exc), hint=exc.hint, where=where, reason="bad-label"))
                continue
            rule = table.get("rule")
            if not isinstance(rule, str):
                problems.append(BuildFileError(f"target {label}: missing rule = \"...\"", where=where,
                                               reason="missing-rule"))
                continue
            if label in self.targets:
                prev = self.targets[label].where
                problems.append(BuildFileError(f"target {label} is declared twice (first at {prev})",
                                               where=where, reason="duplicate-target"))
                continue
            self.targets[label] = TargetDecl(label, rule, table, where, attr_lines)  # (tomllib's own dict)
        if problems:
            raise ExceptionGroup(f"{shown}: {len(problems)} problem(s)", problems)

    def load_package(self, package: str) -> None:
        if package in self._loaded:
            return
        f = self.root / package / BUILD_FILE
        if package and f.is_file():
            self._load_file(f, package)
        else:
            self._loaded.add(package)
            self.build_files[package] = None

    def build_file_digest(self, package: str) -> str | None:
        """sha256 of *package*'s BUILD file as it is now (None: there is none)."""
        try:
            return hashlib.sha256((self.root / package / BUILD_FILE).read_text().encode()).hexdigest()
        except (OSError, UnicodeDecodeError):
            return None

    def get(self, label: Label) -> TargetDecl | None:
        self.load_package(label.package)
        return self.targets.get(label)

    def all_packages(self) -> list[str]:
        """Every package with a BUILD file (for query and did-you-mean)."""
        skip = {".git", "hermetic-out", "node_modules", "__pycache__", ".venv", "venv"}
        found = []
        for f in self.root.rglob(BUILD_FILE):
            rel = f.parent.relative_to(self.root)
            if any(p in skip or p.startswith(".") for p in rel.parts):
                continue
            found.append(str(rel) if str(rel) != "." else "")
        return sorted(found)

    def forget_targets(self) -> None:
        """Drop every parsed declaration but the workspace's settings (after
        analysis, on a large graph: they are half of its memory); a later
        lookup parses its package again."""
        self.targets.clear()
        self._loaded.clear()

    def load_all(self) -> None:
        for p in self.all_packages():
            self.load_package(p)

    def missing(self, label: Label, where: Location) -> BuildFileError:
        self.load_all()
        hint = did_you_mean(str(label), [str(t) for t in self.targets])
        return BuildFileError(f"unknown dependency \"{label}\"", hint=hint, where=where,
                              reason="missing-dependency")

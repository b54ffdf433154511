"""``hermetic verify``: rebuild every action of a target's closure without the
cache and compare its outputs with the first build's.

The first build is an ordinary build (cache allowed). Each action is then
rebuilt from the *first build's* inputs, so a difference is pinned on the one
action that made it instead of spreading to everything downstream. Two modes:

- vary (default): the rebuild changes what an action could observe (build
  root, uid/gid, umask, locale, timezone, hostname, wall clock, directory
  order, job count), like reprotest; it proves the outputs depend on none.
- against-cache: the rebuild runs under the normal conditions and the
  reference is what the cache holds, like ``guix challenge``; it catches a
  builder (or a cache) that produced different bytes.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from hermetic import _diff
from hermetic._cache import Store
from hermetic._execution import Executor
from hermetic._keys import Entry
from hermetic.errors import CacheError, HermeticError
from hermetic.events import Report, VerifyFinished, VerifyStarted
from hermetic.model import Action
from hermetic.sandbox import VARIED, Sandbox, Variation, can_shuffle_dirs, faketime_environment


#: the same conditions in an ordinary build
NORMAL = {"root": "/hermetic", "umask": "022", "timezone": "UTC", "locale": "C", "hostname": "hermetic",
          "clock_offset": "real time", "shuffle_dirs": "file system order"}
_ENGINE = {"umask", "timezone", "locale", "jobs"}


def conditions(variation: Variation, sandbox: Sandbox, disabled: Sequence[str] = ()) -> tuple[
        dict[str, str], dict[str, str]]:
    """Which variations apply here (name -> shown value) and which do not
    (name -> why not)."""
    applied: dict[str, str] = {}
    skipped: dict[str, str] = {}
    shown = {"umask": f"{variation.umask:03o}", "clock_offset": variation.clock_offset,
             "shuffle_dirs": "shuffled (disorderfs)"}
    varies = getattr(sandbox, "varies", frozenset())
    for name in VARIED:
        value = shown.get(name, str(getattr(variation, name)))
        if name in disabled:
            skipped[name] = "disabled (--no-vary)"
        elif name == "shuffle_dirs":
            why = can_shuffle_dirs()
            if why:
                skipped[name] = why
            else:
                applied[name] = value
        elif name in _ENGINE:
            applied[name] = value
        elif name not in varies:
            skipped[name] = f"the {sandbox.name!r} sandbox cannot change it"
        elif name == "clock_offset" and not faketime_environment(variation.clock_offset):
            skipped[name] = "libfaketime is not installed (apt-get install libfaketime); the rebuild only " \
                            "runs later in real time"
        else:
            applied[name] = value
    return applied, skipped


def variation_for(jobs: int, disabled: Sequence[str] = ()) -> Variation:
    """The default variation, with *disabled* fields set back to normal."""
    v = Variation(jobs=jobs + 1)
    normal: dict[str, Any] = {"root": "/hermetic", "uid": 0, "gid": 0, "umask": 0o022, "timezone": "UTC",
                              "locale": "C", "hostname": "hermetic", "clock_offset": "+0", "jobs": jobs,
                              "shuffle_dirs": False}
    return attrs.evolve(v, **{k: normal[k] for k in disabled if k in normal})


@attrs.define
class Verdict:
    action: Action
    key: str
    status: str  # reproducible | differs | failed | pinned | not-cached
    reference: str  # "cache" or "built" (where the first build's outputs came from)
    outputs: list[dict[str, Any]] = attrs.field(factory=list)
    seconds: float = 0.0
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action.id, "mnemonic": self.action.mnemonic, "owner": str(self.action.owner),
                "kind": self.action.kind, "key": self.key, "status": self.status, "reference": self.reference,
                "outputs": self.outputs, "seconds": round(self.seconds, 3), "error": self.error}


@attrs.define
class VerifyReport:
    mode: str
    targets: list[str]
    applied: dict[str, str]
    skipped: dict[str, str]
    verdicts: list[Verdict]
    first_difference: dict[str, Any] | None = None
    #: with --sign: the remote's results this builder countersigned, by outcome
    #: (signed, already, differs, missing); None without --sign
    countersigned: dict[str, int] | None = None

    @property
    def reproducible(self) -> bool:
        return all(v.status in ("reproducible", "pinned", "not-cached") for v in self.verdicts)

    def to_json(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for v in self.verdicts:
            counts[v.status] = counts.get(v.status, 0) + 1
        return {"mode": self.mode, "targets": self.targets, "reproducible": self.reproducible,
                "varied": self.applied, "not_varied": self.skipped, "counts": counts,
                "actions": [v.to_json() for v in self.verdicts], "first_difference": self.first_difference,
                "countersigned": self.countersigned}


class Verifier:
    """Rebuilds *order* with the inputs the reference executor recorded."""

    def __init__(self, *, reference: Executor, rebuild: Executor, store: Store, ran: set[str],
                 report: Report, diff_tool: str = "auto") -> None:
        self.ref = reference
        self.rebuild = rebuild
        self.store = store
        self.ran = ran  # actions the reference build executed (not served by the cache)
        self.report = report
        self.diff_tool = diff_tool
        self._rebuilt: dict[str, dict[str, Entry]] = {}

    def run(self, order: Sequence[Action], *, against_cache: bool) -> list[Verdict]:
        verdicts = []
        for i, action in enumerate(order, 1):
            key = self.ref.keys.get(action.id, "")
            origin = "built" if action.id in self.ran else "cache"
            ref_out = {o.path: self.ref.entries[o.path] for o in action.outputs}
            if action.kind == "fetch":
                v = Verdict(action, key, "pinned", origin,
                            [_out(p, e, e) for p, e in ref_out.items()],
                            error="downloads are checked against their pinned sha256; not fetched again")
            elif against_cache and origin == "built":
                v = Verdict(action, key, "not-cached", origin,
                            error="the cache had no result for this action: the first build made it here")
            else:
                self.report(VerifyStarted(action, i, len(order)))
                t0 = time.monotonic()
                try:
                    new = self.rebuild.rebuild(action)
                except CacheError:
                    raise  # the store lost an input: not the action's fault, and not a verdict
                except HermeticError as exc:
                    v = Verdict(action, key, "failed", origin, seconds=time.monotonic() - t0,
                                error=_one_line(exc))
                else:
                    outs = [_out(p, ref_out[p], new.get(p)) for p in ref_out]
                    same = all(o["same"] for o in outs)
                    v = Verdict(action, key, "reproducible" if same else "differs", origin, outs,
                                time.monotonic() - t0)
                    if not same:
                        self._rebuilt[action.id] = new
            verdicts.append(v)
            self.report(VerifyFinished(v, i, len(order)))
        return verdicts

    # -- explaining the first difference -----------------------------------

    def explain(self, verdict: Verdict) -> dict[str, Any]:
        """Which output files differ and how."""
        new = self._rebuilt[verdict.action.id]
        files: list[dict[str, Any]] = []
        pairs: list[tuple[str, Entry, Entry]] = []
        for out in verdict.outputs:
            if out["same"]:
                continue
            path = out["path"]
            a, b = self.ref.entries[path], new[path]
            if a.tree and b.tree:
                ma, mb = self.store.tree_manifest(a.digest), self.store.tree_manifest(b.digest)
                fa = {f[0]: f for f in ma["files"]}
                fb = {f[0]: f for f in mb["files"]}
                for rel in sorted(fa.keys() | fb.keys()):
                    x, y = fa.get(rel), fb.get(rel)
                    if x == y:
                        continue
                    entry = {"path": f"{path}/{rel}", "reference": x[1] if x else None,
                             "rebuilt": y[1] if y else None}
                    if x and y and x[1] == y[1]:
                        entry["change"] = "executable bit"
                    elif x and y:
                        pairs.append((f"{path}/{rel}", Entry(x[1], x[2]), Entry(y[1], y[2])))
                        entry["change"] = "contents"
                    else:
                        entry["change"] = "only in reference" if x else "only in rebuilt"
                    files.append(entry)
                for kind in ("dirs", "links"):
                    if ma[kind] != mb[kind]:
                        files.append({"path": path, "change": f"{kind} differ"})
            else:
                change = "contents" if a.hash != b.hash else "executable bit"
                files.append({"path": path, "reference": a.hash, "rebuilt": b.hash, "change": change})
                if a.hash != b.hash and not a.tree and not b.tree:
                    pairs.append((path, a, b))
        tool = "builtin"
        lines: list[str] = []
        use_diffoscope = self.diff_tool == "diffoscope" or (self.diff_tool == "auto" and
                                                           _diff.diffoscope_available())
        if use_diffoscope and not _diff.diffoscope_available():
            lines.append("diffoscope is not installed (pip install diffoscope, or apt-get install diffoscope); "
                         "our own summary follows")
            use_diffoscope = False
        for path, a, b in pairs[:10]:
            if use_diffoscope:
                tool = "diffoscope"
                lines.extend(self._diffoscope(path, a, b))
            else:
                lines.extend(_diff.describe(path, self.store.blob_path(a.hash).read_bytes(),
                                            self.store.blob_path(b.hash).read_bytes()))
        if len(pairs) > 10:
            lines.append(f"... and {len(pairs) - 10} more differing files")
        return {"action": verdict.action.id, "files": files, "tool": tool, "diff": "\n".join(lines)}

    def _diffoscope(self, path: str, a: Entry, b: Entry) -> list[str]:
        name = path.rsplit("/", 1)[-1]
        with tempfile.TemporaryDirectory(prefix="hermetic-verify.") as tmp:
            ra, rb = Path(tmp, "reference", name), Path(tmp, "rebuilt", name)
            for src, dst in ((a, ra), (b, rb)):
                dst.parent.mkdir()
                dst.write_bytes(self.store.blob_path(src.hash).read_bytes())
            return [f"{path}:", *("  " + line for line in _diff.run_diffoscope(ra, rb).splitlines())]


def _out(path: str, ref: Entry, new: Entry | None) -> dict[str, Any]:
    return {"path": path, "reference": ref.hash, "rebuilt": new.hash if new else None,
            "same": new is not None and new.hash == ref.hash and new.executable == ref.executable}


def _one_line(exc: HermeticError) -> str:
    text = str(exc)
    tail = getattr(exc, "output_tail", "") or ""
    return text + ("\n" + tail if tail else "")

"""Action keys: the canonical encoding of everything that can change an
action's outputs, and :class:`Entry`, what an artifact turned out to be."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from hermetic.model import Action, Digest, sha256_json

#: bump when the encoding below changes (every key changes with it)
KEY_SCHEMA = 1


@attrs.frozen
class Entry:
    """What an artifact turned out to be: a file blob or a tree manifest."""

    hash: str
    size: int
    tree: bool = False
    executable: bool = False

    @property
    def digest(self) -> Digest:
        return Digest(self.hash, self.size)

    def to_json(self) -> dict[str, Any]:
        return {"hash": self.hash, "size": self.size, "tree": self.tree, "x": self.executable}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Entry:
        return cls(d["hash"], d["size"], bool(d.get("tree")), bool(d.get("x")))


@attrs.frozen
class ActionResult:
    """What the action cache holds for a key: every output's entry, the
    log's digest, and who made it (for people; not part of the contract)."""

    outputs: Mapping[str, Entry]
    log: Digest | None = None
    mnemonic: str = ""
    owner: str = ""
    remote: bool = False  # adopted from a remote cache, not made here

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"outputs": {p: e.to_json() for p, e in self.outputs.items()},
                               "log": {"hash": self.log.hash, "size": self.log.size} if self.log else None,
                               "mnemonic": self.mnemonic, "owner": self.owner}
        if self.remote:
            out["remote"] = True
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ActionResult:
        """Raises KeyError, TypeError or AttributeError when *d* is malformed."""
        log = d.get("log")
        return cls({p: Entry.from_json(e) for p, e in d["outputs"].items()},
                   Digest(log["hash"], log["size"]) if log else None, str(d.get("mnemonic", "")),
                   str(d.get("owner", "")), bool(d.get("remote")))


def input_root_digest(inputs: Mapping[str, Entry]) -> str:
    """Merkle digest of an action's inputs: each file by content, each tree by
    its manifest's digest (itself a digest over its files)."""
    return sha256_json(sorted([p, e.hash, e.size, e.tree, e.executable] for p, e in inputs.items()))


def action_key(action: Action, inputs: Mapping[str, Entry], sandbox_profile: dict[str, Any] | None,
               source_date_epoch: int | None) -> tuple[str, dict[str, Any]]:
    """The sha256 that identifies *action*'s result, and what it was made of.

    Everything that can change the outputs is in it; nothing else is (not the
    mnemonic, the job count or where the workspace lives)."""
    material: dict[str, Any] = {
        "schema": KEY_SCHEMA,
        "kind": action.kind,
        "params": action.params,
        "inputs": input_root_digest(inputs),
        "outputs": sorted([o.path, o.is_tree] for o in action.outputs),
    }
    if action.kind == "run":
        material["toolchains"] = sorted(t.fingerprint for t in action.toolchains)
        material["platform"] = str(action.platform) if action.platform else None
        material["sandbox"] = sandbox_profile
        material["source_date_epoch"] = source_date_epoch
    return sha256_json(material), material

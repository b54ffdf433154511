"""The answers of ``aquery`` and ``why`` as frozen values (the CLI renders
them as text, ``--json`` as their ``to_json()``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


@attrs.frozen
class InputDigest:
    path: str
    hash: str | None = None  # None: made by an action not built yet
    size: int | None = None
    tree: bool = False
    executable: bool = False

    def to_json(self) -> dict[str, Any]:
        if self.hash is None:
            return {"path": self.path}
        return {"path": self.path, "hash": self.hash, "size": self.size, "tree": self.tree, "x": self.executable}


@attrs.frozen
class ToolchainIdentity:
    kind: str
    fingerprint: str
    identity: Mapping[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "fingerprint": self.fingerprint, "identity": dict(self.identity)}


@attrs.frozen
class PlannedAction:
    """One action as the next build would see it."""

    id: str
    describe: str
    mnemonic: str
    kind: str
    owner: str
    config: str
    key: str | None  # None until the outputs it reads are built
    status: str  # cached | would-run
    waits_for: tuple[str, ...]
    inputs: tuple[InputDigest, ...]
    outputs: tuple[str, ...]
    params: Mapping[str, Any]
    command: str = ""  # run actions: the command line ($IN, $OUT, $WORK for the sandbox's directories)
    env: Mapping[str, str] = attrs.field(factory=dict)
    toolchains: tuple[ToolchainIdentity, ...] = ()
    platform: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "describe": self.describe, "mnemonic": self.mnemonic, "kind": self.kind,
            "owner": self.owner, "config": self.config, "key": self.key, "status": self.status,
            "waits_for": list(self.waits_for), "inputs": [i.to_json() for i in self.inputs],
            "outputs": list(self.outputs), "params": dict(self.params)}
        if self.kind == "run":
            out.update(command=self.command, env=dict(self.env), platform=self.platform,
                       toolchains=[t.to_json() for t in self.toolchains])
        return out


@attrs.frozen
class ActionWhy:
    """Why one action ran (or not) in its last build."""

    id: str
    action: str
    mnemonic: str
    owner: str
    outcome: str  # executed | cached | remote | failed | never-built
    key: str | None = None
    time: float | None = None
    seconds: float | None = None
    reasons: tuple[Mapping[str, Any], ...] = ()
    edited_since: tuple[Mapping[str, Any], ...] = ()
    #: cache | remote-cache | local | remote:<worker> (None: recorded before hermetic said)
    where: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "action": self.action, "mnemonic": self.mnemonic, "owner": self.owner,
                               "outcome": self.outcome}
        if self.outcome != "never-built":
            out.update(key=self.key, time=self.time, seconds=self.seconds, reasons=list(self.reasons),
                       edited_since=list(self.edited_since), where=self.where)
        return out


@attrs.frozen
class WhyReport:
    targets: tuple[str, ...]
    actions: tuple[ActionWhy, ...]

    def to_json(self) -> dict[str, Any]:
        return {"targets": list(self.targets), "actions": [a.to_json() for a in self.actions]}

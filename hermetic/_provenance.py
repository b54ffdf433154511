"""What a wheel's users get beside it: where it came from and how it can be
installed safely.

For every wheel a build delivers, three files beside its ``dist/``:

- ``<wheel>.provenance.json``: an in-toto Statement (v1) with a SLSA
  Provenance v1 predicate. Subject: the wheel's sha256. Build definition:
  the targets and platform asked for; every fetched source and pinned wheel
  (sha256, canonical URL, mirrors, the OpenPGP key fingerprint its signature
  was checked against); every workspace source file read; every toolchain's
  identity; the sandbox profile and SOURCE_DATE_EPOCH; the key of the action
  that made the wheel and a digest over every (action, key) of its graph.
- ``<wheel>.cdx.json``: a CycloneDX 1.6 SBOM: the wheel, the sources it was
  built from (required) and the build tools (excluded from the runtime).
- ``requirements.txt``: ``name==version --hash=sha256:...`` for
  ``pip install --require-hashes``.

Nothing in them depends on when or where the build ran, so they are as
reproducible as the wheel.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name, parse_wheel_filename

from hermetic.errors import HermeticError
from hermetic.model import Action, sha256_json

BUILD_TYPE = "urn:hermetic:build-type:action-graph:v1"
_ARCHIVE_VERSION = re.compile(r"^(?P<name>.+?)-(?P<version>\d[\w.+]*?)(?:\.tar\.\w+|\.tgz|\.zip|\.tar)$",
                              re.IGNORECASE)


def _version() -> str:
    # the package's own constant: importlib.metadata scans every installed
    # distribution (~2.5 ms, twice per delivered wheel, on every no-op build)
    from hermetic import __version__

    return __version__


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _fetched(action: Action) -> dict[str, Any]:
    """A fetch action as a resolved dependency."""
    p = action.params
    dep: dict[str, Any] = {"name": p["name"], "digest": {"sha256": p["sha256"]}}
    urls = [u for u in p.get("urls") or [] if "://" in u]
    if urls:
        dep["uri"] = urls[0]
    elif p["name"].endswith(".whl"):  # fetched through pip's configured index
        dist, version, _, _ = parse_wheel_filename(p["name"])
        dep["uri"] = f"pkg:pypi/{canonicalize_name(dist)}@{version}?file_name={p['name']}"
    notes: dict[str, Any] = {"fetched_by": action.describe()}
    if p.get("mirrors"):
        notes["mirrors"] = p["mirrors"]
    sig = p.get("signature")
    if sig:
        notes["signature"] = {"kind": sig.get("kind"), "sha256": sig.get("sha256"),
                              "key_fingerprint": sig.get("fingerprint"), "checked": "before the bytes were stored"}
    dep["annotations"] = notes
    return dep


def statement(wheel: Path, *, targets: Sequence[str], platform: str, closure: Sequence[Action],
              keys: Mapping[str, str], root: Action, sources: Mapping[str, str], sandbox: Any,
              source_date_epoch: int) -> dict[str, Any]:
    """The in-toto Statement with a SLSA v1 provenance predicate."""
    deps: list[dict[str, Any]] = []
    for a in closure:
        if a.kind == "fetch":
            deps.append(_fetched(a))
    for path, digest in sorted(sources.items()):
        deps.append({"name": path.removeprefix("src/"), "digest": {"sha256": digest},
                     "annotations": {"kind": "workspace source file"}})
    toolchains: dict[str, Any] = {}
    for a in closure:
        for t in a.toolchains:
            toolchains[t.fingerprint] = {"name": f"toolchain:{t.kind}", "digest": {"sha256": t.fingerprint},
                                         "annotations": {"identity": t.identity, "hermetic": t.hermetic}}
    deps += sorted(toolchains.values(), key=lambda d: (d["name"], d["digest"]["sha256"]))
    graph = sorted([a.id, keys.get(a.id)] for a in closure)
    # actions that built against the host on purpose (pep517_wheel's system_libraries) say so in their env
    impure = {a.id: a.params["env"]["HERMETIC_NON_HERMETIC"] for a in closure
              if a.kind == "run" and "HERMETIC_NON_HERMETIC" in (a.params.get("env") or {})}
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": wheel.name, "digest": {"sha256": _file_sha256(wheel)}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"targets": list(targets), "platform": platform},
                "internalParameters": {
                    "root_action": root.id, "root_key": keys.get(root.id),
                    "action_graph_digest": sha256_json(graph), "actions": len(graph),
                    "sandbox": sandbox, "source_date_epoch": source_date_epoch,
                    **({"non_hermetic": impure} if impure else {}),
                },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": f"urn:hermetic:builder:{(sandbox or {}).get('name', 'unknown')}",
                            "version": {"hermetic": _version()}},
                "metadata": {"invocationId": keys.get(root.id)},
            },
        },
    }


def _component(dep: Mapping[str, Any], scope: str) -> dict[str, Any]:
    name = dep["name"]
    comp: dict[str, Any] = {"type": "library", "scope": scope,
                            "hashes": [{"alg": "SHA-256", "content": dep["digest"]["sha256"]}]}
    if name.endswith(".whl"):
        dist, version, _, _ = parse_wheel_filename(name)
        comp.update(name=str(dist), version=str(version), purl=f"pkg:pypi/{dist}@{version}")
    else:
        m = _ARCHIVE_VERSION.match(name)
        base, version = (m.group("name"), m.group("version")) if m else (name, "")
        comp.update(name=base.lower(), version=version)
        comp["purl"] = f"pkg:generic/{base.lower()}@{version}" if version else f"pkg:generic/{base.lower()}"
    comp["bom-ref"] = f"{comp['purl']}#{dep['digest']['sha256'][:16]}"
    if dep.get("uri"):
        comp["externalReferences"] = [{"type": "distribution", "url": dep["uri"]}]
    props = [{"name": "hermetic:file", "value": name}]
    sig = (dep.get("annotations") or {}).get("signature")
    if sig:
        props.append({"name": "hermetic:openpgp-key-fingerprint", "value": str(sig["key_fingerprint"])})
    comp["properties"] = props
    return comp


def sbom(wheel: Path, stmt: Mapping[str, Any], source_date_epoch: int) -> dict[str, Any]:
    """A CycloneDX 1.6 document for *wheel*, from its provenance."""
    dist, version, _, _ = parse_wheel_filename(wheel.name)
    digest = stmt["subject"][0]["digest"]["sha256"]
    main_ref = f"pkg:pypi/{dist}@{version}"
    comps = []
    for dep in stmt["predicate"]["buildDefinition"]["resolvedDependencies"]:
        if "fetched_by" not in (dep.get("annotations") or {}):
            continue  # workspace files and toolchains: in the provenance
        tool = dep["name"].endswith(".whl")  # build requirements, not in the wheel
        comps.append(_component(dep, "excluded" if tool else "required"))
    comps.sort(key=lambda c: c["bom-ref"])
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'sha256:' + digest)}", "version": 1,
        "metadata": {
            "timestamp": datetime.fromtimestamp(source_date_epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "hermetic", "version": _version()}]},
            "component": {"type": "library", "bom-ref": main_ref, "name": str(dist), "version": str(version),
                          "purl": main_ref, "hashes": [{"alg": "SHA-256", "content": digest}]},
        },
        "components": comps,
        "dependencies": [{"ref": main_ref, "dependsOn": [c["bom-ref"] for c in comps if c["scope"] == "required"]}],
    }


def requirement_line(wheel: Path, digest: str) -> str:
    dist, version, _, _ = parse_wheel_filename(wheel.name)
    return f"{canonicalize_name(dist)}=={version} --hash=sha256:{digest}\n"


#: DSSE's payload type for an in-toto statement
PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a signature covers."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def envelope(stmt: Mapping[str, Any], secret: Any) -> dict[str, Any]:
    """The statement as a DSSE envelope signed by *secret* (an ed25519
    :class:`hermetic._signing.SecretKey`; keyid: its name)."""
    payload = (json.dumps(stmt, indent=2, sort_keys=True) + "\n").encode()
    return {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": secret.name, "sig": secret.sign(pae(PAYLOAD_TYPE, payload))}]}


class ProvenanceError(HermeticError):
    pass


def open_envelope(env: Mapping[str, Any], trusted: Sequence[Any], where: str) -> tuple[dict[str, Any], str]:
    """(the statement, the trusted key that signed it), or ProvenanceError."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if env.get("payloadType") != PAYLOAD_TYPE or not isinstance(env.get("payload"), str):
        raise ProvenanceError(f"{where} is not a DSSE envelope of an in-toto statement", reason="usage")
    payload = base64.b64decode(env["payload"])
    signers = [str(s.get("keyid", "")) for s in env.get("signatures") or []]
    by_name = {k.name: k for k in trusted}
    for s in env.get("signatures") or []:
        key = by_name.get(str(s.get("keyid", "")))
        if key is None:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(key.raw).verify(base64.b64decode(str(s.get("sig", ""))),
                                                               pae(PAYLOAD_TYPE, payload))
        except (InvalidSignature, ValueError):
            raise ProvenanceError(f"{where}: the signature by {key.name} does not verify: the statement was "
                                  "changed after it was signed, or another key of that name signed it",
                                  reason="untrusted-provenance") from None
        return json.loads(payload), key.name
    raise ProvenanceError(f"{where} is signed by {', '.join(signers) or 'nobody'}, none of them a trusted key "
                          f"({', '.join(sorted(by_name)) or 'none given'})", reason="untrusted-provenance",
                          hint="pass the signer's public key with --trusted-key NAME:KEY if you trust it")


def check(stmt: Mapping[str, Any], wheel: Path, pins: Mapping[str, str]) -> list[str]:
    """What is wrong with *stmt* as the provenance of *wheel* built from
    *pins* (fetched file name -> sha256: what the workspace's BUILD files pin
    for the statement's targets), first difference first; [] if nothing."""
    subject = (stmt.get("subject") or [{}])[0]
    got = _file_sha256(wheel)
    problems = []
    if subject.get("name") != wheel.name or (subject.get("digest") or {}).get("sha256") != got:
        problems.append(f"the statement is about {subject.get('name')} sha256 "
                        f"{(subject.get('digest') or {}).get('sha256')}, the wheel is {wheel.name} sha256 {got}")
    deps = stmt.get("predicate", {}).get("buildDefinition", {}).get("resolvedDependencies", [])
    fetched = {d["name"]: d["digest"]["sha256"] for d in deps if "fetched_by" in (d.get("annotations") or {})}
    for name in sorted(set(fetched) | set(pins)):
        if name not in pins:
            problems.append(f"material {name} (sha256 {fetched[name]}) is pinned nowhere in this workspace")
        elif name not in fetched:
            problems.append(f"the workspace pins {name} (sha256 {pins[name]}), the statement does not name it")
        elif fetched[name] != pins[name]:
            problems.append(f"material {name}: the statement says sha256 {fetched[name]}, the workspace pins "
                            f"{pins[name]}")
    return problems


def write(wheel: Path, dest_dir: Path, signing_key: Any = None, **kw: Any) -> list[Path]:
    """Write the documents for *wheel* into *dest_dir* (atomically): the
    statement, and with *signing_key* also as a signed DSSE envelope."""
    stmt = statement(wheel, **kw)
    digest = stmt["subject"][0]["digest"]["sha256"]
    docs = {
        f"{wheel.name}.provenance.json": json.dumps(stmt, indent=2, sort_keys=True) + "\n",
        f"{wheel.name}.cdx.json": json.dumps(sbom(wheel, stmt, kw["source_date_epoch"]), indent=2) + "\n",
        "requirements.txt": requirement_line(wheel, digest),
    }
    if signing_key is not None:
        docs[f"{wheel.name}.provenance.dsse.json"] = json.dumps(envelope(stmt, signing_key), indent=2) + "\n"
    out = []
    for name, text in docs.items():
        path = dest_dir / name
        out.append(path)
        with contextlib.suppress(OSError):
            if path.read_text() == text:  # a no-op build leaves what is there
                continue
        tmp = dest_dir / f".{name}.hermetic-tmp"
        tmp.write_text(text)
        os.replace(tmp, path)
    return out

"""``hermetic report`` and ``build --report DIR``: one static HTML page per
build (no server, no network: the styles are inline, the timeline is an
inline SVG, every fact is in the HTML itself, readable without JavaScript).

The facts come from what hermetic already records: the build's events (or an
``--event-log`` file), its profile when there is one (the timeline per
slot), ``aquery`` (command lines, environments, inputs with digests,
toolchains, keys), ``why`` (what each action ran for, from the store's
history), the actions' output from the store, the outputs delivered (sha256,
the ``--require-hashes`` line, the provenance and SBOM beside each wheel),
the test reports, and ``verify``'s verdicts.

Nothing secret goes on the page: an action's environment is the one its key
holds (the sandbox clears the rest), remote settings are not shown at all."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hermetic import _profile

if TYPE_CHECKING:
    from hermetic._session import Session
    from hermetic.model import Label

#: an action's output shown on the page (the rest: `hermetic log`)
LOG_LIMIT = 20_000


def timeline_from_events(events: Sequence[Mapping[str, Any]]) -> _profile.Profile:
    """A profile drawn from an event log: each action from its start (or its
    finish minus its seconds) to its finish, packed onto as few rows as never
    overlap (the slots it could have run on)."""
    t0 = min((e["time"] for e in events if "time" in e), default=0.0)
    started = {e["action"]: e["time"] for e in events if e.get("event") == "action-started" and "time" in e}
    spans = []
    for e in events:
        if e.get("event") != "action-finished" or "time" not in e:
            continue
        end = e["time"] - t0
        start = started.get(e["action"], e["time"] - float(e.get("seconds") or 0.0)) - t0
        spans.append((max(0.0, start), max(end, start), e))
    rows_end: list[float] = []
    trace = []
    for start, end, e in sorted(spans, key=lambda s: (s[0], s[1])):
        row = next((i for i, t in enumerate(rows_end) if t <= start + 1e-6), None)
        if row is None:
            rows_end.append(end)
            row = len(rows_end) - 1
        rows_end[row] = end
        outcome = {"cached": "cache", "remote": "remote-cache"}.get(e.get("status", ""), e.get("status", ""))
        trace.append({"name": e["action"], "cat": "action", "ph": "X", "tid": row + 1, "ts": int(start * 1e6),
                      "dur": max(1, int((end - start) * 1e6)),
                      "args": {"id": e["action"], "mnemonic": e.get("mnemonic", ""), "outcome": outcome,
                               "describe": e["action"], "deps": []}})
    return _profile.Profile({"traceEvents": trace})


def collect(s: Session, labels: Sequence[Label], *, command: str, status: str, wall: float,
            events: Sequence[Mapping[str, Any]], profile: _profile.Profile | None = None,
            outputs: Mapping[Label, Sequence[Path]] | None = None, verify: Any = None) -> dict[str, Any]:
    """Everything the page shows, as JSON-able data (written beside it as report.json)."""
    from hermetic._history import describe

    planned = {p.id: p for p in s.aquery(labels)}
    why = {a.id: a for a in s.why(labels).actions}
    logs = {a.id: log for a, _entry, log in s.logs(labels, closure=True)}
    finished = {e["action"]: e for e in events if e.get("event") == "action-finished"}
    reasons = {e["action"]: e.get("reasons", []) for e in events if e.get("event") == "action-started"}
    prof = profile if profile is not None and profile.actions else timeline_from_events(events)
    span = {a.args.get("id"): a for a in prof.actions}
    actions = []
    for i, (aid, p) in enumerate(planned.items()):
        ev = finished.get(aid, {})
        w = why.get(aid)
        # the build's own events say what happened; without them (--last), the store's history
        outcome = ev.get("status", "not run") if events else (w.outcome if w else "not run")
        rs = reasons.get(aid) or (list(w.reasons) if w and outcome in ("executed", "failed") else [])
        log = logs.get(aid)
        sp = span.get(aid)
        actions.append({
            "n": i, "id": aid, "describe": p.describe, "mnemonic": p.mnemonic, "kind": p.kind,
            "outcome": outcome, "where": ev.get("where") or (w.where if w else None),
            "seconds": ev.get("seconds", w.seconds if w else None), "key": ev.get("key") or p.key,
            "why": [describe(r) for r in rs],
            "because": [describe(c) for r in rs for c in (r.get("because") or [])],
            "command": p.command, "env": dict(p.env), "platform": p.platform,
            "inputs": [i.to_json() for i in p.inputs], "outputs": list(p.outputs),
            "toolchains": [t.to_json() for t in p.toolchains],
            "error": ev.get("error", ""),
            "log": _text(log), "log_truncated": bool(log and len(log) > LOG_LIMIT),
            "phases": [{"name": ph.name, "seconds": round(ph.seconds, 3)} for ph in prof.phases_of(sp)] if sp else [],
        })
    counts = {"actions": len(actions)}
    for a in actions:
        counts[a["outcome"]] = counts.get(a["outcome"], 0) + 1
    critical = [{"id": c.args.get("id"), "describe": c.args.get("describe", c.name), "seconds": round(c.seconds, 3),
                 "outcome": c.args.get("outcome", "")} for c in prof.critical_path()]
    data: dict[str, Any] = {
        "title": f"hermetic: {' '.join(str(t) for t in labels)}", "command": command, "status": status,
        "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "wall": round(wall, 2),
        "targets": [str(t) for t in labels], "counts": counts, "critical_path": critical,
        "actions": actions, "outputs": [], "requirements": [], "provenance": [], "sbom": [], "tests": [],
        "verify": verify.to_json() if verify is not None else None,
        "timeline_svg": _profile.svg_report(prof, width=1100, links={a["id"]: f"#a{a['n']}" for a in actions}),
    }
    for label, paths in (outputs or {}).items():
        for path in paths:
            files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
            for f in files:
                _output(data, str(label), f, s.output_dir)
    return data


def _text(log: bytes | None) -> str:
    if not log:
        return ""
    text = log.decode(errors="replace")
    return text if len(text) <= LOG_LIMIT else "...\n" + text[-LOG_LIMIT:]


def _output(data: dict[str, Any], label: str, f: Path, base: Path) -> None:
    import hashlib

    if not f.is_file():
        return
    h = hashlib.sha256(f.read_bytes()).hexdigest()
    rel = str(f.relative_to(base)) if f.is_relative_to(base) else str(f)
    data["outputs"].append({"label": label, "path": rel, "sha256": h, "size": f.stat().st_size})
    name = f.name
    try:
        if name == "requirements.txt":
            data["requirements"] += [ln for ln in f.read_text().splitlines() if ln and not ln.startswith("#")]
        elif name.endswith((".provenance.json", ".intoto.json")):
            data["provenance"].append(_statement(json.loads(f.read_text()), rel))
        elif name.endswith(".dsse.json"):
            env = json.loads(f.read_text())
            import base64

            st = _statement(json.loads(base64.b64decode(env["payload"])), rel)
            st["signers"] = [sig.get("keyid", "") for sig in env.get("signatures", [])]
            data["provenance"].append(st)
        elif name.endswith(".cdx.json"):
            bom = json.loads(f.read_text())
            data["sbom"].append({"file": rel, "components": [
                {"name": c.get("name", ""), "version": c.get("version", ""), "purl": c.get("purl", ""),
                 "sha256": next((x.get("content", "") for x in c.get("hashes", []) if x.get("alg") == "SHA-256"),
                                "")} for c in bom.get("components", [])]})
        elif name == "test-report.txt":
            lines = f.read_text(errors="replace").splitlines()
            failed = [ln for ln in lines if " FAILED" in ln or " ERROR" in ln]
            data["tests"].append({"label": label, "file": rel, "summary": lines[-1] if lines else "",
                                  "failed": failed[:200], "lines": len(lines)})
    except (ValueError, KeyError, OSError) as exc:  # a file the page cannot read is named, not fatal
        data.setdefault("unreadable", []).append({"file": rel, "why": str(exc)[:200]})


def _statement(st: Mapping[str, Any], rel: str) -> dict[str, Any]:
    pred = st.get("predicate", {}) or {}
    build = pred.get("buildDefinition", {}) or {}
    run = pred.get("runDetails", {}) or {}
    return {"file": rel, "type": st.get("predicateType", ""),
            "subject": [{"name": x.get("name", ""), "sha256": (x.get("digest") or {}).get("sha256", "")}
                        for x in st.get("subject", [])],
            "builder": ((run.get("builder") or {}).get("id", "")),
            "materials": [{"uri": m.get("uri", m.get("name", "")),
                           "sha256": (m.get("digest") or {}).get("sha256", "")}
                          for m in build.get("resolvedDependencies", [])],
            "signers": []}


def render(data: Mapping[str, Any], out_dir: Path) -> Path:
    """Write ``index.html`` and ``report.json`` into *out_dir* (whole files,
    renamed into place); returns the page."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("hermetic", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["secs"] = lambda v: "" if v is None else f"{float(v):.2f}s"
    env.filters["short"] = lambda v: "" if not v else f"{v[:12]}…"
    page = env.get_template("report.html.j2").render(r=data, colours=_profile.COLOURS)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("report.json", json.dumps(data, indent=1, default=str)), ("index.html", page)):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out_dir / name)
    return out_dir / "index.html"

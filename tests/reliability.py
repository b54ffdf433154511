"""What the reliability suite tried, gathered across xdist workers into one
JSON-lines file and printed at the end of the run (conftest's
pytest_terminal_summary)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV = "HERMETIC_RELIABILITY_LOG"


def record(what: str, **counts: Any) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps({"what": what, **counts}) + "\n")


def summary(path: Path) -> list[str]:
    """One line per kind of attempt; numbers of the same kind are added up."""
    if not path.exists():
        return []
    merged: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        into = merged.setdefault(entry.pop("what"), {})
        for k, v in entry.items():
            into[k] = into.get(k, 0) + v if isinstance(v, int) and not isinstance(v, bool) else v
    return [f"{what}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())
            for what, counts in sorted(merged.items())]

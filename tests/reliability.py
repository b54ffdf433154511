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
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        what = entry.pop("what")
        lines.append(f"{what}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in entry.items()))
    return lines

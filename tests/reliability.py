"""What the reliability suite tried, gathered across xdist workers into one
JSON-lines file and printed at the end of the run (conftest's
pytest_terminal_summary).

Every figure is what a test saw, recorded before it asserts, so a failing
case shows in the summary as well as in pytest's result. To see that, make
one case fail on purpose:

    HERMETIC_RELIABILITY_SABOTAGE=hostile-archives .venv/bin/python -m pytest tests/test_archive.py

extracts the ``dotdot`` hostile archive with an unprotected extractor
instead of hermetic's (its test fails, and the summary says ``rejected``
one fewer and ``written outside 1``). Names: see :data:`CASES`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV = "HERMETIC_RELIABILITY_LOG"
SABOTAGE = "HERMETIC_RELIABILITY_SABOTAGE"
#: the cases that can be made to fail on purpose (comma-separated in $HERMETIC_RELIABILITY_SABOTAGE)
CASES = {"hostile-archives": "the dotdot archive is extracted without hermetic's checks",
         "corruption": "the rotten blob of the first corruption case is put back right before the rebuild"}


def sabotaged(case: str) -> bool:
    """Whether *case* is to fail on purpose in this run."""
    assert case in CASES, case
    return case in os.environ.get(SABOTAGE, "").split(",")


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

"""A pytest plugin (``-p pytest_report``) that writes the test report from
pytest's own results: the same reports, in the same categories, that its
summary line counts (``terminalreporter.stats``), so the report's totals are
pytest's, with or without xdist (whose workers' reports the controller
receives). Where the suite uses hypothesis, it runs derandomized, with no
example database, so a rerun asks the same examples.

The report path is ``$HERMETIC_PYTEST_REPORT``."""

from __future__ import annotations

import json
import os

#: the categories of pytest's summary line, in its order
CATEGORIES = ("failed", "passed", "skipped", "deselected", "xfailed", "xpassed", "error")


def pytest_configure(config):  # type: ignore[no-untyped-def]
    try:
        from hypothesis import settings
    except ImportError:
        return
    settings.register_profile("hermetic", derandomize=True, database=None, print_blob=False)
    settings.load_profile("hermetic")


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    if hasattr(config, "workerinput"):  # an xdist worker: the controller writes the report
        return
    path = os.environ.get("HERMETIC_PYTEST_REPORT")
    if not path:
        return
    stats = terminalreporter.stats
    results = []
    counts = {}
    failures = []
    for category in CATEGORIES:
        # what the summary line counts (pytest leaves out reports that do not count towards it)
        reports = [r for r in stats.get(category, []) if getattr(r, "count_towards_summary", True)]
        if category == "deselected":
            counts[category] = len(stats.get(category, []))
            continue
        counts[category] = len(reports)
        for r in reports:
            results.append([r.nodeid, category])
            if category in ("failed", "error"):
                failures.append({"nodeid": r.nodeid, "when": getattr(r, "when", ""),
                                 "text": str(getattr(r, "longreprtext", "") or r.longrepr)[-4000:]})
    data = {"exitstatus": int(exitstatus), "counts": {k: v for k, v in counts.items() if v},
            "results": sorted(results), "failures": failures}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)

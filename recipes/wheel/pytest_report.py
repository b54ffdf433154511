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

#: what pytest's summary line counts that is not a test outcome
NOT_OUTCOMES = ("warnings", "")


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
    # pytest's own summary line, as it prints it ("3 failed", "85970 passed", "20 subtests passed", ...),
    # without the warnings: the report's totals are these words
    parts, _color = terminalreporter.build_summary_stats_line()
    summary = [text for text, _markup in parts if text.split(" ", 1)[0].isdigit()
               and text.split(" ", 1)[1] not in ("warning", "warnings")]
    results = []
    failures = []
    for category, reports in stats.items():
        if category in NOT_OUTCOMES or category == "deselected":
            continue
        for r in reports:
            if not getattr(r, "count_towards_summary", True):  # what the summary line leaves out
                continue
            results.append([r.nodeid, category])
            if category in ("failed", "error"):
                failures.append({"nodeid": r.nodeid, "when": getattr(r, "when", ""),
                                 "text": str(getattr(r, "longreprtext", "") or r.longrepr)[-4000:]})
    data = {"exitstatus": int(exitstatus), "summary": summary, "results": sorted(results), "failures": failures}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)

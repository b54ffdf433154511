"""`hermetic build --report DIR`, `verify --report DIR`, `hermetic report`:
one static page per build, its facts checked against the build they
describe; the flagship's page rendered by headless Chromium."""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import build_counts, copy_workspace, hermetic_cli
from hermetic.testing import write_workspace

pytestmark = [pytest.mark.linux, pytest.mark.bwrap]

BUILD = """
[workspace]
source_date_epoch = 1767225600

["//:upper"]
rule = "genrule"
srcs = ["hello.txt"]
outs = ["upper.txt"]
cmd = "tr a-z A-Z < $SRCS > $OUT/upper.txt"

["//:broken"]
rule = "genrule"
srcs = [":upper"]
outs = ["never.txt"]
cmd = "echo 'compiling broken.c' >&2; echo 'broken.c:3:7: error: expected declaration' >&2; exit 3"

["//:stamped"]
rule = "genrule"
srcs = [":upper"]
outs = ["stamped.txt"]
cmd = "cat $SRCS > $OUT/stamped.txt; date +%Y >> $OUT/stamped.txt"
"""


def _workspace(tmp_path: Path) -> Path:
    return write_workspace(tmp_path / "ws", {"BUILD.toml": BUILD, "hello.txt": "hello\n"})


def _page(directory: Path) -> tuple[str, dict]:
    text = html.unescape(re.sub(r"<[^>]+>", " ", (directory / "index.html").read_text()))
    return " ".join(text.split()), json.loads((directory / "report.json").read_text())


def test_a_failed_builds_page_shows_the_failing_actions_output_and_why(tmp_path):
    ws = _workspace(tmp_path)
    env = {"HERMETIC_REPORT_TEST_TOKEN": "s3cr3t-t0ken"}
    import os

    proc = hermetic_cli("--cache-dir", str(tmp_path / "cache"), "build", "//:broken", "--report",
                        str(tmp_path / "page"), cwd=ws, check=False, env={**os.environ, **env})
    assert proc.returncode == 1, proc.stderr
    assert f"report: {tmp_path / 'page' / 'index.html'}" in proc.stderr
    text, data = _page(tmp_path / "page")
    assert data["status"] == "failed" and data["counts"]["failed"] == 1 and data["counts"]["executed"] == 1
    (failed,) = [a for a in data["actions"] if a["outcome"] == "failed"]
    assert failed["id"] == "//:broken#Genrule"
    assert "broken.c:3:7: error: expected declaration" in failed["log"]
    assert failed["why"] == ["never built before (no history for this action in the store)"]
    # on the page itself: the stderr (open, without JavaScript), why, and the command
    raw = (tmp_path / "page" / "index.html").read_text()
    assert re.search(r'<details open><summary>Output</summary><pre class="log">compiling broken.c', raw)
    assert "broken.c:3:7: error: expected declaration" in text and "never built before" in text
    assert "exit code 3" in text
    # nothing of the environment hermetic ran in that is not in an action's key
    assert "s3cr3t-t0ken" not in raw and "s3cr3t-t0ken" not in (tmp_path / "page" / "report.json").read_text()


def test_a_verify_page_names_the_first_diverging_action_and_the_difference(tmp_path):
    ws = _workspace(tmp_path)
    proc = hermetic_cli("--cache-dir", str(tmp_path / "cache"), "verify", "//:stamped", "--diff-tool", "builtin",
                        "--report", str(tmp_path / "page"), cwd=ws, check=False)
    assert proc.returncode == 5, proc.stderr
    text, data = _page(tmp_path / "page")
    assert data["status"] == "not reproducible"
    first = data["verify"]["first_difference"]
    assert first["action"] == "//:stamped#Genrule"
    assert "First diverging action: //:stamped#Genrule" in text
    year = re.search(r"^\s*-(\d{4})$", first["diff"], re.MULTILINE)
    assert year and f"-{year.group(1)}" in text  # the diff itself is on the page
    verdicts = {v["action"]: v["status"] for v in data["verify"]["actions"]}
    assert verdicts == {"//:upper#Genrule": "reproducible", "//:stamped#Genrule": "differs"}


def test_report_from_the_last_build_and_from_an_event_log(tmp_path):
    ws = _workspace(tmp_path)
    cache = str(tmp_path / "cache")
    hermetic_cli("--cache-dir", cache, "build", "//:upper", "--event-log", str(tmp_path / "events.jsonl"), cwd=ws)
    hermetic_cli("--cache-dir", cache, "report", "--event-log", str(tmp_path / "events.jsonl"), "-o",
                 str(tmp_path / "from-log"), cwd=ws)
    _, from_log = _page(tmp_path / "from-log")
    assert [(a["id"], a["outcome"]) for a in from_log["actions"]] == [("//:upper#Genrule", "executed")]
    assert from_log["outputs"][0]["sha256"] == hashlib.sha256(b"HELLO\n").hexdigest()
    hermetic_cli("--cache-dir", cache, "build", "//:upper", cwd=ws)  # now everything is cached
    hermetic_cli("--cache-dir", cache, "report", "--last", "-o", str(tmp_path / "last"), cwd=ws)
    _, last = _page(tmp_path / "last")
    assert [(a["id"], a["outcome"]) for a in last["actions"]] == [("//:upper#Genrule", "cached")]
    proc = hermetic_cli("--cache-dir", str(tmp_path / "empty"), "report", "--last", "-o", str(tmp_path / "x"),
                        cwd=ws, check=False)
    assert proc.returncode == 2 and "no build recorded" in proc.stderr and not (tmp_path / "x").exists()


@pytest.mark.integration
@pytest.mark.network
@pytest.mark.chromium
def test_the_flagships_page_in_chromium_says_what_the_build_did(tmp_path, warm_store):
    ws = copy_workspace(tmp_path / "ws")
    page = tmp_path / "page"
    proc = hermetic_cli("--cache-dir", str(warm_store), "build", "//wheel:linux-x86_64", "--report", str(page),
                        cwd=ws)
    actions, executed, cached, _ = build_counts(proc.stderr)
    (wheel,) = (ws / "hermetic-out").rglob("dist/*.whl")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    totals = re.search(r"test report: (.+)", proc.stderr).group(1)  # type: ignore[union-attr]
    chromium = shutil.which("chromium")
    assert chromium, "scripts/setup.sh installs Debian's chromium"
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
              "--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([*common, "--dump-dom", (page / "index.html").as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    shot = tmp_path / "report.png"
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1200,1500", (page / "index.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    # the facts Chromium rendered are the build's
    count = re.search(r'id="count-actions">(\d+)<', dom)
    assert count and int(count.group(1)) == actions
    cached_shown = re.search(r'id="count-cached">(\d+)<', dom)
    assert (int(cached_shown.group(1)) if cached_shown else 0) == cached and executed == 0
    assert sha in dom
    assert totals in html.unescape(dom)
    assert "cp39-abi3-manylinux_2_17_x86_64" in dom and "--hash=sha256:" + sha in dom
    assert "OpenSSLBuild //recipes/openssl:openssl" in dom and "openssl-3.5" in dom  # an action, a material

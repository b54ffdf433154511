"""What a sandboxed action cannot do: reach the network, see the user's home
or the workspace, write outside its outputs, outlive its action."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest
from reliability import record

from hermetic.model import Platform
from hermetic.sandbox import SandboxConfig, SandboxRequest, base_environment

pytestmark = [pytest.mark.linux]

PY_PREFIX = sys.base_prefix


@pytest.fixture
def sandbox():
    from plugins import linux

    return linux.hermetic_sandbox(linux._host(), SandboxConfig("auto"))


def run(sandbox, tmp_path: Path, script: str) -> tuple[int, str]:
    dirs = [tmp_path / n for n in ("in", "out", "work")]
    for d in dirs:
        d.mkdir(exist_ok=True)
    log = tmp_path / "log"
    env = base_environment(sandbox.layout(tuple(dirs)), 0)
    py = os.path.realpath(sys._base_executable)
    mounts = () if PY_PREFIX.startswith("/usr") else (PY_PREFIX,)
    done = sandbox.run(SandboxRequest((py, "-I", "-c", script), env, *dirs, mounts=mounts, log=log, timeout=60))
    return done.exit_code, log.read_text()


@pytest.mark.bwrap
def test_profile_says_what_it_enforces(sandbox):
    assert {"no-network", "read-only-inputs", "no-home", "clear-env"} <= set(sandbox.profile()["enforces"])
    assert sandbox.layout((Path("/a"), Path("/b"), Path("/c"))).inputs == "/hermetic/in"


@pytest.mark.bwrap
def test_no_network(sandbox, tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    with server:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # reachable from outside
        tcp, tcp_out = run(sandbox, tmp_path,
                           f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)")
        dns, dns_out = run(sandbox, tmp_path, "import socket; socket.getaddrinfo('pypi.org', 443)")
    blocked = [tcp != 0, dns != 0 and "gaierror" in dns_out]
    record("sandbox escape attempts", attempts=2, blocked=sum(blocked))  # TCP to a listening port, DNS
    assert blocked == [True, True], (tcp_out, dns_out)


@pytest.mark.bwrap
def test_home_and_workspace_invisible(sandbox, tmp_path):
    home = Path.home()
    outside = sorted(os.listdir(home))
    secret = Path(__file__).resolve()  # any file of the workspace
    code, out = run(sandbox, tmp_path, f"""
import os
print(sorted(os.listdir({str(home)!r})) if os.path.isdir({str(home)!r}) else [])
print(os.path.exists({str(secret)!r}))
print(os.environ.get('HOME'))
""")
    assert code == 0, out
    visible, secret_seen, env_home = out.splitlines()[:3]
    visible_names = eval(visible)
    # only directories on the way to a bound toolchain (e.g. ~/.pyenv for a pyenv Python)
    allowed = {Path(PY_PREFIX).relative_to(home).parts[0]} if PY_PREFIX.startswith(str(home)) else set()
    blocked = [set(visible_names) <= allowed, secret_seen == "False"]
    record("sandbox escape attempts", attempts=2, blocked=sum(blocked))  # read $HOME, an undeclared workspace file
    assert blocked == [True, True], visible_names
    assert len(outside) == 0 or set(outside) - allowed  # there was something to hide
    assert env_home == "/hermetic/home"


@pytest.mark.bwrap
def test_cannot_write_outside_outputs(sandbox, tmp_path):
    target = tmp_path / "escape"
    code, out = run(sandbox, tmp_path, f"""
import os
results = []
for p in ['/hermetic/in/x', '/usr/x', {str(target)!r}, '/hermetic/out/ok']:
    try:
        os.makedirs(os.path.dirname(p), exist_ok=True)
        open(p, 'w').write('x')
        results.append('wrote')
    except OSError:
        results.append('denied')
print(results)
""")
    assert code == 0, out
    results = eval(out.splitlines()[-1])
    # "wrote" to the host path went to the sandbox's private /tmp, not the host's
    blocked = [results[0] == "denied" and not (tmp_path / "in" / "x").exists(), results[1] == "denied",
               not target.exists()]
    record("sandbox escape attempts", attempts=3, blocked=sum(blocked))  # write inputs, /usr, a host path
    assert blocked == [True, True, True], results
    assert results[3] == "wrote" and (tmp_path / "out" / "ok").read_text() == "x"


@pytest.mark.bwrap
def test_no_process_outlives_the_action(sandbox, tmp_path):
    code, out = run(sandbox, tmp_path,
                    "import subprocess; subprocess.Popen(['sleep', '4321.5'], start_new_session=True); print('ok')")
    assert code == 0, out
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"4321.5" in Path(f"/proc/{pid}/cmdline").read_bytes():
                left.append(pid)
        except OSError:
            pass
    record("sandbox escape attempts", attempts=1, blocked=int(not left))  # a detached background process
    assert not left


@pytest.mark.bwrap
def test_environment_is_cleared(sandbox, tmp_path):
    code, out = run(sandbox, tmp_path, "import os; print(sorted(os.environ))")
    assert code == 0
    names = set(eval(out.splitlines()[-1]))
    assert names <= {"PATH", "HOME", "TMPDIR", "TZ", "LC_ALL", "LANG", "SOURCE_DATE_EPOCH", "PYTHONHASHSEED",
                     "PYTHONDONTWRITEBYTECODE", "IN", "OUT", "WORK", "LC_CTYPE", "PWD"}
    assert "TZ" in names and "SOURCE_DATE_EPOCH" in names


def test_host_platform():
    from plugins import linux

    assert linux.hermetic_host_platform() == Platform("linux", linux._host().arch, linux._host().libc)


GENRULE_WS = {"BUILD.toml": """
    [workspace]
    [gen]
    rule = "genrule"
    srcs = ["in.txt"]
    outs = ["out.txt"]
    cmd = 'tr a-z A-Z < $SRCS > $OUT/out.txt; pwd >> $OUT/out.txt'
"""}


@pytest.mark.parametrize("mode", [pytest.param("auto", marks=pytest.mark.bwrap), "none"])
def test_genrule_in_each_sandbox_mode(tmp_path, mode):
    from hermetic._session import Session
    from hermetic.model import Label
    from hermetic.testing import write_workspace

    ws = write_workspace(tmp_path / "ws", {**GENRULE_WS, "in.txt": "hello\n"})
    r = Session(ws, cache_dir=tmp_path / "c", sandbox=mode).build([Label("", "gen")])
    text = r.outputs[Label("", "gen")][0].read_text().splitlines()
    assert text[0] == "HELLO"
    if mode == "auto":
        assert text[1] == "/hermetic/work"  # a fixed path, whatever the host's
    else:
        assert text[1].startswith(str(tmp_path / "c"))
    # the two modes never share results: the sandbox profile is in the key
    r2 = Session(ws, cache_dir=tmp_path / "c", sandbox="none" if mode == "auto" else "auto").build(
        [Label("", "gen")])
    assert r2.stats.executed == 1


def test_missing_bubblewrap_is_explained(tmp_path, monkeypatch):
    from hermetic._session import Session
    from hermetic.errors import SandboxError
    from hermetic.model import Label
    from hermetic.testing import write_workspace
    from plugins import linux

    monkeypatch.setattr(linux, "_which", lambda name: None if name == "bwrap" else shutil.which(name))
    ws = write_workspace(tmp_path / "ws", {**GENRULE_WS, "in.txt": "x\n"})
    with pytest.raises(SandboxError) as e:
        Session(ws, cache_dir=tmp_path / "c").build([Label("", "gen")])
    assert "apt-get install bubblewrap" in e.value.hint and "--sandbox=none" in e.value.hint
    assert not list((tmp_path / "c" / "ac").rglob("*/*"))

"""Remote caches against real servers: nginx (Bazel HTTP cache over WebDAV)
and BuildGrid (REAPI), plus fault injectors for what real servers do badly."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import build_counts, hermetic_cli
from hermetic.testing import write_workspace
from servers import BuildGrid, Nginx, free_port, self_signed

pytestmark = pytest.mark.linux

BUILD = """
[workspace]
source_date_epoch = 1767225600

["//:upper"]
rule = "genrule"
srcs = ["hello.txt"]
outs = ["upper.txt"]
cmd = "tr a-z A-Z < $SRCS > $OUT/upper.txt"

["//:slow"]
rule = "genrule"
srcs = [":upper"]
outs = ["slow.txt"]
cmd = "sleep ${SLEEP:-0}; rev < $SRCS > $OUT/slow.txt"
env = { SLEEP = "0" }

["//:tree"]
rule = "genrule"
srcs = [":upper"]
outs = ["a.txt", "b.txt"]
cmd = "cp $SRCS $OUT/a.txt; printf 'b\\\\n' > $OUT/b.txt"

["//:all"]
rule = "genrule"
srcs = [":slow", ":tree"]
outs = ["all.txt"]
cmd = "cat $SRCS > $OUT/all.txt"
"""


def _member(root: Path, name: str, build: str = BUILD) -> Path:
    """One teammate: a checkout in its own directory."""
    return write_workspace(root / name, {"BUILD.toml": build, "hello.txt": "hello remote\n"})


def _build(ws: Path, *args: str, env: dict[str, str] | None = None, check: bool = True,
           target: str = "//:all") -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "hermetic", "--cache-dir", str(ws.parent / f"{ws.name}-cache"),
                           "build", target, *args], cwd=ws, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _counts(stderr: str) -> tuple[int, int, int]:
    return build_counts(stderr)[1:]


def _stats(ws: Path) -> str:
    return hermetic_cli("--cache-dir", str(ws.parent / f"{ws.name}-cache"), "cache", "stats", cwd=ws).stdout


def _remote(server: Nginx | BuildGrid) -> list[str]:
    extra = ["--remote-instance", server.instance] if isinstance(server, BuildGrid) else []
    return ["--remote-cache", server.url, *extra]


@pytest.fixture(params=["nginx", "buildgrid"])
def server(request, tmp_path):
    srv = Nginx(tmp_path / "nginx") if request.param == "nginx" else BuildGrid(tmp_path / "buildgrid")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def nginx(tmp_path):
    srv = Nginx(tmp_path / "nginx").start()
    yield srv
    srv.stop()


def test_two_members_share_every_step(tmp_path, server):
    alice, bob = _member(tmp_path, "alice"), _member(tmp_path, "bob")
    first = _build(alice, *_remote(server))
    assert _counts(first.stderr) == (4, 0, 0)
    assert "uploads 4" in _stats(alice)
    second = _build(bob, *_remote(server))
    assert _counts(second.stderr) == (0, 4, 4)
    assert "[start]" not in second.stderr
    assert (bob / "hermetic-out/all/all.txt").read_bytes() == (alice / "hermetic-out/all/all.txt").read_bytes()
    stats = _stats(bob)
    assert "hits 4, misses 0" in stats and "errors 0" in stats
    assert "0 executed, 0 from the local cache, 4 from the remote cache" in stats
    # only what bob asked for was downloaded, not the intermediate outputs
    assert not (bob / "hermetic-out/upper").exists()


def test_read_only_member_never_writes(tmp_path, nginx):
    dev = _member(tmp_path, "dev")
    proc = _build(dev, *_remote(nginx), "--remote-upload", "false")
    assert _counts(proc.stderr) == (4, 0, 0)
    assert nginx.blobs() == [] and not (nginx.data / "cache" / "ac").exists()
    assert "(read-only)" in _stats(dev)


def test_settings_come_from_env_and_config_files(tmp_path, nginx):
    ci = _member(tmp_path, "ci")
    _build(ci, env={"HERMETIC_REMOTE_CACHE": nginx.url})
    assert len(nginx.blobs()) > 0
    home = tmp_path / "home"
    (home / "hermetic").mkdir(parents=True)
    (home / "hermetic" / "config.toml").write_text(f'[remote]\ncache = "{nginx.url}"\nupload = false\n')
    dev = _member(tmp_path, "dev")
    proc = _build(dev, env={"XDG_CONFIG_HOME": str(home)})
    assert _counts(proc.stderr) == (0, 4, 4)
    ws_cfg = _member(tmp_path, "team", BUILD.replace("source_date_epoch = 1767225600",
                                                     f'source_date_epoch = 1767225600\n\n[workspace.remote]\n'
                                                     f'cache = "{nginx.url}"'))
    assert _counts(_build(ws_cfg).stderr) == (0, 4, 4)


def test_corrupt_blob_on_the_server_is_rebuilt_here(tmp_path, nginx):
    alice, bob = _member(tmp_path, "alice"), _member(tmp_path, "bob")
    _build(alice, *_remote(nginx))
    good = (alice / "hermetic-out/all/all.txt").read_bytes()
    blob = nginx.data / "cache" / "cas" / hashlib.sha256(good).hexdigest()
    assert blob.exists()
    blob.write_bytes(b"EVIL" + good[4:])  # same size, wrong bytes
    proc = _build(bob, *_remote(nginx))
    assert "does not match its digest" in proc.stderr
    assert _counts(proc.stderr) == (1, 3, 3)  # //:all ran here; the rest came from the remote
    assert (bob / "hermetic-out/all/all.txt").read_bytes() == good
    assert "corrupt 1" in _stats(bob)


def test_corrupt_intermediate_blob_runs_its_producer_here(tmp_path, nginx):
    alice, bob = _member(tmp_path, "alice"), _member(tmp_path, "bob")
    _build(alice, *_remote(nginx))
    upper = (alice / "hermetic-out/upper/upper.txt")
    _build(alice, *_remote(nginx), target="//:upper")
    blob = nginx.data / "cache" / "cas" / hashlib.sha256(upper.read_bytes()).hexdigest()
    blob.write_bytes(b"x" * blob.stat().st_size)
    # bob changes //:slow, so it runs here and needs //:upper's output
    (bob / "BUILD.toml").write_text(BUILD.replace('SLEEP = "0"', 'SLEEP = "0.1"'))
    proc = _build(bob, *_remote(nginx))
    assert "running Genrule //:upper here" in proc.stderr
    assert (bob / "hermetic-out/all/all.txt").read_text() == (alice / "hermetic-out/all/all.txt").read_text()


def test_only_trusted_signatures_are_used(tmp_path, nginx):
    keys = tmp_path / "keys"
    out = hermetic_cli("cache", "keygen", "ci-2026", "--dir", str(keys), cwd=tmp_path).stdout
    pub = re.search(r"public key: (\S+)", out).group(1)
    assert (keys / "ci-2026.secret").stat().st_mode & 0o777 == 0o600
    hermetic_cli("cache", "keygen", "mallory", "--dir", str(keys), cwd=tmp_path)
    mallory_pub = (keys / "mallory.pub").read_text().strip()

    # an unsigned upload is not used by a member who trusts ci-2026 only
    _build(_member(tmp_path, "laptop"), *_remote(nginx))
    bob = _member(tmp_path, "bob")
    proc = _build(bob, *_remote(nginx), "--trusted-key", pub, "--remote-upload", "false")
    assert _counts(proc.stderr) == (4, 0, 0)
    assert "not signed by a trusted key" in proc.stderr and "untrusted 4" in _stats(bob)

    # CI signs; the same member now gets everything from the remote
    _build(_member(tmp_path, "ci"), *_remote(nginx), "--trusted-key", pub,
           "--signing-key", str(keys / "ci-2026.secret"))
    carol = _member(tmp_path, "carol")
    assert _counts(_build(carol, *_remote(nginx), "--trusted-key", pub).stderr) == (0, 4, 4)

    # a signature by a key nobody trusts counts for nothing (other sources: results only mallory signed)
    evil, dave = _member(tmp_path, "evil"), _member(tmp_path, "dave")
    for ws in (evil, dave):
        (ws / "hello.txt").write_text("hello mallory\n")
    _build(evil, *_remote(nginx), "--trusted-key", mallory_pub, "--signing-key", str(keys / "mallory.secret"))
    proc = _build(dave, *_remote(nginx), "--trusted-key", pub, "--remote-upload", "false")
    assert _counts(proc.stderr) == (4, 0, 0)
    # and mallory reproducing CI's results adds her signature beside CI's, never in its place
    _build(_member(tmp_path, "evil2"), *_remote(nginx), "--trusted-key", mallory_pub,
           "--signing-key", str(keys / "mallory.secret"))
    assert _counts(_build(_member(tmp_path, "erin"), *_remote(nginx), "--trusted-key", pub).stderr) == (0, 4, 4)


def _keys(tmp_path: Path, *names: str) -> dict[str, tuple[str, Path]]:
    """name -> (public key, secret key file), made by `hermetic cache keygen`."""
    out = {}
    for name in names:
        text = hermetic_cli("cache", "keygen", name, "--dir", str(tmp_path / "keys"), cwd=tmp_path).stdout
        out[name] = (re.search(r"public key: (\S+)", text).group(1), tmp_path / "keys" / f"{name}.secret")
    return out


def _trust(keys: dict[str, tuple[str, Path]], k: int) -> list[str]:
    return [*(a for pub, _ in keys.values() for a in ("--trusted-key", pub)), "--min-signers", str(k)]


def test_two_of_two_signers_and_countersigning_by_reproduction(tmp_path, server):
    """Issue 19, 1 (the small graph, on both servers): a result one trusted
    key signed is not used under min_signers = 2; a second builder in
    another directory with another store rebuilds, finds the same bytes and
    countersigns; then a client with an empty store runs nothing."""
    keys = _keys(tmp_path, "ci", "builder2")
    ci = _build(_member(tmp_path, "ci"), *_remote(server), *_trust(keys, 1), "--signing-key", str(keys["ci"][1]))
    assert _counts(ci.stderr) == (4, 0, 0)

    bob = _member(tmp_path, "bob")
    proc = _build(bob, *_remote(server), *_trust(keys, 2), "--remote-upload", "false")
    assert _counts(proc.stderr) == (4, 0, 0)  # every action ran here
    assert "remote result for Genrule //:upper refused: signed by 1 of the 2 trusted keys required (ci)" \
        in proc.stderr, proc.stderr
    assert "4 remote result(s) fell short of min_signers = 2" in proc.stderr
    assert "short of min_signers 4" in _stats(bob)

    b2 = _member(tmp_path, "builder2")
    cache = ["--cache-dir", str(tmp_path / "builder2-cache")]
    sign = ["verify", "//:all", "--against-cache", *_remote(server), *_trust(keys, 2), "--sign", str(keys["builder2"][1])]
    first = hermetic_cli(*cache, *sign, "--json", cwd=b2)
    report = json.loads(first.stdout)
    assert report["reproducible"] and report["countersigned"] == {"signed": 4, "already": 0, "differs": 0,
                                                                  "missing": 0}, first.stderr
    assert {a["reference"] for a in report["actions"]} == {"cache"}  # it checked the remote's results
    again = json.loads(hermetic_cli(*cache, *sign, "--json", cwd=b2).stdout)
    assert again["countersigned"]["already"] == 4 and again["countersigned"]["signed"] == 0

    carol = _member(tmp_path, "carol")
    got = _build(carol, *_remote(server), *_trust(keys, 2), "--remote-upload", "false")
    assert _counts(got.stderr) == (0, 4, 4) and "refused" not in got.stderr, got.stderr
    assert (carol / "hermetic-out/all/all.txt").read_bytes() == (tmp_path / "ci/hermetic-out/all/all.txt").read_bytes()


def test_a_poisoned_entry_signed_with_a_stolen_key_is_refused(tmp_path, nginx):
    """Issue 19, 2: //:upper's result is swapped for other valid blobs and
    signed again with one of the two trusted keys (stolen); the other
    signer's record stays. Under min_signers = 2 it is refused, named with
    who agrees and who does not; under one key it would have been used."""
    from hermetic._cache import Store
    from hermetic._remote import RemoteCache, resolve
    from hermetic._signing import SecretKey, sign

    keys = _keys(tmp_path, "ci", "builder2")
    _build(_member(tmp_path, "ci"), *_remote(nginx), *_trust(keys, 1), "--signing-key", str(keys["ci"][1]))
    hermetic_cli("--cache-dir", str(tmp_path / "b2-cache"), "verify", "//:all", "--against-cache", *_remote(nginx),
                 *_trust(keys, 2), "--sign", str(keys["builder2"][1]), cwd=_member(tmp_path, "b2"))

    key = json.loads((tmp_path / "ci-cache" / "last-build.json").read_text())["keys"]["//:upper#Genrule"]
    attacker = RemoteCache(resolve({"cache": nginx.url}, {}, "test", env={}, user_file=tmp_path / "none"),
                           Store(tmp_path / "attacker-store"))
    honest = json.loads(urllib_get(f"{nginx.url}/cas/{_envelope_hash(nginx, key)}"))
    assert sorted(s["key"] for s in honest["signatures"]) == ["builder2", "ci"]
    forged = attacker.store.put_bytes(b"HELLO MALLORY\n")
    result = dict(honest["result"], outputs={"out/upper/upper.txt": {"hash": forged.hash, "size": forged.size,
                                                                     "tree": False, "x": False}})
    stolen = SecretKey.load(keys["ci"][1])
    kept = [s for s in honest["signatures"] if s["key"] == "builder2"]
    assert attacker.put_envelope(key, 0, result, [sign(key, result, stolen), *kept], "poison")

    bob = _member(tmp_path, "bob")
    proc = _build(bob, *_remote(nginx), *_trust(keys, 2), "--remote-upload", "false")
    assert ("remote result for Genrule //:upper refused: signed by 1 of the 2 trusted keys required (ci); "
            "builder2 signed other outputs for this action") in proc.stderr, proc.stderr
    assert _counts(proc.stderr) == (1, 3, 3)  # only //:upper ran here; its bytes match what both signed
    assert (bob / "hermetic-out/all/all.txt").read_bytes() == (tmp_path / "ci/hermetic-out/all/all.txt").read_bytes()
    # the same entry, trusted with one key: used, and the forged bytes are in the output
    dave = _member(tmp_path, "dave")
    _build(dave, *_remote(nginx), "--trusted-key", keys["ci"][0], "--remote-upload", "false")
    assert b"HELLO MALLORY" in (dave / "hermetic-out/all/all.txt").read_bytes()


def urllib_get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()  # type: ignore[no-any-return]


def _envelope_hash(nginx: Nginx, key: str) -> str:
    """The digest of the envelope nginx holds for *key* (its ActionResult names it)."""
    from hermetic._protos import remote_cache_pb2
    from hermetic._remote import RESULT_FILE

    ar = remote_cache_pb2.ActionResult.FromString(urllib_get(f"{nginx.url}/ac/{key}"))
    return next(f.digest.hash for f in ar.output_files if f.path == RESULT_FILE)


def test_min_signers_needs_as_many_trusted_keys(tmp_path):
    ws = _member(tmp_path, "dev")
    proc = _build(ws, "--remote-cache", "http://127.0.0.1:9/c", "--trusted-key", "ci:" + "A" * 43 + "=",
                  "--min-signers", "2", check=False)
    assert proc.returncode != 0
    assert "min_signers = 2 needs at least 2 trusted keys" in proc.stderr and "--trusted-key" in proc.stderr


def test_remote_down_falls_back_once(tmp_path):
    ws = _member(tmp_path, "dev")
    t0 = time.monotonic()
    proc = _build(ws, "--remote-cache", f"http://127.0.0.1:{free_port()}/cache")
    assert _counts(proc.stderr) == (4, 0, 0)
    assert proc.stderr.count("falling back to local execution") == 1
    assert time.monotonic() - t0 < 60


class _Garbage(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        body = os.urandom(300)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):  # noqa: N802
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_PUT

    def log_message(self, *args):
        pass


def test_garbage_answers_are_ignored(tmp_path):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        proc = _build(_member(tmp_path, "dev"), "--remote-cache", f"http://127.0.0.1:{srv.server_port}/c")
    finally:
        srv.shutdown()
        srv.server_close()
    assert _counts(proc.stderr) == (4, 0, 0)
    assert "remote result for" in proc.stderr and "ignored" in proc.stderr


def test_a_server_that_never_answers_times_out(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # accepts connections (the kernel does), never reads or answers
    try:
        t0 = time.monotonic()
        proc = _build(_member(tmp_path, "dev"), "--remote-cache", f"http://127.0.0.1:{sock.getsockname()[1]}/c",
                      "--remote-timeout", "1")
        took = time.monotonic() - t0
    finally:
        sock.close()
    assert _counts(proc.stderr) == (4, 0, 0)
    assert proc.stderr.count("falling back to local execution") == 1
    assert "not used for the rest of this build" in proc.stderr
    assert took < 30  # three timeouts at most, then the remote is left alone


def test_server_killed_mid_build(tmp_path, nginx):
    ws = _member(tmp_path, "dev", BUILD.replace('SLEEP = "0"', 'SLEEP = "4"'))
    proc = subprocess.Popen([sys.executable, "-m", "hermetic", "--cache-dir", str(tmp_path / "cache"), "build",
                             "//:all", *_remote(nginx)], cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 30
    while not (nginx.data / "cache" / "ac").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the first result has been uploaded: //:slow is sleeping now
    nginx.stop()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert _counts(err) == (4, 0, 0)
    assert "falling back to local execution" in err
    assert (ws / "hermetic-out/all/all.txt").read_text() == "\n".join(["ETOMER OLLEH", "HELLO REMOTE", "b", ""])


def test_bearer_token_from_env_or_file(tmp_path):
    srv = Nginx(tmp_path / "nginx", token="s3cret").start()
    try:
        proc = _build(_member(tmp_path, "anon"), *_remote(srv))
        assert "HTTP 401" in proc.stderr and _counts(proc.stderr) == (4, 0, 0)
        assert srv.blobs() == []
        _build(_member(tmp_path, "ci"), *_remote(srv), env={"HERMETIC_REMOTE_TOKEN": "s3cret"})
        token = tmp_path / "token"
        token.write_text("s3cret\n")
        cfg = tmp_path / "cfg"
        (cfg / "hermetic").mkdir(parents=True)
        (cfg / "hermetic" / "config.toml").write_text(f'[remote]\ntoken_file = "{token}"\n')
        proc = _build(_member(tmp_path, "dev"), *_remote(srv), env={"XDG_CONFIG_HOME": str(cfg)})
        assert _counts(proc.stderr) == (0, 4, 4)
    finally:
        srv.stop()


@pytest.mark.parametrize("kind", ["https", "grpcs"])
def test_tls_with_a_private_ca(tmp_path, kind):
    cert, key = self_signed(tmp_path / "tls")
    srv = (Nginx(tmp_path / "nginx", tls=(cert, key)) if kind == "https"
           else BuildGrid(tmp_path / "bgd", tls=(cert, key))).start()
    try:
        untrusting = _build(_member(tmp_path, "a"), *_remote(srv))
        assert _counts(untrusting.stderr) == (4, 0, 0)
        assert "falling back to local execution" in untrusting.stderr
        if kind == "https":
            assert "CERTIFICATE_VERIFY_FAILED" in untrusting.stderr
        cfg = tmp_path / "cfg"
        (cfg / "hermetic").mkdir(parents=True)
        (cfg / "hermetic" / "config.toml").write_text(f'[remote]\ntls_ca_file = "{cert}"\n')
        env = {"XDG_CONFIG_HOME": str(cfg)}
        _build(_member(tmp_path, "b"), *_remote(srv), env=env)
        assert _counts(_build(_member(tmp_path, "c"), *_remote(srv), env=env).stderr) == (0, 4, 4)
    finally:
        srv.stop()


@pytest.mark.parametrize(("setting", "message"), [
    ('cache = "ftp://example.invalid/c"', "is not an http(s):// or grpc(s):// URL"),
    ('cache = "http://127.0.0.1:9/c"\nuplod = true', 'unknown remote setting "uplod"'),
    ('cache = "http://127.0.0.1:9/c"\ntrusted_keys = ["nope"]', "is not a public key"),
])
def test_bad_remote_settings_name_where_they_are(tmp_path, setting, message):
    ws = _member(tmp_path, "dev", BUILD.replace("source_date_epoch = 1767225600",
                                                f"source_date_epoch = 1767225600\n\n[workspace.remote]\n{setting}"))
    proc = _build(ws, check=False)
    assert proc.returncode == 3, proc.stderr
    assert message in proc.stderr and "BUILD.toml" in proc.stderr and "Traceback" not in proc.stderr
    assert not (ws / "hermetic-out").exists()


def test_keygen_never_overwrites(tmp_path):
    hermetic_cli("cache", "keygen", "k1", "--dir", str(tmp_path), cwd=tmp_path)
    secret = (tmp_path / "k1.secret").read_text()
    again = hermetic_cli("cache", "keygen", "k1", "--dir", str(tmp_path), cwd=tmp_path, check=False)
    assert again.returncode == 3 and "already exists" in again.stderr
    assert (tmp_path / "k1.secret").read_text() == secret


def test_cache_stats_json_has_remote_numbers(tmp_path, nginx):
    ws = _member(tmp_path, "dev")
    _build(ws, *_remote(nginx))
    data = json.loads((ws.parent / "dev-cache" / "last-build.json").read_text())
    assert data["remote"]["uploads"] == 4 and data["remote"]["bytes_up"] > 0
    shutil.rmtree(ws / "hermetic-out")


def test_verify_against_the_remote_catches_another_builders_bytes(tmp_path, nginx):
    """guix challenge against a team cache: the reference is what the remote
    holds; a validly signed-off but different result is named."""
    from hermetic._cache import Store
    from hermetic._remote import RemoteCache, resolve

    alice, bob = _member(tmp_path, "alice"), _member(tmp_path, "bob")
    _build(alice, *_remote(nginx))
    cache = ["--cache-dir", str(tmp_path / "bob-cache")]
    ok = hermetic_cli(*cache, "verify", "//:all", "--against-cache", *_remote(nginx), "--json", cwd=bob)
    report = json.loads(ok.stdout)
    assert {a["status"] for a in report["actions"]} == {"reproducible"}
    assert {a["reference"] for a in report["actions"]} == {"cache"}

    # mallory's builder uploads other bytes for //:upper under the same key
    keys = json.loads((tmp_path / "alice-cache" / "last-build.json").read_text())["keys"]
    store = Store(tmp_path / "mallory-store")
    forged = store.put_bytes(b"HELLO MALLORY\n")
    result = {"outputs": {"out/upper/upper.txt": {"hash": forged.hash, "size": forged.size, "tree": False,
                                                  "x": False}}, "log": None, "mnemonic": "Genrule",
              "owner": "//:upper"}
    RemoteCache(resolve({"cache": nginx.url}, {}, "test", env={}, user_file=tmp_path / "none"), store).upload(
        keys["//:upper#Genrule"], b"", result, "forged")
    bad = hermetic_cli("--cache-dir", str(tmp_path / "carol-cache"), "verify", "//:all", "--against-cache",
                       *_remote(nginx), "--json", "--diff-tool", "builtin", cwd=_member(tmp_path, "carol"),
                       check=False)
    assert bad.returncode == 5
    report = json.loads(bad.stdout)
    status = {a["action"]: a["status"] for a in report["actions"]}
    assert status["//:upper#Genrule"] == "differs"
    assert "-HELLO MALLORY" in report["first_difference"]["diff"]

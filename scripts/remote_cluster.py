#!/usr/bin/env python3
"""A whole remote-execution cluster on this machine, for tests, benchmarks
and trying it out: PostgreSQL (BuildGrid's scheduler database, initdb into a
temporary directory), BuildGrid (Execution, Bots, CAS, ByteStream,
ActionCache) and N ``hermetic worker`` processes, all on 127.0.0.1 and free
ports. It prints the ``--remote-executor`` URL, runs until interrupted, and
stops everything it started, by PID::

    scripts/remote_cluster.py --workers 2
    # remote executor: grpc://127.0.0.1:40123 (instance "hermetic")
    .venv/bin/hermetic build //wheel:linux-x86_64 --remote-executor grpc://127.0.0.1:40123

The tests and ``bench/remote_exec.py`` import :class:`Cluster` from here.
On real machines, run the same three programs on their own hosts (README,
"Remote execution")."""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BGD = REPO / ".venv-buildgrid" / "bin" / "bgd"
HERMETIC = REPO / ".venv" / "bin" / "hermetic"
#: the platform property names BuildGrid matches actions to workers on
#: (hermetic.remote_exec.PROPERTY_KEYS; the REAPI lexicon's OSFamily and ISA)
MATCH_KEYS = ("OSFamily", "ISA", "hermetic-sandbox", "hermetic-toolchain")


class ClusterError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterError(f"{what} exited ({proc.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.1)
    raise ClusterError(f"{what} did not listen on 127.0.0.1:{port}:\n{log.read_text(errors='replace')[-3000:]}")


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the process that started it
    dies (a test killed with SIGKILL leaves no server behind)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Stop a process this module started, by its PID."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


class Postgres:
    """A private PostgreSQL server: its own data directory (made by initdb),
    127.0.0.1 on a free port, trust authentication for the one user ``bgd``.
    PostgreSQL refuses to run as root: as root it runs as the ``postgres``
    user Debian's package creates."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://bgd@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def bindir() -> Path:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not found:
            raise ClusterError("PostgreSQL is not installed: run scripts/setup.sh (Debian package postgresql)")
        return found[-1].parent

    def start(self) -> Postgres:
        bindir = self.bindir()
        user: str | None = None
        # a directory the server's user can reach: not under root's private temporary directories
        self.dir = Path(tempfile.mkdtemp(prefix="hermetic-pg."))
        if os.geteuid() == 0:
            user = "postgres"
            pw = pwd.getpwnam(user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        data, log = self.dir / "data", self.dir / "postgres.log"
        subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "bgd", "--auth=trust", "-E", "UTF8",
                        "--no-sync"], check=True, capture_output=True, user=user, cwd=self.dir)
        with open(log, "wb") as out:
            if user is not None:
                os.chown(log, pwd.getpwnam(user).pw_uid, -1)
            self.proc = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(self.port),
                 "-k", str(self.dir), "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=200"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, user=user, cwd=self.dir,
                preexec_fn=_die_with_parent)
        wait_listening(self.port, self.proc, log, "PostgreSQL")
        return self

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGINT)  # "fast" shutdown
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


class ExecutionServer:
    """``bgd server start`` with Execution + Bots (the SQL scheduler on
    *database*), CAS and ByteStream on disk, and an action cache."""

    def __init__(self, prefix: Path, database: str, instance: str = "hermetic", *,
                 keepalive: int = 20, port: int | None = None) -> None:
        self.prefix = prefix
        self.database = database
        self.instance = instance
        self.keepalive = keepalive
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"

    def config(self) -> str:
        keys = "\n".join(f"        - {k}" for k in MATCH_KEYS)
        return f"""
server:
  - !channel
    address: "127.0.0.1:{self.port}"
    insecure-mode: true
# every Execute stream and every bot's long poll holds a thread for as long as it
# lasts: the default (5 x cores) refuses a client running -j 8 next to two workers
thread-pool-size: 200
connections:
  - !sql-connection &sql
    connection-string: {self.database}
    pool-size: 10
    max-overflow: 20
storages:
  - !disk-storage &cas
    path: {self.prefix / "cas"}
caches:
  - !lru-action-cache &ac
    storage: *cas
    max-cached-refs: 100000
    allow-updates: true
    cache-failed-actions: false
schedulers:
  - !sql-scheduler &scheduler
    sql: *sql
    storage: *cas
    action-cache: *ac
    property-set: !dynamic-property-set
      match-property-keys:
{keys}
      wildcard-property-keys: []
    bot-session-keepalive-timeout: {self.keepalive}
    session-expiry-timer-interval: 2
    max-job-attempts: 3
    # how often the scheduler looks for changes to tell Execute streams and
    # long-polling bots about (BuildGrid's defaults, 1 s, add up to seconds per action)
    poll-interval: 0.05
    bot-poll-interval: 0.05
    assigners:
      - !priority-age-assigner
        count: 2
        interval: 0.05
instances:
  - name: {self.instance}
    services:
      - !execution
        scheduler: *scheduler
        operation-stream-keepalive-timeout: 10
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
      - !action-cache
        cache: *ac
"""

    def start(self) -> ExecutionServer:
        if not BGD.exists():
            raise ClusterError("BuildGrid is not installed: run scripts/setup.sh (it makes .venv-buildgrid)")
        self.prefix.mkdir(parents=True, exist_ok=True)
        (self.prefix / "cas").mkdir(exist_ok=True)
        conf = self.prefix / "buildgrid.yml"
        conf.write_text(self.config())
        env = {"PATH": f"{BGD.parent}:/usr/bin:/bin", "HOME": str(self.prefix)}
        log = self.prefix / "bgd.log"
        migrated = subprocess.run([str(BGD), "migrate", "apply", self.database], capture_output=True, env=env,
                                  stdin=subprocess.DEVNULL)
        if migrated.returncode != 0:
            raise ClusterError("bgd migrate apply failed:\n" + migrated.stdout.decode(errors="replace")[-2000:]
                               + migrated.stderr.decode(errors="replace")[-2000:])
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([str(BGD), "server", "start", str(conf)], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                         preexec_fn=_die_with_parent)
        wait_listening(self.port, self.proc, log, "BuildGrid")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)


class Worker:
    """One ``hermetic worker`` process with its own cache directory."""

    def __init__(self, prefix: Path, server: str, instance: str, *, name: str, jobs: int = 1,
                 extra: tuple[str, ...] = ()) -> None:
        self.prefix = prefix
        self.server = server
        self.instance = instance
        self.name = name
        self.jobs = jobs
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.prefix / "worker.log"

    def start(self) -> Worker:
        self.prefix.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERMETIC_")}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(HERMETIC), "--cache-dir", str(self.prefix / "cache"), "worker", "--server", self.server,
                 "--instance", self.instance, "--jobs", str(self.jobs), "--name", self.name, *self.extra],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                preexec_fn=_die_with_parent)
        return self

    def wait_ready(self, timeout: float = 120) -> None:
        """Until the worker says it has a bot session."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ClusterError(f"worker {self.name} exited ({self.proc.returncode}):\n"
                                   + self.log.read_text(errors="replace")[-3000:])
            if self.log.exists() and "bot session" in self.log.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise ClusterError(f"worker {self.name} did not connect:\n" + self.log.read_text(errors="replace")[-3000:])

    def kill(self) -> None:
        stop_process(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM, timeout=30)


class Cluster:
    """PostgreSQL + BuildGrid + *workers* hermetic workers under *prefix*."""

    def __init__(self, prefix: Path, workers: int = 2, *, instance: str = "hermetic", jobs: int = 1,
                 keepalive: int = 20, worker_args: tuple[str, ...] = ()) -> None:
        self.prefix = Path(prefix)
        self.instance = instance
        self.database = Postgres()
        self.server: ExecutionServer | None = None
        self.workers: list[Worker] = []
        self.n = workers
        self.jobs = jobs
        self.keepalive = keepalive
        self.worker_args = worker_args

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def start(self) -> Cluster:
        try:
            self.database.start()
            self.server = ExecutionServer(self.prefix / "buildgrid", self.database.url, self.instance,
                                          keepalive=self.keepalive).start()
            for i in range(self.n):
                self.add_worker(f"w{i + 1}")
            for w in self.workers:
                w.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self, name: str) -> Worker:
        w = Worker(self.prefix / f"worker-{name}", self.url, self.instance, name=name, jobs=self.jobs,
                   extra=self.worker_args).start()
        self.workers.append(w)
        return w

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        if self.server is not None:
            self.server.stop()
        self.database.stop()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(prefix: Path, workers: int = 2, **kw: object) -> Iterator[Cluster]:
    with Cluster(prefix, workers, **kw) as c:  # type: ignore[arg-type]
        yield c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workers", type=int, default=2, help="hermetic workers to start (default 2)")
    ap.add_argument("--jobs", type=int, default=1, help="actions each worker runs at once (default 1)")
    ap.add_argument("--instance", default="hermetic", help='REAPI instance name (default "hermetic")')
    ap.add_argument("--prefix", type=Path, help="where logs, the CAS and worker caches go (default: a new "
                                                 "temporary directory, removed at the end)")
    args = ap.parse_args()
    prefix = args.prefix or Path(tempfile.mkdtemp(prefix="hermetic-cluster."))
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        with running(prefix, args.workers, instance=args.instance, jobs=args.jobs) as c:
            print(f"remote executor: {c.url} (instance \"{args.instance}\"); {args.workers} workers; logs in "
                  f"{prefix}", flush=True)
            print(f"  hermetic build TARGET --remote-executor {c.url} --remote-instance {args.instance}", flush=True)
            print("Ctrl-C stops the cluster.", flush=True)
            while not stop["now"]:
                time.sleep(0.5)
    except ClusterError as exc:
        print(f"remote_cluster: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.prefix is None:
            shutil.rmtree(prefix, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

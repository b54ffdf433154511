"""Command line: argument parsing, rendering events, exit codes. The only
place that catches exceptions."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from enum import IntEnum
from pathlib import Path
from typing import Any

from hermetic.errors import BuildFailed, HermeticError


class ExitCode(IntEnum):
    OK = 0
    BUILD_FAILED = 1
    USAGE = 2
    BAD_INPUT = 3
    ENVIRONMENT = 4
    NOT_REPRODUCIBLE = 5
    INTERRUPTED = 130


def _size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 500M, 10G)")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))


def _remote_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("remote cache (also $HERMETIC_REMOTE_CACHE, [remote] in ~/.config/hermetic/config.toml, "
                             "[workspace.remote] in the root BUILD.toml)")
    g.add_argument("--remote-cache", metavar="URL", help="http(s)://host/path (Bazel HTTP cache) or "
                   "grpc(s)://host:port (REAPI)")
    g.add_argument("--remote-upload", choices=["true", "false"], help="write results to the remote (default true)")
    g.add_argument("--remote-upload-local-hits", action="store_const", const="true", default=None,
                   help="also upload results served by the local store that the remote lacks (seed a cache)")
    g.add_argument("--remote-instance", metavar="NAME", help="REAPI instance name")
    g.add_argument("--remote-timeout", type=float, metavar="SECONDS", help="per request (default 10)")
    g.add_argument("--trusted-key", action="append", default=[], metavar="NAME:KEY",
                   help="accept only remote results signed by this key (repeatable)")
    g.add_argument("--signing-key", type=Path, metavar="FILE", help="sign uploaded results with this key")


def _remote_cli(args: argparse.Namespace) -> dict[str, object]:
    return {"cache": args.remote_cache, "upload": args.remote_upload, "instance": args.remote_instance,
            "upload_local_hits": args.remote_upload_local_hits,
            "timeout": args.remote_timeout, "trusted_keys": args.trusted_key,
            "signing_key": str(args.signing_key) if args.signing_key else None}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hermetic", description="Hermetic, reproducible, cached builds of "
                                "Python wheels with native code.")
    p.add_argument("-C", "--directory", type=Path, help="run as if started in this directory")
    p.add_argument("--cache-dir", type=Path, help="local store (default $HERMETIC_CACHE_DIR or "
                   "~/.cache/hermetic)")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build targets (fetch, compile, package, test)")
    b.add_argument("targets", nargs="+", metavar="TARGET")
    b.add_argument("-j", "--jobs", type=int, default=None, help="parallel jobs (default: number of cores)")
    b.add_argument("-k", "--keep-going", action="store_true", help="build all that does not depend on a failure")
    b.add_argument("-o", "--output-dir", type=Path, help="where outputs go (default: <workspace>/hermetic-out)")
    b.add_argument("--sandbox", choices=["auto", "bwrap", "none"], default="auto",
                   help="how actions are isolated (default: the best the host has)")
    b.add_argument("--distdir", type=Path, action="append", default=[],
                   help="a directory of pinned downloads to use before any mirror or URL")
    b.add_argument("-v", "--verbose", action="store_true", help="also list actions served from the cache")
    b.add_argument("--platform", metavar="PLATFORM",
                   help="the platform to build for (default: the host's); a target's own platform attribute "
                        "wins. e.g. linux-x86_64-manylinux2014, linux-aarch64, musllinux-x86_64, macos-arm64, "
                        "macos-x86_64, windows-x86_64")
    _remote_options(b)

    v = sub.add_parser("verify", help="rebuild without the cache, under varied conditions, and compare",
                       description="Build TARGET (cache allowed), then rebuild every action of its closure "
                       "without the cache from the same inputs and compare outputs byte for byte. By "
                       "default the rebuild varies what an action could observe (build root, uid/gid, umask, "
                       "locale, timezone, hostname, wall clock, directory order, -j). Exit status: 0 all "
                       "reproducible, 5 some action is not, 1 the build itself failed.")
    v.add_argument("targets", nargs="+", metavar="TARGET")
    v.add_argument("--against-cache", action="store_true",
                   help="compare a plain local rebuild with the results the cache holds (like guix challenge)")
    v.add_argument("--no-vary", action="append", default=[], metavar="NAME",
                   choices=["root", "uid", "gid", "umask", "timezone", "locale", "hostname", "clock_offset",
                            "jobs", "shuffle_dirs"], help="keep this condition as in a normal build (repeatable)")
    v.add_argument("--diff-tool", choices=["auto", "diffoscope", "builtin"], default="auto",
                   help="how to show a difference (auto: diffoscope when installed)")
    v.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    v.add_argument("-j", "--jobs", type=int, default=None, help="parallel jobs of the first build")
    v.add_argument("--sandbox", choices=["auto", "bwrap", "none"], default="auto")
    v.add_argument("--distdir", type=Path, action="append", default=[])
    v.add_argument("--platform", metavar="PLATFORM",
                   help="the platform to build for (default: the host's); a target's own platform attribute "
                        "wins. e.g. linux-x86_64-manylinux2014, linux-aarch64, musllinux-x86_64, macos-arm64, "
                        "macos-x86_64, windows-x86_64")
    _remote_options(v)

    q = sub.add_parser("query", help="inspect the target graph")
    q.add_argument("what", choices=["deps", "rdeps", "targets"])
    q.add_argument("target", nargs="?")

    g = sub.add_parser("graph", help="print a target's action graph")
    g.add_argument("target")
    g.add_argument("--format", choices=["dot", "json"], default="dot")
    g.add_argument("--platform", metavar="PLATFORM",
                   help="the platform to build for (default: the host's); a target's own platform attribute "
                        "wins. e.g. linux-x86_64-manylinux2014, linux-aarch64, musllinux-x86_64, macos-arm64, "
                        "macos-x86_64, windows-x86_64")

    c = sub.add_parser("clean", help="remove the output directory")
    c.add_argument("--expunge", action="store_true", help="also delete the local cache")

    ca = sub.add_parser("cache", help="the local store")
    csub = ca.add_subparsers(dest="cache_command", required=True)
    csub.add_parser("stats", help="size of the store and what the last build did")
    gc = csub.add_parser("gc", help="evict least recently used blobs")
    gc.add_argument("--max-size", type=_size, required=True, help="e.g. 2G")
    kg = csub.add_parser("keygen", help="create an ed25519 key for signing results shared through a remote cache")
    kg.add_argument("name", help="the key's name, e.g. ci-2026 (signatures say which key made them)")
    kg.add_argument("--dir", type=Path, default=None,
                    help="where NAME.secret and NAME.pub go (default ~/.config/hermetic/keys)")
    return p


class Renderer:
    """Turns engine events into lines on stderr."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.lock = threading.Lock()
        self.started: dict[str, float] = {}

    def __call__(self, event: str, **data: Any) -> None:
        with self.lock:
            if event == "action-start":
                a = data["action"]
                self.started[a.id] = time.monotonic()
                self._line(f"[start] {a.describe()}")
            elif event == "action-done":
                a = data["action"]
                if data["cached"]:
                    if self.verbose:
                        self._line(f"[{data['done']}/{data['total']}] cached {a.describe()}")
                else:
                    secs = time.monotonic() - self.started.get(a.id, time.monotonic())
                    self._line(f"[{data['done']}/{data['total']}] done   {a.describe()} ({secs:.1f}s)")
            elif event == "action-failed":
                self._line(f"[failed] {data['action'].describe()}")
            elif event == "note":
                self._line(f"note: {data['message']}")
            elif event == "verify-begin":
                if data["against_cache"]:
                    self._line(f"verify: rebuilding {data['total']} actions locally to challenge the cached results")
                else:
                    shown = ", ".join(f"{_VARIED_NAMES.get(k, k)} {v}" for k, v in data["applied"].items())
                    self._line(f"verify: rebuilding {data['total']} actions without the cache; varied: {shown}")
                    for k, why in data["skipped"].items():
                        self._line(f"verify: not varied: {_VARIED_NAMES.get(k, k)}: {why}")
            elif event == "verify-start":
                a = data["action"]
                self._line(f"[{data['index']}/{data['total']}] rebuild {a.describe()}")
            elif event == "verify-done":
                v = data["verdict"]
                a = v.action
                status = v.status.upper() if v.status in ("differs", "failed") else v.status
                secs = f" ({v.seconds:.1f}s)" if v.seconds else ""
                self._line(f"[{data['index']}/{data['total']}] {status:<13} {a.describe()}{secs}")
                if v.status == "failed":
                    for line in v.error.splitlines()[-20:]:
                        self._line(f"    {line}")

    def _line(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)


_VARIED_NAMES = {"root": "build root", "uid": "uid", "gid": "gid", "umask": "umask", "timezone": "TZ",
                 "locale": "locale", "hostname": "hostname", "clock_offset": "clock", "jobs": "-j",
                 "shuffle_dirs": "directory order"}


def _print_error(exc: BaseException) -> None:
    if isinstance(exc, BaseExceptionGroup):
        for e in exc.exceptions:
            _print_error(e)
        return
    print(f"error: {exc}", file=sys.stderr)
    hint = getattr(exc, "hint", None)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


def _exit_for(exc: HermeticError) -> ExitCode:
    if isinstance(exc, BuildFailed):
        return ExitCode.BUILD_FAILED
    if exc.reason in ("sandbox", "no-sandbox", "toolchain", "no-toolchain", "no-workspace", "no-host-platform"):
        return ExitCode.ENVIRONMENT
    return ExitCode.BAD_INPUT


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(_run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except HermeticError as exc:
        _print_error(exc)
        return _exit_for(exc)
    except BaseExceptionGroup as group:
        errs = group.exceptions
        if not all(isinstance(e, HermeticError) for e in errs):
            raise
        _print_error(group)
        return ExitCode.BAD_INPUT


def _session(args: argparse.Namespace, **kw: Any):  # type: ignore[no-untyped-def]
    from hermetic._session import Session

    return Session(args.directory, cache_dir=args.cache_dir, platform=getattr(args, "platform", None), **kw)


def _run(args: argparse.Namespace) -> ExitCode:
    if args.command == "build":
        return _build(args)
    if args.command == "query":
        return _query(args)
    if args.command == "verify":
        return _verify(args)
    if args.command == "graph":
        s = _session(args)
        analysis, graph = s.analyze(s.parse_labels([args.target]))
        order = graph.closure([a for fs in analysis.top.values() for a in fs])
        if args.format == "json":
            print(json.dumps(graph.to_json(order), indent=2))
        else:
            print(graph.to_dot(order), end="")
        return ExitCode.OK
    if args.command == "clean":
        s = _session(args)
        for p in s.clean(expunge=args.expunge):
            print(f"removed {p}")
        return ExitCode.OK
    if args.command == "cache":
        from hermetic._cache import Store, default_cache_dir

        if args.cache_command == "keygen":
            from hermetic._remote import user_config_path
            from hermetic._signing import generate

            directory = args.dir or user_config_path().parent / "keys"
            secret, pub = generate(args.name, directory)
            print(f"secret key: {secret} (keep it private; give it to the writers: --signing-key or "
                  f"signing_key = \"{secret}\")")
            print(f"public key: {pub}")
            print(f"trust it:   trusted_keys = [\"{pub}\"] under [remote] or [workspace.remote]")
            return ExitCode.OK
        store = Store(args.cache_dir or default_cache_dir())
        if args.cache_command == "stats":
            st = store.stats()
            print(f"store:          {st['root']}")
            print(f"blobs:          {st['blobs']} ({st['bytes'] / 1e6:.1f} MB)")
            print(f"action results: {st['action_results']}")
            lb = st["last_build"]
            if lb:
                remote_hits = lb.get("remote_hits", 0)
                print(f"last build:     {lb.get('actions', 0)} actions, {lb.get('executed', 0)} executed, "
                      f"{lb.get('cached', 0) - remote_hits} from the local cache, {remote_hits} from the remote "
                      f"cache, {lb.get('failed', 0)} failed, {lb.get('seconds', 0):.2f}s")
                rs = lb.get("remote")
                if rs:
                    print(f"remote cache:   {rs['url']} ({'read-write' if rs['upload'] else 'read-only'})")
                    print(f"  hits {rs['hits']}, misses {rs['misses']}, untrusted {rs['untrusted']}, "
                          f"corrupt {rs['corrupt']}, errors {rs['errors']}, uploads {rs['uploads']}")
                    print(f"  downloaded {rs['bytes_down'] / 1e6:.1f} MB, uploaded {rs['bytes_up'] / 1e6:.1f} MB")
            return ExitCode.OK
        res = store.gc(args.max_size)
        print(f"removed {res['blobs_removed']} blobs ({res['bytes_freed'] / 1e6:.1f} MB), dropped "
              f"{res['results_dropped']} action results; {res['bytes_kept'] / 1e6:.1f} MB kept")
        return ExitCode.OK
    raise AssertionError(args.command)


def _build(args: argparse.Namespace) -> ExitCode:
    renderer = Renderer(args.verbose)
    t0 = time.monotonic()
    s = _session(args, output_dir=args.output_dir, sandbox=args.sandbox, distdirs=args.distdir,
                 jobs=args.jobs, keep_going=args.keep_going, report=renderer, remote=_remote_cli(args))
    result = s.build(s.parse_labels(args.targets))
    st = result.stats
    secs = time.monotonic() - t0
    total = st.executed + st.cached
    remote = f", {st.remote} of them from the remote cache" if st.remote else ""
    print(f"hermetic: {total} actions: {st.executed} executed, {st.cached} from cache{remote} ({secs:.2f}s)",
          file=sys.stderr)
    cwd = Path.cwd()
    for label, paths in result.outputs.items():
        for p in paths:
            # a small directory output (a wheel's dist/) is shown as its files
            files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
            for f in files if 0 < len(files) <= 5 else [p]:
                shown = os.path.relpath(f, cwd) if f.is_relative_to(cwd) else str(f)
                print(f"{label}: {shown}")
    return ExitCode.OK


def _verify(args: argparse.Namespace) -> ExitCode:
    s = _session(args, sandbox=args.sandbox, distdirs=args.distdir, jobs=args.jobs, report=Renderer(),
                 remote=_remote_cli(args))
    report = s.verify(s.parse_labels(args.targets), against_cache=args.against_cache, disabled=args.no_vary,
                      diff_tool=args.diff_tool)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    counts = report.to_json()["counts"]
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    bad = [v for v in report.verdicts if v.status in ("differs", "failed")]
    out = sys.stderr if args.json else sys.stdout
    if not bad:
        print(f"hermetic verify: reproducible: {len(report.verdicts)} actions ({summary})", file=out)
        return ExitCode.OK
    print(f"hermetic verify: NOT reproducible: {summary}", file=out)
    for v in bad:
        print(f"  {v.status}: {v.action.describe()}", file=out)
    first = report.first_difference
    if first:
        print(f"first difference (in graph order): {first['action']}", file=out)
        for f in first["files"]:
            print(f"  {f['path']}: {f['change']}", file=out)
        if first["diff"]:
            print(f"how they differ ({first['tool']}):", file=out)
            for line in first["diff"].splitlines():
                print(f"  {line}", file=out)
    return ExitCode.NOT_REPRODUCIBLE


def _query(args: argparse.Namespace) -> ExitCode:
    s = _session(args)
    if args.what == "targets":
        for t in s.all_targets():
            print(t)
        return ExitCode.OK
    if not args.target:
        raise HermeticError(f"query {args.what} needs a TARGET", reason="usage")
    (label,) = s.parse_labels([args.target])
    if args.what == "deps":
        deps = s.target_deps([label])
        for t in sorted(deps):
            if t != label:
                print(t)
        return ExitCode.OK
    every = s.all_targets()
    deps = s.target_deps(every)
    rdeps: set[Any] = set()
    stack = [label]
    while stack:
        cur = stack.pop()
        for t, ds in deps.items():
            if cur in ds and t not in rdeps:
                rdeps.add(t)
                stack.append(t)
    for t in sorted(rdeps):
        print(t)
    return ExitCode.OK

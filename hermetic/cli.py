"""Command line: argument parsing, rendering events, exit codes. The only
place that catches exceptions."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
from enum import IntEnum
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hermetic import __version__, _profile
from hermetic.errors import BuildFailed, Exit, HermeticError


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


def _remote_options(p: argparse.ArgumentParser, *, executor: bool = False) -> None:
    g = p.add_argument_group("remote cache (also $HERMETIC_REMOTE_CACHE, [remote] in ~/.config/hermetic/config.toml, "
                             "[workspace.remote] in the root BUILD.toml)")
    if executor:
        g.add_argument("--remote-executor", metavar="URL",
                       help="run actions on a Remote Execution API cluster, grpc(s)://host:port (also "
                            "$HERMETIC_REMOTE_EXECUTOR, executor = in [remote]); also the remote cache unless "
                            "--remote-cache names another")
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
    g.add_argument("--min-signers", type=int, metavar="K", help="use a remote result only if K distinct trusted "
                   "keys signed its outputs (k of n; default 1; also $HERMETIC_REMOTE_MIN_SIGNERS, min_signers =)")


def _remote_cli(args: argparse.Namespace) -> dict[str, object]:
    return {"cache": args.remote_cache, "upload": args.remote_upload, "instance": args.remote_instance,
            "executor": getattr(args, "remote_executor", None),
            "upload_local_hits": args.remote_upload_local_hits,
            "timeout": args.remote_timeout, "trusted_keys": args.trusted_key,
            "signing_key": str(args.signing_key) if args.signing_key else None, "min_signers": args.min_signers}


def _display_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--explain", action="store_true",
                   help="say why each action that runs is not a cache hit (what changed since its last build)")
    p.add_argument("--progress", choices=["auto", "live", "plain"], default="auto",
                   help="auto: a live display on a terminal, plain lines elsewhere and under CI=true")
    p.add_argument("--event-log", type=Path, metavar="FILE",
                   help="write every event (action started/finished, cache hit/miss, bytes, seconds) as JSON lines")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="say more (build: also list actions served from the cache)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and hermetic's internal log")
    p = argparse.ArgumentParser(prog="hermetic", description="Hermetic, reproducible, cached builds of "
                                "Python wheels with native code.", parents=[common])
    p.add_argument("-C", "--directory", type=Path, help="run as if started in this directory")
    p.add_argument("--cache-dir", type=Path, help="local store (default $HERMETIC_CACHE_DIR or "
                   "~/.cache/hermetic)")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", parents=[common], help="build targets (fetch, compile, package, test)")
    b.add_argument("targets", nargs="+", metavar="TARGET")
    b.add_argument("-j", "--jobs", type=int, default=None,
                   help="parallel jobs (default: the number of cores; with --remote-executor 4x that, at least 8)")
    b.add_argument("-k", "--keep-going", action="store_true", help="build all that does not depend on a failure")
    b.add_argument("-o", "--output-dir", type=Path, help="where outputs go (default: <workspace>/hermetic-out)")
    b.add_argument("--sandbox", choices=["auto", "bwrap", "none"], default="auto",
                   help="how actions are isolated (default: the best the host has)")
    b.add_argument("--distdir", type=Path, action="append", default=[],
                   help="a directory of pinned downloads to use before any mirror or URL")
    b.add_argument("--platform", metavar="PLATFORM",
                   help="the platform to build for (default: the host's); a target's own platform attribute "
                        "wins. e.g. linux-x86_64-manylinux2014, linux-aarch64, musllinux-x86_64, macos-arm64, "
                        "macos-x86_64, windows-x86_64")
    b.add_argument("--report", type=Path, metavar="DIR",
                   help="write the build's page (index.html, report.json) into DIR at the end, also when it fails")
    b.add_argument("--profile", type=Path, metavar="FILE",
                   help="write where the time went as a Chrome trace-event file (Perfetto, chrome://tracing; "
                        "read it with hermetic profile FILE)")
    _display_options(b)
    _remote_options(b, executor=True)

    rp = sub.add_parser("report", parents=[common], help="a build's page: static HTML (index.html) and report.json",
                        description="Write one self-contained HTML page about a build: summary, timeline, every "
                        "action's command, environment, inputs, toolchains, key, why it ran and output; the "
                        "outputs with their sha256, provenance and SBOM; the test results. From the last build "
                        "in the store (--last) or from an --event-log file.")
    src = rp.add_mutually_exclusive_group(required=True)
    src.add_argument("--last", action="store_true", help="the last build in this store")
    src.add_argument("--event-log", type=Path, metavar="FILE", dest="from_event_log",
                     help="the build an --event-log FILE recorded (its timeline from the events' times)")
    rp.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", dest="report")
    rp.add_argument("--profile", type=Path, metavar="FILE", help="the timeline from this --profile trace")

    pf = sub.add_parser("profile", parents=[common], help="read a build's --profile: time by phase, critical path",
                        description="Summarise a trace written by hermetic build --profile: the time by phase "
                        "(key, cache lookup, input staging, sandbox, output hashing, upload, ...), the "
                        "critical path and the longest actions; or draw the timeline as SVG.")
    pf.add_argument("trace", type=Path, metavar="FILE")
    pf.add_argument("--format", choices=["text", "svg"], default="text")
    pf.add_argument("-o", "--output", type=Path, default=None, metavar="OUT",
                    help="write to OUT instead of standard output")

    v = sub.add_parser("verify", parents=[common],
                       help="rebuild without the cache, under varied conditions, and compare",
                       description="Build TARGET (cache allowed), then rebuild every action of its closure "
                       "without the cache from the same inputs and compare outputs byte for byte. By "
                       "default the rebuild varies what an action could observe (build root, uid/gid, umask, "
                       "locale, timezone, hostname, wall clock, directory order, -j). Exit status: 0 all "
                       "reproducible, 5 some action is not, 1 the build itself failed.")
    v.add_argument("targets", nargs="+", metavar="TARGET")
    v.add_argument("--against-cache", action="store_true",
                   help="compare a plain local rebuild with the results the cache holds (like guix challenge)")
    v.add_argument("--sign", type=Path, metavar="KEY",
                   help="with --against-cache: add this signing key's signature to every remote result the "
                        "rebuild reproduced (countersigning; readers can then require min_signers > 1)")
    v.add_argument("--no-vary", action="append", default=[], metavar="NAME",
                   choices=["root", "uid", "gid", "umask", "timezone", "locale", "hostname", "clock_offset",
                            "jobs", "shuffle_dirs"], help="keep this condition as in a normal build (repeatable)")
    v.add_argument("--no-deps", action="store_true",
                   help="rebuild only the actions of the named targets; what they depend on is built (or taken "
                        "from the cache) as usual and not rebuilt, as nix-build --check does")
    v.add_argument("--report", type=Path, metavar="DIR",
                   help="write the verdicts as a page (index.html, report.json) into DIR")
    v.add_argument("--diff-tool", choices=["auto", "diffoscope", "builtin"], default="auto",
                   help="how to show a difference (auto: diffoscope when installed)")
    v.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    v.add_argument("-j", "--jobs", type=int, default=None, help="parallel jobs of the first build")
    v.add_argument("--sandbox", choices=["auto", "bwrap", "none"], default="auto")
    v.add_argument("--distdir", type=Path, action="append", default=[])
    v.add_argument("--platform", metavar="PLATFORM", help="as for build")
    _display_options(v)
    _remote_options(v)

    q = sub.add_parser("query", parents=[common], help="query the target graph (Bazel's query language)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Evaluate EXPR over the workspace's target graph and print the targets.",
                       epilog="EXPR: LABEL, //..., //pkg/..., //pkg:all; deps(X[, DEPTH]) (X and what it needs), "
                       "rdeps(UNIVERSE, X[, DEPTH]) or rdeps(X), kind(REGEX, X) (by rule name), filter(REGEX, X) "
                       "(by label), attr(NAME, REGEX, X), somepath(A, B) (one path, in order), allpaths(A, B); "
                       "X + Y, X - Y, X ^ Y (union, except, intersect).\n"
                       "examples:\n  hermetic query 'deps(//wheel:linux-x86_64)'\n"
                       "  hermetic query 'kind(archive, deps(//wheel:all))'\n"
                       "  hermetic query 'somepath(//wheel:linux-x86_64, //recipes/openssl:source)'\n"
                       "The old forms `query deps|rdeps TARGET` and `query targets` still work (without TARGET).")
    q.add_argument("expr", nargs="+", metavar="EXPR")
    q.add_argument("--output", choices=["label", "label_kind", "json"], default="label")

    aq = sub.add_parser("aquery", parents=[common], help="the actions of a target: command lines, env, inputs, keys")
    aq.add_argument("target")
    aq.add_argument("--mnemonic", metavar="REGEX", help="only actions whose mnemonic matches")
    aq.add_argument("--output", choices=["text", "json"], default="text")
    aq.add_argument("--platform", metavar="PLATFORM", help="as for build")
    aq.add_argument("--sandbox", choices=["auto", "bwrap", "none"], default="auto",
                    help="as for build (the sandbox profile is part of every key)")

    w = sub.add_parser("why", parents=[common], help="why each action of TARGET ran in its last build",
                       description="For every action of TARGET's closure that did not come from the cache in "
                       "its last build, name what changed since the build before: input files (path and "
                       "digests), environment variables, arguments, toolchain identities, dependencies' outputs "
                       "(traced back to what changed upstream). Also lists source files edited since.")
    w.add_argument("target")
    w.add_argument("--json", action="store_true", help="print the explanation as JSON")
    w.add_argument("--critical-path", action="store_true",
                   help="print the longest chain of action durations in the last build instead")
    w.add_argument("--platform", metavar="PLATFORM", help="as for build")

    g = sub.add_parser("graph", parents=[common], help="a target's action (or target) graph: dot, json, svg, png",
                       description="The action graph of TARGET (or with --targets its target graph), coloured by "
                       "what each action did in its last build: executed, from the cache, from the remote "
                       "cache, failed, never built. svg and png are drawn by Graphviz's dot.")
    g.add_argument("target")
    g.add_argument("--format", choices=["dot", "json", "svg", "png"], default="dot")
    g.add_argument("--targets", action="store_true", help="draw targets and their dependencies, not actions")
    g.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here (default: stdout; png needs it "
                   "on a terminal)")
    g.add_argument("--platform", metavar="PLATFORM",
                   help="the platform to build for (default: the host's); a target's own platform attribute "
                        "wins. e.g. linux-x86_64-manylinux2014, linux-aarch64, musllinux-x86_64, macos-arm64, "
                        "macos-x86_64, windows-x86_64")

    c = sub.add_parser("clean", parents=[common], help="remove the output directory")
    c.add_argument("--expunge", action="store_true", help="also delete the local cache")

    ca = sub.add_parser("cache", parents=[common], help="the local store")
    csub = ca.add_subparsers(dest="cache_command", required=True)
    csub.add_parser("stats", parents=[common], help="size of the store and what the last build did")
    gc = csub.add_parser("gc", parents=[common], help="evict least recently used blobs")
    gc.add_argument("--max-size", type=_size, required=True, help="e.g. 2G")
    kg = csub.add_parser("keygen", parents=[common],
                         help="create an ed25519 key for signing results shared through a remote cache")
    kg.add_argument("name", help="the key's name, e.g. ci-2026 (signatures say which key made them)")
    kg.add_argument("--dir", type=Path, default=None,
                    help="where NAME.secret and NAME.pub go (default ~/.config/hermetic/keys)")

    pn = sub.add_parser("pin", parents=[common],
                        help="resolve requirements with pip's resolver and write pinned python_wheel targets")
    pn.add_argument("requirements", nargs="*", metavar="REQ", help="runtime requirements (group \"runtime\")")
    pn.add_argument("--build", action="append", default=[], metavar="REQ", help="a build requirement (group "
                                                                                 "\"build\")")
    pn.add_argument("--test", action="append", default=[], metavar="REQ", help="a test requirement (group \"test\")")
    pn.add_argument("--sdist", action="append", default=[], metavar="SDIST",
                    help="an sdist whose [build-system] requires join the build group (read, never run): "
                         "NAME==VERSION (pinned from pip's indexes as the archive target NAME-sdist), a file, "
                         "or an archive target such as //pkg:sdist")
    pn.add_argument("--test-requirements", type=Path, action="append", default=[], metavar="FILE",
                    help="a requirements file for the test group")
    pn.add_argument("--python", action="append", default=[], metavar="X.Y", help="CPython versions (repeatable; "
                                                                                 "default: this one)")
    pn.add_argument("--platform", dest="pin_platforms", action="append", default=[], metavar="TAG",
                    help="wheel platform tags of the targets, e.g. manylinux2014_x86_64 (repeatable; runtime and test "
                         "requirements are pinned for these and this machine, build requirements for this machine; "
                         "default: this machine only)")
    pn.add_argument("--dir", type=Path, default=None, help="the package the pins go to (default: pins/ under "
                                                           "the workspace root); the command owns its BUILD.toml")
    pn.add_argument("--upgrade", action="append", default=[], metavar="NAME", help="move this pin (repeatable)")

    pv = sub.add_parser("provenance", parents=[common], help="provenance of a built wheel")
    pvsub = pv.add_subparsers(dest="provenance_command", required=True)
    pvv = pvsub.add_parser("verify", parents=[common],
                           help="check a wheel's signed provenance: signer, subject, and its materials against "
                                "this workspace's pins")
    pvv.add_argument("wheel", type=Path)
    pvv.add_argument("--envelope", type=Path, default=None,
                     help="the DSSE envelope (default: WHEEL.provenance.dsse.json beside the wheel)")
    pvv.add_argument("--trusted-key", action="append", default=[], metavar="NAME:KEY",
                     help="a public key whose signature is accepted (repeatable)")

    lg = sub.add_parser("log", parents=[common],
                        help="the output (stdout/stderr) of TARGET's actions in their last build, from the store")
    lg.add_argument("target")
    lg.add_argument("--mnemonic", metavar="RE", help="only actions whose mnemonic matches, e.g. Test")
    lg.add_argument("--deps", action="store_true", help="also the actions of everything TARGET needs")

    wk = sub.add_parser("worker", parents=[common],
                        help="serve a Remote Execution cluster: run its actions in hermetic's sandbox (a bot of "
                             "BuildGrid's Remote Workers API)")
    wk.add_argument("--server", metavar="URL", default=os.environ.get("HERMETIC_REMOTE_EXECUTOR"),
                    help="grpc(s)://host:port of the Bots and CAS services (default $HERMETIC_REMOTE_EXECUTOR)")
    wk.add_argument("--instance", default="", metavar="NAME", help="REAPI instance name")
    wk.add_argument("--jobs", type=int, default=None, metavar="N",
                    help="actions to run at once (default: the number of cores)")
    wk.add_argument("--name", default=None, help="the bot id (default HOST-PID); a worker restarted with the same "
                                                 "name takes over its old session")
    wk.add_argument("--platform", action="append", default=[], metavar="KEY=VALUE",
                    help="an extra platform property to advertise (repeatable)")
    wk.add_argument("--sandbox", choices=["auto", "bwrap", "none"], default="auto")
    return p


def _print_error(exc: BaseException, debug: bool = False) -> None:
    if isinstance(exc, BaseExceptionGroup):
        for e in exc.exceptions:
            _print_error(e, debug)
        return
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    reason = getattr(exc, "reason", "error")
    print(f"error[{reason}]: {exc}", file=sys.stderr)
    hint = getattr(exc, "hint", None)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


_EXIT = {Exit.INPUT: ExitCode.BAD_INPUT, Exit.ENVIRONMENT: ExitCode.ENVIRONMENT, Exit.USAGE: ExitCode.USAGE,
         Exit.BUILD: ExitCode.BUILD_FAILED}


def _exit_for(exc: HermeticError) -> ExitCode:
    if isinstance(exc, BuildFailed):
        return ExitCode.BUILD_FAILED
    return _EXIT[exc.kind]


def quiet_grpc() -> None:
    """gRPC's own informational lines (a GOAWAY from a stopping server, ...)
    are not for users: hermetic says what a remote fault means itself. Set
    once per process, before gRPC starts (the command's entry points)."""
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the console script: this process is hermetic's
        quiet_grpc()
    args = _parser().parse_args(argv)
    args.verbose = getattr(args, "verbose", False)
    args.debug = getattr(args, "debug", False) or os.environ.get("HERMETIC_DEBUG") == "1"
    if args.debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="debug: %(name)s: %(message)s")
    try:
        return int(_run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except HermeticError as exc:
        _print_error(exc, args.debug)
        return _exit_for(exc)
    except BaseExceptionGroup as group:
        if not all(isinstance(e, HermeticError) for e in group.exceptions):
            return _internal_error(group, args)
        if args.debug:
            import traceback

            traceback.print_exception(group, file=sys.stderr)
        _print_error(group)
        return ExitCode.BAD_INPUT
    except Exception as exc:  # a bug in hermetic or a plugin, not the user's input
        return _internal_error(exc, args)


def _internal_error(exc: BaseException, args: argparse.Namespace) -> int:
    """One line for the user; the whole traceback in a file under the cache
    (to attach to a report), and inline with --debug."""
    import time
    import traceback

    text = "".join(traceback.format_exception(exc))
    if args.debug:
        print(text, file=sys.stderr, end="")
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {Path(last[0].filename).name}:{last[0].lineno}" if last else ""
    print(f"error[internal]: {type(exc).__name__}: {exc}{where}", file=sys.stderr)
    saved = None
    with contextlib.suppress(OSError):
        from hermetic._cache import default_cache_dir

        crashes = Path(getattr(args, "cache_dir", None) or default_cache_dir()) / "crash"
        crashes.mkdir(parents=True, exist_ok=True)
        saved = crashes / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}.txt"
        saved.write_text(f"hermetic {__version__}, python {sys.version.split()[0]}\n"
                         f"argv: {sys.argv}\n\n{text}")
    print("hint: this is a bug in hermetic or one of its plugins, not in your input; "
          + (f"the traceback is in {saved} (attach it to a report), or rerun with --debug" if saved else
             "rerun with --debug for the traceback and report it"), file=sys.stderr)
    return 70  # EX_SOFTWARE


def _session(args: argparse.Namespace, **kw: Any):  # type: ignore[no-untyped-def]
    from hermetic._session import Session

    return Session(args.directory, cache_dir=args.cache_dir, platform=getattr(args, "platform", None), **kw)


def _pin(args: argparse.Namespace) -> ExitCode:
    from hermetic import _pin as pins

    groups: dict[str, list[str]] = {"runtime": list(args.requirements), "build": list(args.build),
                                    "test": list(args.test)}
    from_index = []
    for sdist in args.sdist:
        if sdist.startswith(("//", ":")) or Path(sdist).exists():
            groups["build"] += pins.sdist_build_requires(_sdist_path(args, sdist))
        else:
            from_index.append(sdist)  # NAME==VERSION: pinned as an archive target too
    for f in args.test_requirements:
        groups["test"] += pins.read_requirements(f)
    if not any(groups.values()) and not from_index:
        raise pins.PinError("nothing to pin: name requirements (REQ, --build, --test, --sdist, "
                            "--test-requirements)", reason="usage")
    pythons = args.python or [f"{sys.version_info.major}.{sys.version_info.minor}"]
    platforms = args.pin_platforms  # none: this machine's only
    from hermetic._buildfile import find_workspace

    cwd = Path(args.directory or ".").resolve()
    root = find_workspace(cwd)
    out = (cwd / args.dir).resolve() if args.dir is not None else root / "pins"
    if not out.is_relative_to(root):
        raise pins.PinError(f"--dir {args.dir} is outside the workspace {root}", reason="usage")
    build = pins.pin(groups, pythons=pythons, platforms=platforms, out_dir=out, upgrade=args.upgrade,
                     say=lambda m: print(m, file=sys.stderr), package=out.relative_to(root).as_posix(),
                     sdists=from_index)
    print(f"wrote {build}")
    return ExitCode.OK


def _sdist_path(args: argparse.Namespace, sdist: str) -> Path:
    """A file as given, or what an archive target (``//pkg:sdist``) unpacks
    to: fetched by content address and checked, nothing of it run."""
    if not sdist.startswith(("//", ":")):
        return Path(sdist)
    s = _session(args)
    (label,) = s.parse_labels([sdist])
    result = s.build([label], materialize=True)
    paths = [p for p in result.outputs.get(label, []) if p.exists()]
    if not paths:
        from hermetic._pin import PinError

        raise PinError(f"--sdist {sdist}: the target has no output to read", reason="usage",
                       hint="name an archive target (rule = \"archive\") holding the sdist")
    return Path(paths[0])


def _provenance_verify(args: argparse.Namespace) -> ExitCode:
    """The signature (by a trusted key), the subject (this wheel's sha256),
    the materials (exactly the downloads this workspace pins for the
    statement's targets)."""
    import json

    from hermetic import _provenance
    from hermetic._signing import PublicKey

    wheel = args.wheel
    # beside the wheel, or beside its dist/ directory (where a build delivers them)
    near = [d / f"{wheel.name}.provenance.dsse.json" for d in (wheel.parent, wheel.parent.parent)]
    env_path = args.envelope or next((c for c in near if c.is_file()), near[0])
    if not wheel.is_file():
        raise _provenance.ProvenanceError(f"{wheel}: no such wheel", reason="usage")
    if not env_path.is_file():
        unsigned = any(c.with_name(f"{wheel.name}.provenance.json").is_file() for c in near)
        raise _provenance.ProvenanceError(
            f"{env_path}: no signed provenance" + (" (only the unsigned statement is there)" if unsigned else ""),
            reason="untrusted-provenance", hint="build with a signing key (--signing-key FILE, or signing_key in "
                                     "[workspace.remote]) to have the provenance signed")
    trusted = [PublicKey.parse(k, "--trusted-key") for k in args.trusted_key]
    try:
        env = json.loads(env_path.read_text())
    except ValueError as exc:
        raise _provenance.ProvenanceError(f"{env_path}: not JSON ({exc})", reason="usage") from exc
    stmt, signer = _provenance.open_envelope(env, trusted, str(env_path))
    s = _session(args)
    targets = stmt.get("predicate", {}).get("buildDefinition", {}).get("externalParameters", {}).get("targets", [])
    pins = s.pinned_fetches(s.parse_labels(targets))
    problems = _provenance.check(stmt, wheel, pins)
    if problems:
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        raise _provenance.ProvenanceError(f"{wheel.name}: its provenance does not match: {problems[0]}",
                                          reason="untrusted-provenance")
    print(f"{wheel.name}: provenance verified: signed by {signer}, subject sha256 matches, "
          f"{len(pins)} materials are this workspace's pins for {', '.join(targets)}")
    return ExitCode.OK


def _log(args: argparse.Namespace) -> ExitCode:
    s = _session(args)
    found = s.logs(s.parse_labels([args.target]), args.mnemonic, closure=args.deps)
    if not found:
        print(f"{args.target}: no actions" + (f" matching {args.mnemonic!r}" if args.mnemonic else ""),
              file=sys.stderr)
        return ExitCode.BAD_INPUT
    for action, entry, log in found:
        if entry is None:
            print(f"==> {action.describe()}: never built")
            continue
        how = {"executed": "ran", "cached": "from the cache", "remote": "from the remote cache",
               "failed": "FAILED"}.get(entry.get("outcome", ""), entry.get("outcome", ""))
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(entry.get("time", 0)))
        print(f"==> {action.describe()} ({how} in the build of {when}; key {entry['key'][:12]}…)")
        if log is None:
            print("    (no output in the store: the action printed nothing, failed before it could be stored, "
                  "or came from a remote cache that keeps its output)")
        else:
            sys.stdout.write(log.decode(errors="replace"))
            if log and not log.endswith(b"\n"):
                print()
    return ExitCode.OK


def _worker(args: argparse.Namespace) -> ExitCode:
    import socket

    from hermetic._cache import default_cache_dir
    from hermetic._plugins import Hooks, make_plugin_manager
    from hermetic._remote import resolve
    from hermetic.errors import RemoteError, SandboxError
    from hermetic.sandbox import LocalSandbox, SandboxConfig

    if not args.server:
        raise RemoteError("hermetic worker needs --server grpc(s)://HOST:PORT (or $HERMETIC_REMOTE_EXECUTOR)",
                          reason="usage")
    extra = []
    for item in args.platform:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise RemoteError(f'--platform "{item}" is not KEY=VALUE', reason="usage")
        extra.append((k, v))
    config = resolve({"cache": args.server, "instance": args.instance, "timeout": 30.0}, {}, "worker")
    if config is None or config.scheme not in ("grpc", "grpcs"):
        raise RemoteError(f'--server "{args.server}" is not a grpc(s):// URL', reason="usage")
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    hooks = Hooks(make_plugin_manager())
    host = hooks.host_platform()
    if host is None:
        raise SandboxError("no plugin knows this host platform", reason="no-host-platform",
                           hint="install hermetic's platform plugins (pip install -e .)")
    sandbox = LocalSandbox() if args.sandbox == "none" else hooks.sandbox(host, SandboxConfig(args.sandbox, cache_dir))
    if sandbox is None:
        raise SandboxError(f"no sandbox available on {host}", hint="install bubblewrap (apt-get install "
                           "bubblewrap), or run the worker with --sandbox=none", reason="no-sandbox")
    from hermetic import _worker

    name = args.name or f"{socket.gethostname()}-{os.getpid()}"
    _worker.run(server=config.url, instance=args.instance, name=name, jobs=args.jobs or os.cpu_count() or 1,
                cache_dir=cache_dir, hooks=hooks, host=host, sandbox=sandbox, extra=extra, config=config)
    return ExitCode.OK


def _run(args: argparse.Namespace) -> ExitCode:
    if args.command == "build":
        return _build(args)
    if args.command == "profile":
        return _profile_report(args)
    if args.command == "report":
        return _report_command(args)
    if args.command == "query":
        return _query(args)
    if args.command == "verify":
        return _verify(args)
    if args.command == "why":
        return _why(args)
    if args.command == "graph":
        return _graph(args)
    if args.command == "aquery":
        return _aquery(args)
    if args.command == "worker":
        return _worker(args)
    if args.command == "log":
        return _log(args)
    if args.command == "provenance":
        return _provenance_verify(args)
    if args.command == "pin":
        return _pin(args)
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
                          f"short of min_signers {rs.get('short', 0)}, corrupt {rs['corrupt']}, "
                          f"errors {rs['errors']}, uploads {rs['uploads']}, "
                          f"countersigned {rs.get('countersigned', 0)}")
                    print(f"  downloaded {rs['bytes_down'] / 1e6:.1f} MB, uploaded {rs['bytes_up'] / 1e6:.1f} MB")
                rx = lb.get("remote_execution")
                if rx:
                    workers = ", ".join(f"{w}: {n}" for w, n in sorted(rx["workers"].items())) or "none"
                    print(f"remote executor: {rx['url']}: {rx['executed']} actions ran there ({workers}); "
                          f"{rx['local']} ran here{' (cluster unusable: fell back)' if rx['fell_back'] else ''} "
                          "(commands; fetches, extractions and generated files are always done here)")
            return ExitCode.OK
        res = store.gc(args.max_size)
        print(f"removed {res['blobs_removed']} blobs ({res['bytes_freed'] / 1e6:.1f} MB), dropped "
              f"{res['results_dropped']} action results; {res['bytes_kept'] / 1e6:.1f} MB kept")
        return ExitCode.OK
    raise AssertionError(args.command)


@contextlib.contextmanager
def _reporter(args: argparse.Namespace) -> Iterator[Any]:
    """The progress display (live or plain) and the event log, closed after."""
    from hermetic._progress import EventLog, LiveRenderer, PlainRenderer, use_live_display

    cls = LiveRenderer if use_live_display(args.progress) else PlainRenderer
    shown = cls(verbose=args.verbose, explain=args.explain)
    report: Any = shown
    try:
        if args.event_log:
            report = EventLog(args.event_log, shown)
        yield report
    finally:
        if report is not shown:
            report.close()
        shown.close()


class _Recorder:
    """Keeps every event as ``--event-log`` would write it (for
    ``--report``), and passes it on."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: Any) -> None:
        from hermetic._progress import EventLog

        rec = EventLog.encode(event)
        if rec is not None:
            self.events.append({"time": time.time(), **rec})
        self.inner(event)


def _write_report(args: argparse.Namespace, s: Any, labels: Any, status: str, t0: float, events: list[Any],
                  prof: Any = None, outputs: Any = None, verify: Any = None) -> None:
    from hermetic import _report

    profile = _profile.Profile(prof.trace({})) if prof is not None else None
    data = _report.collect(s, labels, command="hermetic " + " ".join(sys.argv[1:]), status=status,
                           wall=time.monotonic() - t0, events=events, profile=profile, outputs=outputs, verify=verify)
    page = _report.render(data, args.report)
    print(f"hermetic: report: {page}", file=sys.stderr)


def _build(args: argparse.Namespace) -> ExitCode:
    t0 = time.monotonic()
    with _reporter(args) as report:
        recorder = _Recorder(report) if args.report else None
        s = _session(args, output_dir=args.output_dir, sandbox=args.sandbox, distdirs=args.distdir,
                     jobs=args.jobs, keep_going=args.keep_going, report=recorder or report, remote=_remote_cli(args))
        s.detailed = bool(args.report or args.profile or getattr(args, "event_log", None))
        labels = s.parse_labels(args.targets)
        with _profile.recording(args.profile, {"title": "hermetic build " + " ".join(args.targets),
                                               "targets": list(args.targets), "jobs": s.jobs},
                                keep=recorder is not None) as prof:
            try:
                result = s.build(labels)
            except HermeticError:
                if recorder is not None:
                    _write_report(args, s, labels, "failed", t0, recorder.events, prof)
                raise
    if recorder is not None:
        _write_report(args, s, labels, "ok", t0, recorder.events, prof, result.outputs)
    if args.explain:
        _print_critical_path(s, s.parse_labels(args.targets))
    st = result.stats
    secs = time.monotonic() - t0
    total = st.executed + st.cached
    remote = f", {st.remote} of them from the remote cache" if st.remote else ""
    rx = result.remote_execution
    if rx is not None:
        workers = ", ".join(f"{w} {n}" for w, n in sorted(rx.workers.items()))
        remote += f"; {rx.executed} ran on remote workers" + (f" ({workers})" if workers else "")
        if rx.disabled:
            remote += ", the rest here"
    for line in result.test_summaries:
        print(line, file=sys.stderr)
    for table in result.matrix_tables:
        print(table, file=sys.stderr)
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


def _report_command(args: argparse.Namespace) -> ExitCode:
    from hermetic import _report

    s = _session(args)
    events: list[dict[str, Any]] = []
    if args.from_event_log is not None:
        try:
            lines = args.from_event_log.read_text(encoding="utf-8").splitlines()
            events = [json.loads(ln) for ln in lines if ln.strip()]
        except (OSError, ValueError) as exc:
            raise HermeticError(f"{args.from_event_log}: not a readable event log ({exc})", reason="usage",
                                hint="write one with hermetic build --event-log FILE") from None
        started = next((e for e in events if e.get("event") == "build-started"), None)
        finished = next((e for e in events if e.get("event") == "build-finished"), None)
        if started is None:
            raise HermeticError(f"{args.from_event_log}: no build-started event: not a build's event log",
                                reason="usage", hint="write one with hermetic build --event-log FILE")
        targets = started.get("targets", [])
        status = "ok" if finished is not None and finished.get("ok") else "failed"
        wall = (finished or events[-1]).get("time", 0) - started.get("time", 0)
    else:
        last = s.last_build()
        if last is None or not last.get("targets"):
            raise HermeticError(f"no build recorded in {s.cache_dir}", reason="usage",
                                hint="build something first (hermetic build TARGET), or use --event-log FILE")
        targets, status, wall = last["targets"], "failed" if last.get("failed") else "ok", last.get("seconds", 0.0)
    labels = s.parse_labels(targets)
    profile = _profile.Profile.load(args.profile) if args.profile else None
    outputs = s.delivered(labels)
    data = _report.collect(s, labels, command="hermetic " + " ".join(sys.argv[1:]), status=status, wall=wall,
                           events=events, profile=profile, outputs=outputs)
    page = _report.render(data, args.report)
    print(f"hermetic: report: {page}", file=sys.stderr)
    return ExitCode.OK


def _profile_report(args: argparse.Namespace) -> ExitCode:
    prof = _profile.Profile.load(args.trace)
    text = _profile.svg_report(prof) if args.format == "svg" else _profile.text_report(prof) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    return ExitCode.OK


def _verify(args: argparse.Namespace) -> ExitCode:
    t0 = time.monotonic()
    with _reporter(args) as shown:
        recorder = _Recorder(shown) if args.report else None
        s = _session(args, sandbox=args.sandbox, distdirs=args.distdir, jobs=args.jobs, report=recorder or shown,
                     remote=_remote_cli(args))
        labels = s.parse_labels(args.targets)
        report = s.verify(labels, against_cache=args.against_cache,
                          disabled=args.no_vary, diff_tool=args.diff_tool, no_deps=args.no_deps, sign=args.sign)
    if recorder is not None:
        _write_report(args, s, labels, "reproducible" if report.reproducible else "not reproducible", t0,
                      recorder.events, verify=report)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    counts = report.to_json()["counts"]
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    bad = [v for v in report.verdicts if v.status in ("differs", "failed")]
    out = sys.stderr if args.json else sys.stdout
    if report.countersigned is not None:
        c = report.countersigned
        print(f"hermetic verify: countersigned {c['signed']} remote results ({c['already']} already signed by "
              f"this key, {c['differs']} not reproduced: not signed, {c['missing']} not in the remote)", file=out)
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
    from hermetic._query import Query

    words = args.expr
    if words == ["targets"]:
        expr = "//..."
    elif len(words) == 2 and words[0] in ("deps", "rdeps"):  # the first spelling: without the target itself
        expr = f"{words[0]}({words[1]}) - {words[1]}"
    elif len(words) == 1 and words[0] in ("deps", "rdeps"):
        raise HermeticError(f"query {words[0]} needs a TARGET", reason="usage",
                            hint=f"hermetic query '{words[0]}(//package:name)'")
    else:
        expr = " ".join(words)
    s = _session(args)
    graph = s.target_graph()
    q = Query(graph["deps"], graph["kinds"], graph["attrs"], lambda t: s.parse_labels([t])[0])
    result = q.evaluate(expr)
    if args.output == "json":
        print(json.dumps([{"label": str(t), "kind": graph["kinds"].get(t),
                           "deps": [str(d) for d in graph["deps"].get(t, [])]} for t in result], indent=2))
        return ExitCode.OK
    for t in result:
        print(f"{graph['kinds'].get(t)} rule {t}" if args.output == "label_kind" else t)
    return ExitCode.OK


def _graph(args: argparse.Namespace) -> ExitCode:
    import subprocess

    from hermetic._graph import dot as dot_text
    from hermetic._graph import target_digraph

    s = _session(args)
    labels = s.parse_labels([args.target])
    status = s.last_outcomes()
    if args.targets:
        graph = s.target_graph()
        owners: dict[str, set[str]] = {}
        for aid, outcome in status.items():
            owners.setdefault(aid.split("#", 1)[0], set()).add(outcome)
        tg = target_digraph(graph["deps"], graph["kinds"], set(labels), owners)
        text = dot_text(tg, legend=True)
        data: Any = {"targets": [{"label": str(t), "kind": graph["kinds"].get(t),
                                  "deps": [str(d) for d in graph["deps"].get(t, [])]} for t in sorted(tg.nodes)]}
    else:
        analysis, agraph = s.analyze(labels)
        order = agraph.closure([a for fs in analysis.top.values() for a in fs])
        text = agraph.to_dot(order, status)
        data = agraph.to_json(order, status)
    if args.format in ("dot", "json"):
        out = text if args.format == "dot" else json.dumps(data, indent=2) + "\n"
        if args.output:
            args.output.write_text(out)
        else:
            print(out, end="")
        return ExitCode.OK
    if args.output is None and args.format == "png" and sys.stdout.isatty():
        raise HermeticError("a PNG on a terminal is unreadable", reason="usage",
                            hint=f"hermetic graph {args.target} --format png -o graph.png")
    import shutil

    dot = shutil.which("dot")
    if dot is None:
        raise HermeticError(f"--format {args.format} needs Graphviz's dot, which is not on PATH",
                            reason="no-toolchain", hint="apt-get install graphviz (scripts/setup.sh does), or "
                            "use --format dot and render it elsewhere")
    done = subprocess.run([dot, f"-T{args.format}"], input=text.encode(), capture_output=True, check=False)
    if done.returncode != 0:
        raise HermeticError(f"dot failed: {done.stderr.decode(errors='replace').strip()}", reason="graphviz",
                            hint="try --format dot to see the graph text")
    if args.output:
        tmp = args.output.with_name(f".{args.output.name}.tmp")
        tmp.write_bytes(done.stdout)
        os.replace(tmp, args.output)
        print(f"{args.output}: {len(done.stdout)} bytes", file=sys.stderr)
    else:
        sys.stdout.buffer.write(done.stdout)
    return ExitCode.OK


def _aquery(args: argparse.Namespace) -> ExitCode:
    s = _session(args, sandbox=args.sandbox)
    acts = s.aquery(s.parse_labels([args.target]))
    if args.mnemonic:
        rx = re.compile(args.mnemonic)
        acts = [a for a in acts if rx.search(a.mnemonic)]
    if args.output == "json":
        print(json.dumps([a.to_json() for a in acts], indent=2))
        return ExitCode.OK
    for a in acts:
        print(f"action {a.describe}")
        print(f"  id:         {a.id}")
        print(f"  kind:       {a.kind}")
        status = {"cached": "in the cache", "would-run": "not in the cache: the next build runs it"}
        if a.key:
            print(f"  key:        {a.key} ({status[a.status]})")
        else:
            print(f"  key:        not known yet: it depends on outputs of {', '.join(a.waits_for)} "
                  f"that are not built")
        for t in a.toolchains:
            ident = ", ".join(f"{k}={v}" for k, v in list(t.identity.items())[:4])
            print(f"  toolchain:  {t.kind} {t.fingerprint[:12]} ({ident})")
        for i in a.inputs:
            digest = f" sha256:{i.hash[:12]} {i.size} bytes{' (tree)' if i.tree else ''}" \
                if i.hash else " (not built yet)"
            print(f"  input:      {i.path}{digest}")
        for o in a.outputs:
            print(f"  output:     {o}")
        for k, v in a.env.items():
            print(f"  env:        {k}={v}")
        if a.command:
            print(f"  command:    {a.command}")
        for k, v in a.params.items():
            print(f"  {k + ':':<11} {json.dumps(v)}")
        print()
    return ExitCode.OK


def _print_critical_path(s: Any, labels: list[Any], *, as_json: bool = False) -> None:
    path, total, seconds, where = s.critical_path(labels)
    if as_json:
        print(json.dumps({"seconds": round(total, 3), "actions": [
            {"id": a.id, "action": a.describe(), "seconds": round(seconds[a.id], 3), "where": where[a.id] or None}
            for a in path]}, indent=2))
        return
    busy = sum(seconds.values())
    if not busy:
        print("critical path: nothing ran in the last build (everything came from a cache, or it was never built); "
              "`hermetic why` says which")
        return
    print(f"critical path: {len(path)} actions, {total:.1f}s of the last build's {busy:.1f}s of action time"
          + (f" ({total / busy:.0%})" if busy else ""))
    for a in path:
        on = where[a.id]
        print(f"  {seconds[a.id]:7.1f}s  {a.describe()}"
              + (f"  (remote worker {on[len('remote:'):]})" if on.startswith("remote:") else ""))


def _why(args: argparse.Namespace) -> ExitCode:
    from hermetic._history import describe

    s = _session(args)
    if args.critical_path:
        _print_critical_path(s, s.parse_labels([args.target]), as_json=args.json)
        return ExitCode.OK
    report = s.why(s.parse_labels([args.target]))
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return ExitCode.OK
    acts = report.actions
    ran = [a for a in acts if a.outcome in ("executed", "failed")]
    never = [a for a in acts if a.outcome == "never-built"]
    cached = [a for a in acts if a.outcome in ("cached", "remote")]
    when = max((a.time for a in acts if a.time), default=None)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when)) if when else "never"
    print(f"{args.target}: {len(acts)} actions; last built {stamp}: {len(ran)} ran, {len(cached)} from the cache"
          + (f", {len(never)} never built" if never else ""))
    for a in ran:
        secs = f" ({a.seconds:.1f}s)" if a.seconds else ""
        if a.where and a.where.startswith("remote:"):
            secs += f" on remote worker {a.where[len('remote:'):]}"
        verb = "FAILED" if a.outcome == "failed" else "ran"
        print(f"{verb} {a.action}{secs} because:")
        for r in a.reasons:
            print(f"    {describe(r)}")
            for c in r.get("because") or []:
                print(f"      <- {describe(c)}")
    if not ran and not never:
        print(f"everything was cached: all {len(acts)} actions came from the cache in their last build")
    for a in never:
        print(f"never built: {a.action}")
    edited = {(e["path"], e["new"]["hash"] if e["new"] else None): e for a in acts for e in a.edited_since}
    if edited:
        print("edited since the last build (the next build reruns what reads them):")
        for e in edited.values():
            print(f"    {describe(e)}")
    return ExitCode.OK

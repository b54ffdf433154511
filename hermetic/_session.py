"""One invocation's worth of state: workspace, plugins, store, sandbox; the
steps load -> analyze -> execute -> deliver outputs."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from hermetic._analysis import Analysis, Analyzer, load
from hermetic._buildfile import Workspace, find_workspace
from hermetic._cache import Store, default_cache_dir
from hermetic._execution import BuildStats, Executor
from hermetic._execution import plan as _plan
from hermetic._fetch import FetchResolver
from hermetic._history import History
from hermetic._plugins import Hooks, make_plugin_manager
from hermetic.errors import HermeticError, SandboxError
from hermetic.events import (ActionFinished, BuildFinished, BuildStarted, Event, Note, Report, VerifyBegun,
                             ignore)
from hermetic.fetch import FetcherRegistry
from hermetic.model import Digest, Label, Platform
from hermetic.rules import RuleRegistry
from hermetic.sandbox import LocalSandbox, Sandbox, SandboxConfig

if TYPE_CHECKING:
    from hermetic import _answers



@attrs.frozen
class BuildResult:
    outputs: dict[Label, list[Path]]
    stats: BuildStats
    output_dir: Path
    #: the build's hermetic._remote_exec.RemoteExecutor (its counters), or None
    remote_execution: Any = None
    #: "<target>: test report: ..." for each test action of the targets asked for
    test_summaries: tuple[str, ...] = ()
    #: the summary table of each wheel matrix built (markdown), also written beside its cells
    matrix_tables: tuple[str, ...] = ()


#: default -j per local core when actions run on a remote executor: the local
#: machine only uploads, waits and downloads (actions that fall back to running
#: here still take at most one slot per core)
REMOTE_JOBS_PER_CORE = 4

class Session:
    def __init__(self, cwd: Path | None = None, *, cache_dir: Path | None = None, output_dir: Path | None = None,
                 sandbox: str = "auto", distdirs: Sequence[Path] = (), jobs: int | None = None,
                 keep_going: bool = False, report: Report | None = None, plugins: Sequence[Any] = (),
                 load_entry_points: bool = True, remote: Mapping[str, Any] | None = None,
                 platform: str | Platform | None = None, incremental: bool = True) -> None:
        self.cwd = (cwd or Path.cwd()).resolve()
        self.root = find_workspace(self.cwd)
        self.ws = Workspace(self.root)
        self.hooks = Hooks(make_plugin_manager(load_entry_points=load_entry_points, extra=tuple(plugins)))
        self.registry = RuleRegistry()
        self.hooks.register_rules(self.registry)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.output_dir = Path(output_dir) if output_dir else self.root / "hermetic-out"
        self.sandbox_mode = sandbox
        self.distdirs = [Path(d) for d in distdirs]
        #: -j as given (None: the default, which depends on whether actions run remotely)
        self.jobs_asked = jobs
        self._analyses: dict[tuple[Label, ...], tuple[Analysis, Any]] = {}
        self.jobs = jobs or os.cpu_count() or 1
        self.keep_going = keep_going
        self.report = report or ignore
        host = self.hooks.host_platform()
        if host is None:
            raise HermeticError("no plugin knows this host platform", reason="no-host-platform",
                                hint="install hermetic's platform plugins (pip install -e .)")
        self.host: Platform = host
        #: what to build for, unless a target says otherwise (--platform)
        self.platform: Platform = Platform.parse(platform) if isinstance(platform, str) else (platform or host)
        self._store: Store | None = None
        self.remote_cli = dict(remote or {})
        self._remote: Any = None
        #: reuse what an unchanged workspace already did (the analysis cache,
        #: the action log, the no-op record): :mod:`hermetic._incremental`
        self.incremental = incremental
        #: a consumer wants every action's events and timings (--report, --profile,
        #: --event-log): no shortcut of hermetic._incremental is taken
        self.detailed = False
        #: labels -> the digest of their analysis's stamp (when kept)
        self.stamps: dict[tuple[Label, ...], str] = {}
        #: the build record the no-op check found for this analysis, for the build to prune by
        self._prior: dict[str, Any] | None = None
        self._stamp_checks: dict[tuple[Label, ...], str | None] = {}

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.cache_dir)
        return self._store

    def parse_labels(self, texts: Sequence[str]) -> list[Label]:
        try:
            base = str(self.cwd.relative_to(self.root))
        except ValueError:
            base = ""
        return [Label.parse(t, "" if base == "." else base) for t in texts]

    def analyze(self, labels: Sequence[Label]) -> tuple[Analysis, Any]:
        """*labels*' analysis and action graph, once per session (a report
        after a build asks for them again), from the store's analysis cache
        when nothing it read has changed (:mod:`hermetic._incremental`)."""
        known = self._analyses.get(tuple(labels))
        if known is not None:
            return known
        from hermetic import _incremental as inc
        from hermetic._graph import ActionGraph

        cache = self._analysis_cache(labels) if self.incremental else None
        if cache is not None:
            stamp = self._valid_stamp(labels)
            hit = cache.load() if stamp else None
            if hit is not None:
                self.stamps[tuple(labels)] = stamp
                self._analyses[tuple(labels)] = hit
                return hit  # type: ignore[no-any-return]
        made: list[Any] = []
        with inc.gc_paused(lambda: len(made[0].actions) if made else 0):
            loaded = load(self.ws, self.registry, labels)
            analyzer = Analyzer(self.ws, self.registry,
                                lambda kind, plat: self.hooks.toolchain(kind, plat, self.host, self.cache_dir),
                                self.host)
            analysis = analyzer.run(loaded, labels, self.platform)
            made.append(analysis)
            result = self._analyses[tuple(labels)] = (analysis, ActionGraph(analysis.actions))
            result[1].closure(a for files in analysis.top.values() for a in files)  # kept with it
            if len(analysis.actions) >= inc.FREEZE_AT:
                del loaded
                self.ws.forget_targets()
        if cache is not None:
            reads = inc.Reads()
            reads.build_files = dict(self.ws.build_files)
            reads.globs = dict(self.ws.globs)
            reads.env = dict(analyzer.env_reads)
            reads.toolchains = dict(analyzer.toolchain_reads)
            stamp = cache.save(self._code_signature, self.ws.config.source_date_epoch, reads, result)
            if stamp:
                self.stamps[tuple(labels)] = stamp
        return result

    def _analysis_cache(self, labels: Sequence[Label]) -> Any:
        from hermetic._incremental import AnalysisCache

        return AnalysisCache(self.cache_dir, {"root": str(self.root), "labels": [str(t) for t in labels],
                                              "platform": str(self.platform), "host": str(self.host)})

    def _valid_stamp(self, labels: Sequence[Label]) -> str | None:
        """The digest of *labels*' stored analysis stamp if it still holds;
        checked once per session (the no-op check and the analysis that
        follows when it fails ask the same question)."""
        key = tuple(labels)
        if key not in self._stamp_checks:
            self._stamp_checks[key] = self._analysis_cache(labels).valid_stamp(
                self._code_signature, self.ws.config.source_date_epoch, _Now(self))
        return self._stamp_checks[key]

    @functools.cached_property
    def _code_signature(self) -> str:
        """hermetic's and the plugins' code (:func:`hermetic._incremental.code_signature`)."""
        import hermetic
        from hermetic._incremental import code_signature

        plugins = list(self.hooks.pm.get_plugins())
        rules = [r for r in map(self.registry.get, self.registry.names()) if r is not None]
        # a plugin object or a rule closing over values is that object, not only its module's code
        names = sorted(str(n) for n, _ in self.hooks.pm.list_name_plugin())
        closures = sorted(f"{r.name}:{id(r.impl)}" for r in rules if getattr(r.impl, "__closure__", None))
        disabled = os.environ.get("HERMETIC_DISABLE_PLUGINS", "")
        return code_signature([hermetic, *plugins, *(r.impl for r in rules)]) + \
            ":" + hashlib.sha256(repr((names, closures, disabled)).encode()).hexdigest()[:16]

    def remote(self) -> Any:
        """The RemoteCache for this invocation, or None (no remote configured)."""
        if self._remote is None:
            from hermetic._remote import RemoteCache, resolve

            config = resolve(self.remote_cli, self.ws.config.raw.get("remote", {}),
                             f"{self.root / 'BUILD.toml'} [workspace.remote]")
            self._remote = False if config is None else RemoteCache(config, self.store, report=self.report)
        return self._remote or None

    def remote_executor(self, sandbox: Sandbox) -> Any:
        """The RemoteExecutor for this build, or None (no executor configured)."""
        cache = self.remote()
        if cache is None or not cache.config.executor:
            return None
        from hermetic._remote_exec import RemoteExecutor

        return RemoteExecutor(cache.config, self.store, cache, os_name=self.host.os,
                              sandbox_profile=sandbox.profile(), source_date_epoch=self.ws.config.source_date_epoch,
                              report=self.report)

    def sandbox(self) -> Sandbox:
        if self.sandbox_mode == "none":
            return LocalSandbox()
        sb = self.hooks.sandbox(self.host, SandboxConfig(self.sandbox_mode, self.cache_dir))
        if sb is None:
            raise SandboxError(
                f"no sandbox available on {self.host} (asked for {self.sandbox_mode!r})",
                hint="install bubblewrap (apt-get install bubblewrap), or pass --sandbox=none to run "
                     "actions unisolated (results are keyed apart and are not hermetic)",
                reason="no-sandbox")
        return sb

    def _fetch_resolver(self) -> FetchResolver:
        registry = FetcherRegistry()
        self.hooks.register_fetchers(registry)
        return FetchResolver(self.store, registry, self.distdirs, report=self.report)

    def build(self, labels: Sequence[Label], *, use_cache: bool = True, materialize: bool = True) -> BuildResult:
        incremental = self.incremental and use_cache and materialize
        if incremental and not self.detailed:
            known = self._unchanged_build(labels)
            if known is not None:
                return known
        analysis, graph = self.analyze(labels)
        goals = [a for files in analysis.top.values() for a in files]
        order = graph.closure(goals)
        store = self.store
        remote = self.remote() if use_cache else None
        sandbox = self.sandbox()
        executor = self.remote_executor(sandbox) if use_cache else None
        jobs = self.jobs
        if executor is not None and self.jobs_asked is None:
            jobs = max(8, REMOTE_JOBS_PER_CORE * (os.cpu_count() or 1))
        stamp = self.stamps.get(tuple(labels))
        log = None
        if self.incremental and use_cache and stamp and remote is None and executor is None and not self.detailed:
            from hermetic._incremental import ActionLog

            log = ActionLog(store.root, stamp, sandbox.profile(), self.ws.config.source_date_epoch)
        with store.locked():
            ex = Executor(store=store, sandbox=sandbox, fetcher=self._fetch_resolver(),
                          sources=analysis.sources, jobs=jobs, keep_going=self.keep_going,
                          source_date_epoch=self.ws.config.source_date_epoch, report=self.report,
                          use_cache=use_cache, goals=goals, remote=remote, producer=graph.producer.get,
                          history=History(store.root) if use_cache else None, remote_executor=executor,
                          local_jobs=self.jobs, log=log)
            todo, deps, frontier = order, graph.deps, None
            prior, self._prior = self._prior, None
            if log is not None and prior is not None and prior["stamp"] == stamp:
                from hermetic._incremental import Frontier

                frontier = Frontier(ex, order, graph, prior)  # only what a change reaches
                todo, waits = frontier.initial, frontier.waits
                deps = lambda a: [graph.actions[i] for i in waits[a.id]]  # noqa: E731
            self.report(BuildStarted(len(order), labels))
            try:
                stats = ex.execute(todo, deps, frontier)
            finally:
                self._save_stats(ex, order, labels)
                if remote is not None and remote.stats.short:
                    self.report(Note(f"{remote.stats.short} remote result(s) fell short of min_signers = "
                                     f"{remote.config.min_signers} (fewer trusted keys signed their outputs; "
                                     "each is named above): built here"))
                self.report(BuildFinished(ex.stats, len(order)))
            outputs: dict[Label, list[Path]] = {}
            if materialize:
                for label, files in analysis.top.items():
                    paths = []
                    for art in files:
                        dest = self.output_dir / art.path.removeprefix("out/")
                        ex.deliver(art, dest)
                        paths.append(dest)
                        paths += self._provenance(art, dest, labels, graph, ex, analysis.sources)
                    outputs[label] = paths
            store.save_digests()
        self.executor = ex
        tables = self._matrix_tables(analysis, ex, labels) if materialize else ()
        result = BuildResult(outputs, stats, self.output_dir, executor,
                             self._test_summaries(ex, order, labels, goals), tables)
        if log is not None and incremental and not tables:
            self._record_build(labels, stamp, ex, order, goals, result)
        return result

    # -- the no-op shortcut (hermetic._incremental) ----------------------------------------

    def _build_record(self, labels: Sequence[Label]) -> Any:
        from hermetic._incremental import BuildRecord

        return BuildRecord(self.store.root, {"root": str(self.root), "labels": [str(t) for t in labels],
                                             "platform": str(self.platform), "host": str(self.host),
                                             "output_dir": str(self.output_dir.resolve())})

    def _record_build(self, labels: Sequence[Label], stamp: str | None, ex: Executor, order: Sequence[Any],
                      goals: Sequence[Any], result: BuildResult) -> None:
        """What this build depended on and delivered, for the next one to
        find it all unchanged without analysing anything."""
        from hermetic._incremental import delivered_files, source_state

        entries, store, logged = ex.artifacts.entries, self.store, ex.log.entries
        data = {"stamp": stamp, "sandbox": ex.sandbox_profile, "actions": len(order), "keys": ex.keys,
                "results": {k: logged[aid][2] if aid in ex.logged else store.action_size(k)
                            for aid, k in ex.keys.items()},
                "sources": {str(host): source_state(entries[rel]) for rel, host in ex.artifacts.sources.items()
                            if rel in entries},
                "goals": [[entries[g.path].hash, entries[g.path].size] for g in goals if g.path in entries],
                "outputs": {str(label): [str(p) for p in paths] for label, paths in result.outputs.items()},
                "files": delivered_files(p for paths in result.outputs.values() for p in paths),
                "tests": list(result.test_summaries), "last_build": None, "signer": self._signer()}
        self._build_record(labels).write(data)

    def _unchanged_build(self, labels: Sequence[Label]) -> BuildResult | None:
        """The build's result without analysing or scheduling anything, if
        the last build of *labels* into this output directory is still what
        everything is: the analysis's stamp holds, every source file has its
        digest, every delivered file is as delivered, the goals' blobs are
        in the store, no remote is configured. None: build."""
        from hermetic._incremental import source_entry, source_state, stat_sig, still_delivered

        t0 = time.monotonic()
        record = self._build_record(labels)
        rec = record.read()
        if rec is None or self.remote() is not None:
            return None
        stamp = self._valid_stamp(labels)
        if stamp is None or stamp != rec["stamp"] or rec["sandbox"] != self.sandbox().profile():
            return None
        self._prior = rec  # the build prunes what no change reaches by it
        if rec.get("signer") != self._signer():  # provenance is signed by another key now, or unsigned
            return None
        store = self.store
        with store.locked():
            if any(source_state(source_entry(store, Path(host))) != h for host, h in rec["sources"].items()):
                return None
            if not still_delivered(rec["files"]) or \
                    not all(store.has_blob(Digest(h, size)) for h, size in rec["goals"]) or \
                    any(store.action_size(k) != size for k, size in rec["results"].items()):
                return None  # (a result dropped or damaged since: the build finds and redoes it)
            n = int(rec["actions"])
            self.report(BuildStarted(n, labels))
            stats = BuildStats(0, n, 0, 0, time.monotonic() - t0, 0)
            self.report(BuildFinished(stats, n))
            last = self.store.root / "last-build.json"
            if rec.get("last_build") is None or rec["last_build"] != stat_sig(str(last)):
                History(store.root).mark_cached(rec["keys"])
                with contextlib.suppress(OSError):
                    last.write_text(json.dumps({
                        "time": time.time(), "actions": n, "executed": 0, "cached": n, "remote_hits": 0,
                        "failed": 0, "seconds": stats.seconds, "keys": rec["keys"], "workspace": str(self.root),
                        "targets": [str(t) for t in labels]}))
                    rec["last_build"] = stat_sig(str(last))
                    record.write(rec)
            store.save_digests()
        outputs = {Label.parse(label): [Path(p) for p in paths] for label, paths in rec["outputs"].items()}
        return BuildResult(outputs, stats, self.output_dir, None, tuple(rec["tests"]), ())

    def _matrix_tables(self, analysis: Any, ex: Executor, labels: Sequence[Label]) -> tuple[str, ...]:
        """Each wheel matrix's summary: per cell the wheel, its tag and size,
        the test totals (the report's last line: pytest's own words), this
        build's time for the cell's actions and whether they came from a
        cache. Written to ``summary.md`` beside the cells."""
        from hermetic.providers import MatrixInfo

        def where(ids: Sequence[str]) -> str:
            w = {ex.where.get(i, "") for i in ids if i}
            return "cached" if w == {"cache"} else "remote cache" if w <= {"cache", "remote-cache"} else "built"

        tables = []
        for (label, _platform), providers in analysis.providers.items():
            info = next((p for p in providers if isinstance(p, MatrixInfo)), None)
            if info is None or label not in labels:
                continue
            rows = ["| cell | python | wheel | tag | size | tests | time | cache |",
                    "|---|---|---|---|---|---|---|---|"]
            for c in info.cells:
                dist = self.output_dir / c.dist.path.removeprefix("out/")
                wheels = sorted(dist.glob("*.whl"))
                name = wheels[0].name if wheels else "(none)"
                tag = "-".join(name.removesuffix(".whl").split("-")[-3:]) if wheels else ""
                size = f"{wheels[0].stat().st_size / 1024:.0f} KiB" if wheels else ""
                tests = "not run"
                if c.report is not None:
                    report = self.output_dir / c.report.path.removeprefix("out/")
                    lines = report.read_text(errors="replace").splitlines() if report.is_file() else []
                    tests = lines[-1] if lines else "no report"
                ids = (*c.build, c.test)
                secs = sum(ex.seconds.get(i, 0.0) for i in ids if i)
                rows.append(f"| {c.name} | {c.python} | {name} | {tag} | {size} | {tests} | {secs:.1f}s "
                            f"| {where(ids)} |")
            table = f"{label} ({len(info.cells)} cells)\n" + "\n".join(rows) + "\n"
            dest = self.output_dir / info.summary
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(table)
            tables.append(table)
        return tuple(tables)

    def _test_summaries(self, ex: Executor, order: Sequence[Any], labels: Sequence[Label],
                        goals: Sequence[Any]) -> tuple[str, ...]:
        """The last "test report:" line each test action of *labels* printed
        (from its stored log; this build's or the cached one's)."""
        lines = []
        goal_paths = {g.path for g in goals}
        wanted = set(labels) | {a.owner for a in order if any(o.path in goal_paths for o in a.outputs)}
        for a in order:
            if not a.mnemonic.endswith("Test") or a.owner not in wanted or a.id not in ex.keys:
                continue
            log = self._stored_log(ex.keys[a.id])
            found = [ln for ln in (log or b"").decode(errors="replace").splitlines() if ln.startswith("test report:")]
            if found:
                lines.append(f"{a.owner}: {found[-1]}")
        return tuple(lines)

    def _provenance(self, art: Any, dest: Path, labels: Sequence[Label], graph: Any, ex: Executor,
                    sources: Mapping[str, Path]) -> list[Path]:
        """Provenance, SBOM and a hash-pinned requirement beside every wheel
        the build delivers (see :mod:`hermetic._provenance`)."""
        from hermetic import _provenance

        wheels = [dest] if dest.suffix == ".whl" else sorted(dest.glob("*.whl")) if dest.is_dir() else []
        root = graph.producer.get(art.path)
        if not wheels or root is None or root.kind != "run":  # built here, not a pinned download
            return []
        closure = graph.closure([art])
        read = ex.artifacts.source_hashes(i.path for a in closure for i in a.inputs)
        written = []
        for wheel in wheels:
            written += _provenance.write(
                wheel, dest.parent if dest.is_dir() else dest.parent, targets=[str(t) for t in labels],
                platform=str(root.platform or self.platform), closure=closure, keys=ex.keys, root=root,
                sources=read, sandbox=ex.sandbox_profile, source_date_epoch=self.ws.config.source_date_epoch,
                signing_key=self.provenance_key)
        return written

    def _signer(self) -> str | None:
        """The public key that signs provenance beside the wheels (None: unsigned)."""
        key = self.provenance_key
        return str(key.public()) if key is not None else None

    @functools.cached_property
    def provenance_key(self) -> Any:
        """The key that signs provenance: the workspace's signing key (``--signing-key`` or
        ``signing_key`` in ``[workspace.remote]``), or None (provenance unsigned)."""
        from hermetic._signing import SecretKey

        path = self.remote_cli.get("signing_key") or self.ws.config.raw.get("remote", {}).get("signing_key")
        return SecretKey.load(Path(str(path)).expanduser()) if path else None

    def pinned_fetches(self, labels: Sequence[Label]) -> dict[str, str]:
        """File name -> sha256 of every pinned download *labels* are built from
        (their whole closure: sources, wheels, toolchain packages)."""
        analysis, graph = self.analyze(labels)
        order = graph.closure([a for files in analysis.top.values() for a in files])
        return {a.params["name"]: a.params["sha256"] for a in order if a.kind == "fetch"}

    def verify(self, labels: Sequence[Label], *, against_cache: bool = False, disabled: Sequence[str] = (),
               diff_tool: str = "auto", no_deps: bool = False, sign: Path | None = None) -> Any:
        """Build *labels* (cache allowed), then rebuild every action of the
        closure without the cache and compare; see :mod:`hermetic._verify`.
        *no_deps*: rebuild only the actions *labels* declare themselves.
        *sign* (with *against_cache*): this builder's signing key; every
        remote result its rebuild reproduced gets its signature added
        (countersigning), and the reference is any result at least one
        trusted key signed, whatever ``min_signers`` says (it is what is
        being checked)."""
        from hermetic._verify import Verifier, VerifyReport, conditions, variation_for

        if sign is not None:
            if not against_cache:
                raise HermeticError("verify --sign needs --against-cache: a signature vouches that this "
                                    "builder reproduced what the remote cache holds", reason="usage",
                                    hint="hermetic verify TARGET --against-cache --remote-cache URL --sign KEY")
            self.remote_cli.update(signing_key=str(sign), min_signers=1)
            self._remote = None
            if self.remote() is None or not self.remote().config.upload:
                raise HermeticError("verify --sign adds signatures to a remote cache's results: no writable "
                                    "remote cache is configured", reason="usage",
                                    hint="--remote-cache URL (and not --remote-upload false)")

        analysis, graph = self.analyze(labels)
        goals = [a for files in analysis.top.values() for a in files]
        order = graph.closure(goals)
        store = self.store
        sandbox = self.sandbox()
        ran: set[str] = set()

        def track(event: Event) -> None:
            if isinstance(event, ActionFinished) and not event.cached:
                ran.add(event.action.id)
            self.report(event)

        with store.locked():
            common = dict(store=store, sandbox=sandbox, fetcher=self._fetch_resolver(), sources=analysis.sources,
                          jobs=self.jobs, source_date_epoch=self.ws.config.source_date_epoch)
            ref = Executor(**common, report=track, goals=goals, remote=self.remote(),  # type: ignore[arg-type]
                           producer=graph.producer.get, history=History(store.root))
            self.report(BuildStarted(len(order), labels))
            try:
                ref.execute(order, graph.deps)
            finally:
                self._save_stats(ref, order, labels)
                self.report(BuildFinished(ref.stats, len(order)))
            ref.artifacts.ensure_all_local()  # every action is rebuilt: its inputs must be here
            if against_cache:
                variation, applied, skipped = None, {}, {}
            else:
                variation = variation_for(self.jobs, disabled)
                applied, skipped = conditions(variation, sandbox, disabled)
            # the rebuild reads the reference build's inputs: a difference is blamed on one action
            rebuild = Executor(**common, use_cache=False, variation=variation,  # type: ignore[arg-type]
                               artifacts=ref.artifacts)
            verifier = Verifier(reference=ref, rebuild=rebuild, store=store, ran=ran, report=self.report,
                                diff_tool=diff_tool)
            own = set(labels)
            checked = [a for a in order if a.owner in own] if no_deps else order
            if not checked:
                raise HermeticError(f"verify --no-deps: {', '.join(map(str, labels))} declare no actions of "
                                    "their own (an alias or a group?)", reason="usage",
                                    hint="name the targets whose actions should be rebuilt")
            self.report(VerifyBegun(len(checked), applied, skipped, against_cache))
            verdicts = verifier.run(checked, against_cache=against_cache)
            report = VerifyReport("against-cache" if against_cache else "vary", [str(t) for t in labels],
                                  applied, skipped, verdicts)
            first = next((v for v in verdicts if v.status == "differs"), None)
            if first is not None:
                report.first_difference = verifier.explain(first)
            if sign is not None:
                report.countersigned = self._countersign(ref, verdicts)
            store.save_digests()
        return report

    def _countersign(self, ref: Executor, verdicts: Sequence[Any]) -> dict[str, int]:
        """Add this builder's signature to the remote's result of every
        action its rebuild reproduced (a pinned download: whose bytes are
        the pin); a result it could not reproduce is dropped from the local
        store, so it is not used here either."""
        remote, counts = self.remote(), {"signed": 0, "already": 0, "differs": 0, "missing": 0}
        for v in verdicts:
            if v.status == "differs":
                self.store.drop_action(v.key)
                counts["differs"] += 1
                continue
            if v.status not in ("reproducible", "pinned") or v.action.id not in ref.materials:
                continue
            outputs = {o.path: ref.entries[o.path].to_json() for o in v.action.outputs if o.path in ref.entries}
            outcome = remote.countersign(v.key, len(ref.materials[v.action.id]), {"outputs": outputs},
                                         v.action.describe())
            counts[outcome if outcome in counts else "missing"] += 1
        return counts

    def why(self, labels: Sequence[Label]) -> _answers.WhyReport:
        """Why each action of *labels*' closure ran (or not) in its last
        build, from the store's history; plus source files edited since."""
        from hermetic._answers import ActionWhy, WhyReport

        analysis, graph = self.analyze(labels)
        order = graph.closure([a for files in analysis.top.values() for a in files])
        history = History(self.store.root)
        actions = []
        for a in order:
            entry = history.entry(a.id)
            common = dict(id=a.id, action=a.describe(), mnemonic=a.mnemonic, owner=str(a.owner))
            if entry is None:
                actions.append(ActionWhy(**common, outcome="never-built"))
                continue
            edited = self._edited_since(history.ingredients_of(entry["key"]), analysis.sources)
            actions.append(ActionWhy(**common, outcome=entry["outcome"], key=entry["key"], time=entry["time"],
                                     seconds=entry.get("seconds"), reasons=tuple(entry.get("reasons") or ()),
                                     edited_since=tuple(edited), where=entry.get("where")))
        return WhyReport(tuple(str(t) for t in labels), tuple(actions))

    def logs(self, labels: Sequence[Label], mnemonic: str | None = None,
             closure: bool = False) -> list[tuple[Any, dict[str, Any] | None, bytes | None]]:
        """The output (stdout and stderr, as the action wrote them) of each
        action of *labels* (with *closure*, of everything they need) in its
        last build, from the store: (action, its history entry, the log or
        None when the store has none: never built, or a remote result whose
        log stayed remote)."""
        import re

        analysis, graph = self.analyze(labels)
        order = graph.closure([a for files in analysis.top.values() for a in files])
        if not closure:
            owners = _owners(analysis, graph, labels)
            order = [a for a in order if a.owner in owners]
        if mnemonic:
            pattern = re.compile(mnemonic)
            order = [a for a in order if pattern.search(a.mnemonic)]
        history = History(self.store.root)
        out: list[tuple[Any, dict[str, Any] | None, bytes | None]] = []
        for a in order:
            entry = history.entry(a.id)
            log = None
            if entry and entry.get("outcome") == "failed" and entry.get("log"):  # kept by the failed run
                h, _, size = str(entry["log"]).partition(":")
                log = self._blob(h, int(size)) if size.isdigit() else None
            elif entry:
                log = self._stored_log(entry["key"])
            out.append((a, entry, log))
        return out

    def _stored_log(self, key: str) -> bytes | None:
        """The log of the result the store holds for *key* (None: no result, no log)."""
        result = self.store.get_action(key)
        if not result or not result.get("log"):
            return None
        return self._blob(result["log"]["hash"], result["log"]["size"])

    def _blob(self, digest: str, size: int) -> bytes | None:
        """A blob of the store, or None when it is gone (collected)."""
        try:
            return self.store.read_bytes(Digest(digest, size))
        except HermeticError:
            return None

    def critical_path(self, labels: Sequence[Label]) -> tuple[list[Any], float, dict[str, float], dict[str, str]]:
        """The longest chain of action durations in the last build of
        *labels* (cached actions count 0 s): the actions, their total, every
        action's seconds and where each ran."""
        from hermetic._graph import critical_path

        analysis, graph = self.analyze(labels)
        order = graph.closure([a for files in analysis.top.values() for a in files])
        history = History(self.store.root)
        seconds, where = {}, {}
        for a in order:
            entry = history.entry(a.id) or {}
            seconds[a.id] = float(entry.get("seconds") or 0.0) if entry.get("outcome") == "executed" else 0.0
            where[a.id] = str(entry.get("where") or "")
        path, total = critical_path(order, graph.deps, seconds)
        return path, total, seconds, where

    def last_outcomes(self) -> dict[str, str]:
        """Action id -> what it did in its last build (executed, cached,
        remote, failed), from the store's history."""
        return History(self.store.root).outcomes()

    def target_graph(self) -> dict[str, Any]:
        """Every target of the workspace: deps, rule kinds, attributes."""
        loaded = load(self.ws, self.registry, self.all_targets())
        return {"deps": loaded.deps, "kinds": {t: d.rule for t, d in loaded.decls.items()},
                "attrs": {t: d.values for t, d in loaded.decls.items()}}

    def aquery(self, labels: Sequence[Label]) -> list[_answers.PlannedAction]:
        """The actions of *labels*' closure as a build would see them now:
        command line, env, inputs with digests, outputs, toolchains, key."""
        from hermetic._answers import InputDigest, PlannedAction, ToolchainIdentity

        analysis, graph = self.analyze(labels)
        order = graph.closure([a for files in analysis.top.values() for a in files])
        ex = Executor(store=self.store, sandbox=self.sandbox(), fetcher=self._fetch_resolver(),
                      sources=analysis.sources, jobs=self.jobs, source_date_epoch=self.ws.config.source_date_epoch,
                      producer=graph.producer.get)
        plan = _plan(ex, order)
        out = []
        for a in order:
            known = ex.artifacts.entries
            inputs = tuple(InputDigest(i.path, *attrs.astuple(known[i.path])) if i.path in known
                           else InputDigest(i.path) for i in a.inputs)
            params = dict(a.params or {})
            run: dict[str, Any] = {}
            if a.kind == "run":
                run = dict(command=_command_text(params.pop("argv")), env=params.pop("env"),
                           platform=str(a.platform) if a.platform else None,
                           toolchains=tuple(ToolchainIdentity(t.kind, t.fingerprint, t.identity)
                                            for t in a.toolchains))
            elif a.kind == "write" and len(params.get("content", "")) > 200:
                params["content"] = params["content"][:200] + "..."
            p = plan[a.id]
            out.append(PlannedAction(a.id, a.describe(), a.mnemonic, a.kind, str(a.owner), a.config, p.key, p.status,
                                     p.waits_for, inputs, tuple(o.path for o in a.outputs), params, **run))
        return out

    def _edited_since(self, ingr: dict[str, Any] | None, sources: Mapping[str, Path]) -> list[dict[str, Any]]:
        """Source inputs whose bytes differ from when the action last ran."""
        out = []
        for path, e in ((ingr or {}).get("inputs") or {}).items():
            host = sources.get(path)
            if host is None:
                continue
            try:
                d = self.store.source_digest(host)
            except OSError:
                out.append({"type": "input-removed", "path": path, "old": e, "new": None})
                continue
            if d.hash != e["hash"]:
                out.append({"type": "input", "path": path, "old": e, "new": {"hash": d.hash, "size": d.size}})
        return out

    def _save_stats(self, ex: Executor, order: Sequence[Any], labels: Sequence[Label]) -> None:
        st = ex.stats
        data: dict[str, Any] = {"time": time.time(), "actions": len(order), "executed": st.executed,
                                "cached": st.cached, "remote_hits": st.remote, "failed": st.failed,
                                "seconds": st.seconds, "keys": ex.keys, "workspace": str(self.root),
                                "targets": [str(t) for t in labels]}
        if ex.remote is not None:
            data["remote"] = {"url": ex.remote.config.url, "upload": ex.remote.config.upload,
                              **ex.remote.stats.to_json()}
        rx = ex.remote_executor
        if rx is not None:
            data["remote_execution"] = {
                "url": rx.url, "executed": rx.executed, "workers": dict(rx.workers), "fell_back": rx.disabled,
                # commands that ran here (fallbacks); fetch, extract and write are always the client's
                "local": sum(1 for a in order if a.kind == "run" and ex.where.get(a.id) == "local"),
                "seconds": dict(rx.timings)}
        try:
            _write_json_streamed(self.store.root / "last-build.json", data, "keys")
        except OSError:
            pass

    def last_build(self) -> dict[str, Any] | None:
        """What the store recorded of its last build (``last-build.json``),
        if that build was in this workspace."""
        try:
            last = json.loads((self.store.root / "last-build.json").read_text())
        except (OSError, ValueError):
            return None
        if last.get("workspace") not in (None, str(self.root)):
            raise HermeticError(f"the last build in {self.cache_dir} was in {last['workspace']}, not here",
                                reason="usage", hint=f"hermetic -C {last['workspace']} report --last ...")
        return dict(last)

    def delivered(self, labels: Sequence[Label]) -> dict[Label, list[Path]]:
        """Where *labels*' outputs are in the output directory (those that are there)."""
        analysis, _graph = self.analyze(labels)
        out: dict[Label, list[Path]] = {}
        for label, files in analysis.top.items():
            dests = [self.output_dir / art.path.removeprefix("out/") for art in files]
            out[label] = [d for d in dests if d.exists()]
        return out

    def clean(self, expunge: bool = False) -> list[Path]:
        removed = []
        if self.output_dir.exists():
            shutil.rmtree(self.output_dir)
            removed.append(self.output_dir)
        if expunge and self.cache_dir.exists():
            with self.store.locked(exclusive=True):
                shutil.rmtree(self.cache_dir)
            removed.append(self.cache_dir)
        return removed

    def target_deps(self, labels: Sequence[Label]) -> dict[Label, list[Label]]:
        return load(self.ws, self.registry, labels).deps

    def all_targets(self) -> list[Label]:
        self.ws.load_all()
        return sorted(self.ws.targets)


def _command_text(argv: list[Any]) -> str:
    import shlex

    words = []
    for a in argv:
        if isinstance(a, dict):
            (kind, rel), = a.items()
            words.append(f"${kind.upper()}/{rel}" if rel else f"${kind.upper()}")
        else:
            words.append(a)
    return " ".join(w if w.startswith("$") and " " not in w else shlex.quote(w) for w in words)


def _owners(analysis: Any, graph: Any, labels: Sequence[Label]) -> set[Any]:
    """The targets *labels* stand for: themselves, and the owners of the
    actions making their outputs (an alias's actual target)."""
    owners: set[Any] = set(labels)
    for files in analysis.top.values():
        for f in files:
            producer = graph.producer.get(f.path)
            if producer is not None:
                owners.add(producer.owner)
    return owners



class _Now:
    """The workspace as it is now, for an analysis stamp's checks."""

    def __init__(self, session: Session) -> None:
        self.s = session

    def build_file(self, package: str) -> str | None:
        return self.s.ws.build_file_digest(package)

    def glob(self, package: str, pattern: str) -> list[str]:
        from hermetic._analysis import expand_now

        return expand_now(self.s.ws, package, pattern)

    def toolchain(self, kind: str, platform: str) -> str:
        from hermetic._incremental import toolchain_digest

        s = self.s
        return toolchain_digest(s.hooks.toolchain(kind, Platform.parse(platform), s.host, s.cache_dir))


def _write_json_streamed(path: Path, data: dict[str, Any], big: str) -> None:
    """``json.dumps(data)`` into *path*, with the dict ``data[big]`` (a key
    per action: 100,000 of them) encoded a few thousand entries at a time
    instead of as one string, and its bytes, in memory at once."""
    import itertools

    rest = {k: v for k, v in data.items() if k != big}
    with path.open("w", encoding="utf-8") as f:
        f.write(json.dumps(rest)[:-1] + ("," if rest else "") + f" {json.dumps(big)}: {{")
        items, sep = iter(data[big].items()), ""
        while chunk := dict(itertools.islice(items, 5000)):
            f.write(sep + json.dumps(chunk)[1:-1])
            sep = ", "
        f.write("}}")


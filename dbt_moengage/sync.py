"""The pipeline wired together: manifest -> cohorts -> warehouse -> packing -> client -> state
-> report."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from .checkpoints import GroupCommit
from .client import MoEngageClient, Tally
from .cohorts import CohortSpec, Discovery, discover
from .errors import (
    CohortError,
    CohortSpecError,
    ConfigError,
    MoEngageSyncError,
    SettingsError,
    TransientError,
    WorkspaceFatal,
)
from .manifest import Manifest, build_outcome, load_manifest, load_run_results
from .packing import ADD, REMOVE, Body, BodyPacker
from .progress import Progress
from .report import DRY_RUN, FAILED, INVALID, SKIPPED, SYNCED, CohortResult, RunReport
from .selection import resolve as resolve_selection
from .settings import MoEngageSettings
from .warehouse import RunRow, SqlWarehouse, connect, load_profile_target
from .warehouse import base as wh


@dataclass
class SyncOptions:
    """What the user asked for on the command line."""

    project_dir: Path = Path(".")
    profiles_dir: Path | None = None
    target: str | None = None
    select: tuple[str, ...] = ()
    dry_run: bool = False
    full_refresh: bool = False
    state_schema: str | None = None
    exclude: tuple[str, ...] = ()
    # Sync only cohorts whose model succeeded in target/run_results.json.
    only_built: bool = False
    # Where manifest.json (and run_results.json) are, when not the project's target/.
    target_path: Path | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def target_dir(self) -> Path:
        """dbt's target folder (--target-path, DBT_TARGET_PATH, else <project>/target)."""
        if self.target_path is not None:
            return self.target_path
        custom = self.environ.get("DBT_TARGET_PATH")
        if custom:
            path = Path(custom)
            return path if path.is_absolute() else self.project_dir / path
        return self.project_dir / "target"


def run_sync(options: SyncOptions, progress: Progress | None = None) -> RunReport:
    """Sync every selected cohort; config problems raise ConfigError before any request."""
    progress = progress or Progress()
    report = RunReport(run_id=uuid.uuid4().hex, started_at=_now(), dry_run=options.dry_run)
    manifest = load_manifest(options.target_dir)
    discovery = discover_cohorts(options, manifest)
    if options.only_built:
        discovery = _only_built(manifest, discovery, report, progress)
    settings = MoEngageSettings.from_env(options.environ, require_credentials=False)
    senders, specs_to_sync = _destinations(discovery, options, report, progress)
    discovery = Discovery(specs=specs_to_sync, problems=discovery.problems)
    target = load_profile_target(
        options.project_dir, options.profiles_dir, options.target, options.environ
    )
    state_schema = options.state_schema or options.environ.get("MOENGAGE_STATE_SCHEMA") or None

    report.results.extend(_invalid_results(discovery.problems, progress))
    if not discovery.specs:
        progress.message("no valid cohort to sync")
        report.finished_at = _now()
        return report
    try:
        warehouse = connect(
            target,
            options.project_dir,
            state_schema=state_schema,
            read_only=options.dry_run,
            wait_seconds=settings.lock_wait_seconds,
        )
    except wh.LockTimeout as exc:
        for spec in discovery.specs:
            report.results.append(_result(spec, FAILED, str(exc)))
            progress.cohort_finished(report.results[-1])
        report.finished_at = _now()
        return report

    with warehouse:
        warehouse.lock_stale_seconds = settings.lock_stale_seconds
        warehouse.prepare_state(create=not options.dry_run)
        specs = []
        for spec in discovery.specs:
            try:
                column = warehouse.check_uid_column(spec)
                specs.append(replace(spec, uid_column=column.name))
            except CohortError as exc:
                progress.problem(str(exc))
                report.results.append(_result(spec, INVALID, str(exc)))
        groups: dict[str | None, list[CohortSpec]] = {}
        for spec in specs:
            groups.setdefault(spec.destination, []).append(spec)
        # Each destination is its own workspace with its own quota: they sync side by side.
        with ThreadPoolExecutor(max_workers=max(len(groups), 1)) as pool:
            jobs = [
                pool.submit(
                    _sync_destination,
                    group,
                    senders[destination],
                    warehouse,
                    options,
                    report.run_id,
                    progress,
                )
                for destination, group in groups.items()
            ]
            done = {r.model: r for job in jobs for r in job.result()}
        report.results.extend(done[spec.model] for spec in specs)
    report.finished_at = _now()
    return report


def _sync_destination(
    specs: list[CohortSpec],
    settings: MoEngageSettings,
    warehouse: SqlWarehouse,
    options: SyncOptions,
    run_id: str,
    progress: Progress,
) -> list[CohortResult]:
    """The cohorts of one destination, in order, through one client and its pacer."""
    results: list[CohortResult] = []
    client = None if options.dry_run else MoEngageClient(settings)
    try:
        fatal: WorkspaceFatal | None = None
        for spec in specs:
            if fatal is not None:
                error = f"not sent: the workspace refused an earlier request ({fatal})"
                results.append(_result(spec, SKIPPED, error))
                progress.cohort_finished(results[-1])
                continue
            job = CohortSync(spec, warehouse, client, settings, run_id, progress)
            if client is None:
                result = job.dry_run(options.full_refresh)
            else:
                result = job.run(options.full_refresh)
            fatal = job.fatal
            results.append(result)
            progress.cohort_finished(result)
    finally:
        if client is not None:
            client.close()
    return results


def _destinations(
    discovery: Discovery, options: SyncOptions, report: RunReport, progress: Progress
) -> tuple[dict[str | None, MoEngageSettings], list[CohortSpec]]:
    """Settings per destination the cohorts name, and the cohorts whose destination is set.

    The default destination's settings missing is a configuration error (exit 2); a named
    destination's only fails its own cohorts.
    """
    senders: dict[str | None, MoEngageSettings] = {}
    refused: dict[str, str] = {}
    for name in dict.fromkeys(spec.destination for spec in discovery.specs):
        try:
            senders[name] = MoEngageSettings.from_env(
                options.environ, require_credentials=not options.dry_run, destination=name
            )
        except SettingsError as exc:
            if name is None:
                raise
            refused[name] = str(exc)
    kept = []
    for spec in discovery.specs:
        if spec.destination in refused:
            result = _result(spec, INVALID, refused[spec.destination])
            report.results.append(result)
            progress.problem(f"model '{spec.model}': {refused[spec.destination]}")
        else:
            kept.append(spec)
    return senders, kept


class CohortSync:
    """One cohort in one run: plan the delta, send it, checkpoint each accepted request."""

    def __init__(
        self,
        spec: CohortSpec,
        warehouse: SqlWarehouse,
        client: MoEngageClient | None,
        settings: MoEngageSettings,
        run_id: str,
        progress: Progress | None = None,
    ) -> None:
        self.spec = spec
        self.progress = progress or Progress()
        self.warehouse = warehouse
        self.client = client
        self.settings = settings
        self.run_id = run_id
        self.workspace = settings.workspace_id
        self.result = CohortResult(
            model=spec.model,
            cohort_id=spec.cohort_id,
            cohort_name=spec.cohort_name,
            mode=spec.mode,
        )
        self.fatal: WorkspaceFatal | None = None

    @property
    def mirror(self) -> bool:
        """Whether this cohort sends removals."""
        return self.spec.mode == "mirror"

    def dry_run(self, full_refresh: bool = False) -> CohortResult:
        """Count what a sync would add and remove, and the requests it would take."""
        started = time.monotonic()
        try:
            self._plan(full_refresh)
            requests = sum(1 for _ in self._bodies(ADD, full_refresh))
            if self.mirror:
                requests += sum(1 for _ in self._bodies(REMOVE))
            self.result.planned_requests = requests
            self.result.status = DRY_RUN
        except CohortError as exc:
            self.result.error = str(exc)
        self.result.seconds = round(time.monotonic() - started, 3)
        return self.result

    def run(self, full_refresh: bool) -> CohortResult:
        """Sync under the cohort's lock; errors end this cohort only (or the workspace)."""
        started = time.monotonic()
        adds, removes = Tally(), Tally()
        try:
            with self.warehouse.lock(
                self.spec, self.workspace, self.run_id, self.settings.lock_wait_seconds
            ):
                self._run_locked(full_refresh, adds, removes)
        except WorkspaceFatal as exc:
            self.fatal = exc
            self.result.error = str(exc)
        except (CohortError, TransientError) as exc:
            self.result.error = str(exc)
        self._tally(adds, removes)
        self.result.seconds = round(time.monotonic() - started, 3)
        return self.result

    def _run_locked(self, full_refresh: bool, adds: Tally, removes: Tally) -> None:
        """Send the delta; the run row says 'running' until it says how it ended."""
        row = RunRow(
            run_id=self.run_id,
            workspace_id=self.workspace,
            cohort_id=self.spec.cohort_id,
            model=self.spec.model,
            mode=self.spec.mode,
            full_refresh=full_refresh,
            started_at=wh.utcnow(),
        )
        self.warehouse.save_run(row)
        try:
            self._send(full_refresh, adds, removes)
            self.result.status = SYNCED
        except MoEngageSyncError as exc:
            self.result.error = str(exc)
            raise
        finally:
            self._tally(adds, removes)
            row.finished_at = wh.utcnow()
            row.status, row.error = self.result.status, self.result.error
            row.added, row.removed = self.result.added, self.result.removed
            row.unchanged, row.left_but_kept = self.result.unchanged, self.result.left_but_kept
            row.requests, row.retries = self.result.requests, self.result.retries
            self.warehouse.save_run(row)

    def _plan(self, full_refresh: bool) -> None:
        self.warehouse.check_uid_lengths(self.spec)
        counts = self.warehouse.audience_stats(self.spec)
        delta = self.warehouse.plan(self.spec, self.workspace, full_refresh)
        self.result.uids_total = delta.distinct
        self.result.dropped = counts.dropped(delta.distinct)
        self.result.unchanged = delta.unchanged
        self.result.planned_add = delta.to_add
        if self.mirror:
            self.result.planned_remove = delta.to_remove
        else:
            self.result.left_but_kept = delta.to_remove

    def _send(self, full_refresh: bool, adds: Tally, removes: Tally) -> None:
        assert self.client is not None
        self._plan(full_refresh)
        self.progress.cohort_started(self.result)
        if self.mirror and self.result.planned_remove:
            self.client.send_all(self._bodies(REMOVE), removes, self._checkpoint(REMOVE))
        if self.result.planned_add:
            self.client.send_all(
                self._bodies(ADD, full_refresh), adds, self._checkpoint(ADD, full_refresh)
            )

    def _checkpoint(self, action: str, full_refresh: bool = False) -> Callable[[Body], None]:
        """What runs after each accepted body: record its uids, then show progress."""
        spec, workspace = self.spec, self.workspace
        if action == REMOVE:
            commits = GroupCommit(lambda uids: self.warehouse.record_removed(spec, workspace, uids))
        else:
            # A full refresh resends every member; each accepted body replaces its uids'
            # rows, so the state stays true even if the refresh stops halfway.
            commits = GroupCommit(
                lambda uids: self.warehouse.record_added(
                    spec, workspace, uids, self.run_id, replace=full_refresh
                )
            )

        def accepted(body: Body) -> None:
            commits.record(body.uids)
            self.progress.sent(self.result, action, len(body.uids))

        return accepted

    def _bodies(self, action: str, everyone: bool = False) -> Iterable[Body]:
        packer = BodyPacker(
            action=ADD if action == ADD else REMOVE,
            partner=self.settings.partner,
            cohort_name=self.spec.cohort_name,
            cohort_id=self.spec.cohort_id,
            description=self.spec.description,
            max_bytes=self.settings.max_body_bytes,
        )
        kind = wh.REMOVE if action == REMOVE else wh.ALL if everyone else wh.ADD
        return packer.pack(self.warehouse.stream_delta(self.spec, self.workspace, kind))

    def _tally(self, adds: Tally, removes: Tally) -> None:
        r = self.result
        r.added, r.removed = adds.uids_accepted, removes.uids_accepted
        r.uids_sent = r.added + r.removed
        r.requests = adds.requests + removes.requests
        r.retries = adds.retries + removes.retries
        if r.status != SYNCED:
            r.uids_unsynced = max(r.planned_add - r.added, 0) + max(r.planned_remove - r.removed, 0)


def discover_cohorts(options: SyncOptions, manifest: Manifest | None = None) -> Discovery:
    """The selected cohorts of the manifest, validated (no warehouse, no API)."""
    manifest = manifest or load_manifest(options.target_dir)
    nodes = list(manifest.cohort_nodes())
    return discover(nodes, select_cohorts(options, [n.unique_id for n in nodes]))


def check_destinations(discovery: Discovery, environ: Mapping[str, str]) -> list[str]:
    """Settings problems of every destination the cohorts use (credentials, URLs)."""
    problems = []
    for name in dict.fromkeys(spec.destination for spec in discovery.specs):
        try:
            MoEngageSettings.from_env(environ, destination=name)
        except SettingsError as exc:
            problems.append(str(exc))
    return problems


def select_cohorts(options: SyncOptions, cohort_ids: list[str]) -> tuple[str, ...]:
    """Unique ids of the cohorts `--select`/`--exclude` pick (all when neither is given)."""
    if not options.select and not options.exclude:
        return ()
    chosen = resolve_selection(
        options.project_dir, options.profiles_dir, options.target, options.select, options.exclude
    )
    picked = tuple(uid for uid in cohort_ids if uid in chosen)
    if not picked:
        asked = " ".join(
            [
                *(["--select", *options.select] if options.select else []),
                *(["--exclude", *options.exclude] if options.exclude else []),
            ]
        )
        names = ", ".join(uid.rsplit(".", 1)[-1] for uid in cohort_ids) or "none"
        raise ConfigError(
            f"{asked} selects no cohort model ({len(chosen)} models selected); "
            f"cohort models: {names}"
        )
    return picked


def _only_built(
    manifest: Manifest, discovery: Discovery, report: RunReport, progress: Progress
) -> Discovery:
    """Keep the cohorts whose model built, and passed its tests, in run_results.json."""
    statuses = load_run_results(manifest.path.parent)
    kept: list[CohortSpec] = []
    absent: list[str] = []
    for spec in discovery.specs:
        outcome = build_outcome(manifest, spec.unique_id, statuses)
        if outcome.built:
            kept.append(spec)
        elif outcome.reason == "not part of this dbt invocation":
            absent.append(spec.model)
        else:
            result = _result(spec, SKIPPED, f"not synced: {outcome.reason}")
            report.results.append(result)
            progress.cohort_finished(result)
    if absent:
        progress.message(f"not built in this dbt invocation, so not synced: {', '.join(absent)}")
    return Discovery(specs=kept, problems=discovery.problems)


def _invalid_results(problems: Iterable[CohortSpecError], progress: Progress) -> list[CohortResult]:
    by_model: dict[str, list[CohortSpecError]] = {}
    for problem in problems:
        by_model.setdefault(problem.model, []).append(problem)
        progress.problem(str(problem))
    return [
        CohortResult(
            model=model,
            cohort_id=None,
            cohort_name=None,
            status=INVALID,
            error="; ".join(str(p) for p in found),
        )
        for model, found in by_model.items()
    ]


def _result(spec: CohortSpec, status: str, error: str) -> CohortResult:
    return CohortResult(
        model=spec.model,
        cohort_id=spec.cohort_id,
        cohort_name=spec.cohort_name,
        mode=spec.mode,
        status=status,
        error=error,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


__all__: list[str] = ["CohortSync", "SyncOptions", "run_sync"]

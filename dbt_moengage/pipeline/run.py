"""A sync run: the manifest, the cohorts, the warehouse and its state, every destination side
by side, then the run's warnings and notifications; `run_sync` is where the stages meet."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime

from ..cohorts import CohortSpec
from ..errors import CohortError, LockTimeout, WarehouseError
from ..manifest import Manifest, load_manifest
from ..notify import NOTIFY_URL, invalid_cohorts, notify_after_sync
from ..report import FAILED, INVALID, NOT_BUILT, CohortResult, RunReport
from ..report.progress import Progress
from ..settings import MoEngageSettings
from ..state import SCHEMA_VERSION, RunRow, StateKey, StateStore, upgrade_note, utcnow
from ..state.history import StateHistory
from ..state.left_behind import find_left_behind
from ..warehouse import Engine, connect
from .destination import sync_destination, usable_destinations
from .options import Destinations, SyncOptions, profile_target, state_key
from .validation import (
    check_built_for,
    checked_column,
    discover_cohorts,
    invalid_results,
    only_built,
    ownership,
    result_of,
)


def run_sync(
    options: SyncOptions, progress: Progress | None = None, stop: threading.Event | None = None
) -> RunReport:
    """Sync every selected cohort; config problems raise ConfigError before any request.

    Once `stop` is set (SIGINT, SIGTERM), no new request or cohort starts; requests in
    flight finish within their deadline and are recorded; a warehouse query reading a model
    is cancelled, a notification post cut off; the rest is `interrupted`.
    """
    progress = progress or Progress()
    stop = stop or threading.Event()
    report = RunReport(run_id=uuid.uuid4().hex, started_at=_now(), dry_run=options.dry_run)
    manifest = load_manifest(options.target_dir)
    discovery = discover_cohorts(options, manifest, settle=False)
    read = Destinations(options.environ, require_credentials=not options.dry_run)
    settings = read.run_wide()
    senders, discovery = usable_destinations(discovery, read, report, progress)
    target = profile_target(options)
    check_built_for(manifest, target)
    _warn(manifest.near_misses(), report, progress)
    state_schema = options.state_schema or options.environ.get("MOENGAGE_STATE_SCHEMA") or None

    # With a notification to make (an invalid config fails like any cohort), the state is
    # opened even when nothing can sync.
    notifies = not options.dry_run and bool(options.environ.get(NOTIFY_URL, "").strip())
    if not discovery.specs and not discovery.contested and not notifies:
        report.results.extend(invalid_results(discovery.problems, progress, manifest))
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
    except LockTimeout as exc:
        report.results.extend(invalid_results(discovery.problems, progress, manifest))
        for spec in [*discovery.specs, *discovery.contested]:
            report.results.append(result_of(spec, FAILED, str(exc)))
            progress.cohort_finished(report.results[-1])
        report.finished_at = _now()
        return report

    with warehouse:
        warehouse.lock_stale_seconds = settings.lock_stale_seconds
        state = StateStore(warehouse)
        status = state.prepare(create=not options.dry_run)
        if status.upgraded_from is not None:
            progress.message(
                f"upgraded the sync state in schema {warehouse.state_schema!r} from version "
                f"{status.upgraded_from} to {SCHEMA_VERSION}: {upgrade_note(status.upgraded_from)}"
            )
        if status.note:
            progress.message(status.note)
        discovery = discovery.settle(ownership(state, senders))
        # Whose state each cohort's outcome is, for notifications.
        keys = {spec.model: state_key(senders[spec.destination]) for spec in discovery.specs}
        if options.only_built:
            before = len(report.results)
            discovery = only_built(manifest, discovery, report, progress)
            if not options.dry_run:
                _record_not_built(state, report.results[before:], keys, report, progress)
        report.results.extend(invalid_results(discovery.problems, progress, manifest))
        specs = []
        for spec in discovery.specs:
            try:
                specs.append(checked_column(warehouse, spec, manifest, target))
            except CohortError as exc:
                progress.problem(str(exc))
                report.results.append(result_of(spec, INVALID, str(exc)))
        groups: dict[str | None, list[CohortSpec]] = {}
        for spec in specs:
            groups.setdefault(spec.destination, []).append(spec)
        # Each destination is its own workspace with its own quota: they sync side by side.
        # A stop cancels the warehouse's reads of models (a query over a large model would
        # hold the stop for minutes): their cohorts end `interrupted`.
        with (
            warehouse.cancelled_on(stop),
            ThreadPoolExecutor(max_workers=max(len(groups), 1)) as pool,
        ):
            jobs = [
                pool.submit(
                    sync_destination,
                    group,
                    senders[destination],
                    warehouse,
                    state,
                    options,
                    report.run_id,
                    progress,
                    stop,
                )
                for destination, group in groups.items()
            ]
            _wait_awake(jobs)
            done = {r.model: r for job in jobs for r in job.result()}
        report.results.extend(done[spec.model] for spec in specs)
        if not stop.is_set():
            _warn_left_behind(warehouse, senders, manifest, report, progress)
        if notifies and not stop.is_set():
            invalid = _invalid_cohorts(warehouse, manifest, report, read, keys)
            fractions = {spec.model: spec.alert_change_fraction for spec in specs}
            notify_after_sync(
                state, report, keys, options.environ, progress, invalid, fractions, stop
            )
    report.finished_at = _now()
    return report


def _record_not_built(
    state: StateStore,
    results: Iterable[CohortResult],
    keys: Mapping[str, StateKey],
    report: RunReport,
    progress: Progress,
) -> None:
    """A finished run row, `not_built`, for each cohort `--only-built` did not sync because
    its model or a test on it failed in dbt: `status` shows that last attempt (and exits 1)
    until a sync succeeds. A model left out of the dbt invocation gets none: the user chose
    not to build it, and its last run still stands."""
    history = StateHistory(state.engine)
    for result in results:
        key = keys.get(result.model)
        if result.unselected or key is None or result.cohort_id is None:
            continue
        now = utcnow()
        row = RunRow(
            run_id=report.run_id,
            endpoint=key.endpoint,
            workspace_id=key.workspace_id,
            cohort_id=result.cohort_id,
            model=result.model,
            mode=result.mode,
            full_refresh=False,
            started_at=now,
            finished_at=now,
            status=NOT_BUILT,
            error=result.error,
        )
        try:
            row.members_after = history.member_count(key, result.cohort_id)
            state.save_run(row)
        except WarehouseError as exc:
            text = f"{result.model}: its run row ({NOT_BUILT}) was not recorded: {exc}"
            report.warnings.append(text)
            progress.warning(text)


def _invalid_cohorts(
    warehouse: Engine,
    manifest: Manifest,
    report: RunReport,
    read: Destinations,
    keys: Mapping[str, StateKey],
) -> dict[str, tuple[StateKey, str]]:
    """Where each invalid config's failure is announced (notify.invalid_cohorts); none when
    the state cannot be read."""
    taken = {
        (keys[r.model], r.cohort_id)
        for r in report.results
        if r.model in keys and r.cohort_id is not None
    }
    nodes = {node.name: node for node in manifest.cohort_nodes()}
    try:
        return invalid_cohorts(report.results, nodes, read.key, StateHistory(warehouse), taken)
    except WarehouseError:
        return {}


def _warn_left_behind(
    warehouse: Engine,
    senders: Mapping[str | None, MoEngageSettings],
    manifest: Manifest,
    report: RunReport,
    progress: Progress,
) -> None:
    """Name each cohort the state holds that no model of the project syncs (a model was
    renamed, say): a warning, kept in the report's `warnings`, never a failure."""
    keys = {destination: state_key(settings) for destination, settings in senders.items()}
    try:
        texts = [
            c.message()
            for c in find_left_behind(StateHistory(warehouse), keys, manifest.cohort_nodes())
        ]
    except WarehouseError as exc:
        texts = [f"could not look for cohorts left behind in the sync state: {exc}"]
    _warn(texts, report, progress)


def _warn(texts: Iterable[str], report: RunReport, progress: Progress) -> None:
    """Show each warning and keep it in the report's `warnings`; never a failure."""
    for text in texts:
        report.warnings.append(text)
        progress.warning(text)


def _wait_awake(jobs: list[Future[list[CohortResult]]]) -> None:
    """Wait for the destinations in short slices: a signal may be delivered to any thread,
    and the main thread runs Python's signal handlers only between waits."""
    pending = set(jobs)
    while pending:
        _, pending = wait(pending, timeout=0.2)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")

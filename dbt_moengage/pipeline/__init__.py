"""The pipeline wired together: manifest -> cohorts -> warehouse -> packing -> client -> state
-> report."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..client import MoEngageClient, Tally
from ..cohorts import (
    DURATION_HINT,
    CohortDefaults,
    CohortSpec,
    Discovery,
    Owner,
    declared_mode,
    discover,
    doubtful_names,
    parse_duration,
)
from ..errors import (
    CohortError,
    CohortSpecError,
    ConfigError,
    Interrupted,
    LockTimeout,
    ManifestError,
    MoEngageSyncError,
    RelationMissing,
    RequestRejected,
    SettingsError,
    TransientError,
    UnsettledConflict,
    WarehouseError,
    WorkspaceFatal,
)
from ..manifest import Manifest, build_outcome, load_manifest, load_run_results
from ..notify import NOTIFY_URL, NotifySettings, invalid_cohorts, notify_after_sync
from ..packing import ADD, REMOVE, Body, BodyPacker
from ..report import (
    DRY_RUN,
    FAILED,
    GUARDED,
    INTERRUPTED,
    INVALID,
    NOT_BUILT,
    SKIPPED,
    SYNCED,
    CohortResult,
    RunReport,
)
from ..report.progress import Progress
from ..selection import resolve as resolve_selection
from ..selection import shown as shown_selection
from ..settings import MoEngageSettings, data_center_warning
from ..state import (
    SCHEMA_VERSION,
    Change,
    CohortRecord,
    Delta,
    GroupCommit,
    HeldLock,
    RunRow,
    StateKey,
    StateStore,
    normalize_endpoint,
    upgrade_note,
    utcnow,
)
from ..state.history import StateHistory
from ..state.left_behind import default_id_warnings, find_left_behind
from ..state.peers import sharing_quota
from ..uids import TOO_LONG
from ..warehouse import (
    Engine,
    ProfileTarget,
    connect,
    load_profile_target,
)


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
    # Let a mirror run remove more than its max_remove_fraction (or everyone).
    allow_large_removal: bool = False
    # dbt's --profile and --vars, as on `dbt build`.
    profile: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    # Never in a repr: it holds the API key and warehouse passwords.
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)

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
    settings = MoEngageSettings.from_env(options.environ, require_credentials=False)
    senders, discovery = _destinations(discovery, options, report, progress)
    target = profile_target(options)
    check_built_for(manifest, target)
    _warn(manifest.near_misses(), report, progress)
    state_schema = options.state_schema or options.environ.get("MOENGAGE_STATE_SCHEMA") or None

    # With a notification to make (an invalid config fails like any cohort), the state is
    # opened even when nothing can sync.
    notifies = not options.dry_run and bool(options.environ.get(NOTIFY_URL, "").strip())
    if not discovery.specs and not discovery.contested and not notifies:
        report.results.extend(_invalid_results(discovery.problems, progress, manifest))
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
        report.results.extend(_invalid_results(discovery.problems, progress, manifest))
        for spec in [*discovery.specs, *discovery.contested]:
            report.results.append(_result(spec, FAILED, str(exc)))
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
        discovery = discovery.settle(_ownership(state, senders))
        # Whose state each cohort's outcome is, for notifications.
        keys = {spec.model: state_key(senders[spec.destination]) for spec in discovery.specs}
        if options.only_built:
            before = len(report.results)
            discovery = _only_built(manifest, discovery, report, progress)
            if not options.dry_run:
                _record_not_built(state, report.results[before:], keys, report, progress)
        report.results.extend(_invalid_results(discovery.problems, progress, manifest))
        specs = []
        for spec in discovery.specs:
            try:
                specs.append(checked_column(warehouse, spec, manifest, target))
            except CohortError as exc:
                progress.problem(str(exc))
                report.results.append(_result(spec, INVALID, str(exc)))
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
                    _sync_destination,
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
            invalid = _invalid_cohorts(warehouse, manifest, report, senders, keys, options.environ)
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
    senders: Mapping[str | None, MoEngageSettings],
    keys: Mapping[str, StateKey],
    environ: Mapping[str, str],
) -> dict[str, tuple[StateKey, str]]:
    """Where each invalid config's failure is announced (notify.invalid_cohorts); none when
    the state cannot be read."""

    def key_of(destination: str | None) -> StateKey | None:
        settings = senders.get(destination)
        if settings is None:
            try:
                settings = MoEngageSettings.from_env(
                    environ, require_credentials=False, destination=destination
                )
            except SettingsError:
                return None
        if not settings.workspace_id or not settings.base_url:
            return None
        return state_key(settings)

    taken = {
        (keys[r.model], r.cohort_id)
        for r in report.results
        if r.model in keys and r.cohort_id is not None
    }
    nodes = {node.name: node for node in manifest.cohort_nodes()}
    try:
        return invalid_cohorts(report.results, nodes, key_of, StateHistory(warehouse), taken)
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


def _ownership(
    state: StateStore, senders: Mapping[str | None, MoEngageSettings]
) -> dict[tuple[str | None, str], Owner]:
    """(destination, cohort_id) -> what the state says of it, for settling conflicts."""
    found: dict[tuple[str | None, str], Owner] = {}
    for destination, settings in senders.items():
        for cohort_id, owner in state.owners(state_key(settings)).items():
            found[(destination, cohort_id)] = owner
    return found


def _sync_destination(
    specs: list[CohortSpec],
    settings: MoEngageSettings,
    warehouse: Engine,
    state: StateStore,
    options: SyncOptions,
    run_id: str,
    progress: Progress,
    stop: threading.Event,
) -> list[CohortResult]:
    """The cohorts of one destination, in order, through one client and its pacer."""
    client = None
    sharing: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if not options.dry_run:
        client = MoEngageClient(settings, stop=stop, on_wait=progress.waiting)
        sharing = _sharing_quota(warehouse, settings, run_id, client, progress)
    try:
        with sharing:
            return _sync_cohorts(
                specs, settings, warehouse, state, options, run_id, progress, stop, client
            )
    finally:
        if client is not None:
            client.close()


def _sharing_quota(
    warehouse: Engine,
    settings: MoEngageSettings,
    run_id: str,
    client: MoEngageClient,
    progress: Progress,
) -> contextlib.AbstractContextManager[object]:
    """The workspace's quota shared with the other runners sending to it (state/peers.py)."""
    workspace = settings.workspace_id
    limit = client.pacer.limit

    def changed(others: int, share: int) -> None:
        if others:
            runners = "runner is" if others == 1 else "runners are"
            # `share` is what this beat allowed (less while the others' windows drain);
            # the fair share is what the run settles at.
            progress.message(
                f"workspace '{workspace}': {others} other {runners} sending to it; this run "
                f"paces to its share of the {limit} requests/min quota: at most "
                f"{limit // (others + 1)}, {share} for now"
            )
        else:
            progress.message(f"workspace '{workspace}': no other runner is sending to it now")

    def failed(error: str) -> None:
        progress.problem(
            f"workspace '{workspace}': cannot share its quota with other runners ({error}); "
            f"this run paces to all of it ({limit} requests/min)"
        )

    return sharing_quota(warehouse, state_key(settings), run_id, client.pacer, changed, failed)


def _sync_cohorts(
    specs: list[CohortSpec],
    settings: MoEngageSettings,
    warehouse: Engine,
    state: StateStore,
    options: SyncOptions,
    run_id: str,
    progress: Progress,
    stop: threading.Event,
    client: MoEngageClient | None,
) -> list[CohortResult]:
    """The cohorts of one destination, in order; `client` None in a dry run."""
    results: list[CohortResult] = []
    fatal: WorkspaceFatal | None = None
    for spec in specs:
        if stop.is_set():
            results.append(_result(spec, INTERRUPTED, "not started: the run was interrupted"))
            progress.cohort_finished(results[-1])
            continue
        if fatal is not None:
            error = f"not sent: the destination failed for every cohort ({fatal})"
            results.append(_result(spec, SKIPPED, error))
            progress.cohort_finished(results[-1])
            continue
        if client is not None and client.down is not None:
            # Failed past its retry budget: the next run sends what this one could not.
            results.append(_result(spec, SKIPPED, f"not attempted: {client.down}"))
            progress.cohort_finished(results[-1])
            continue
        job = CohortSync(
            spec,
            warehouse,
            state,
            client,
            settings,
            run_id,
            progress,
            allow_large_removal=options.allow_large_removal,
            stop=stop,
        )
        if client is None:
            result = job.dry_run(options.full_refresh)
        else:
            result = job.run(options.full_refresh)
        fatal = job.fatal
        results.append(result)
        progress.cohort_finished(result)
    return results


def _destinations(
    discovery: Discovery, options: SyncOptions, report: RunReport, progress: Progress
) -> tuple[dict[str | None, MoEngageSettings], Discovery]:
    """Settings per destination the cohorts name, and the cohorts whose destination is set.

    The default destination's settings missing is a configuration error (exit 2); a named
    destination's only fails its own cohorts.
    """
    senders: dict[str | None, MoEngageSettings] = {}
    refused: dict[str, str] = {}
    every = [*discovery.specs, *discovery.contested]
    for name in dict.fromkeys(spec.destination for spec in every):
        try:
            senders[name] = MoEngageSettings.from_env(
                options.environ, require_credentials=not options.dry_run, destination=name
            )
        except SettingsError as exc:
            if name is None:
                raise
            refused[name] = str(exc)
    for spec in every:
        if spec.destination in refused:
            result = _result(spec, INVALID, refused[spec.destination])
            report.results.append(result)
            progress.problem(f"model '{spec.model}': {refused[spec.destination]}")
    return senders, replace(
        discovery,
        specs=[s for s in discovery.specs if s.destination not in refused],
        contested=[s for s in discovery.contested if s.destination not in refused],
    )


class CohortSync:
    """One cohort in one run: plan the delta, send it, checkpoint each accepted request."""

    def __init__(
        self,
        spec: CohortSpec,
        warehouse: Engine,
        state: StateStore,
        client: MoEngageClient | None,
        settings: MoEngageSettings,
        run_id: str,
        progress: Progress | None = None,
        allow_large_removal: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        self.spec = spec
        self.stop = stop
        self.progress = progress or Progress()
        self.warehouse = warehouse
        self.state = state
        self.client = client
        self.settings = settings
        self.run_id = run_id
        self.allow_large_removal = allow_large_removal
        self.key = state_key(settings)
        # One clock reading per cohort: the plan and the streams agree on what is due.
        self.now = utcnow()
        self.result = CohortResult(
            model=spec.model,
            cohort_id=spec.cohort_id,
            cohort_name=spec.cohort_name,
            mode=spec.mode,
        )
        self.fatal: WorkspaceFatal | None = None
        self.held = HeldLock()
        self.record: CohortRecord | None = None
        # The name or description MoEngage holds differs from the config (or is unknown).
        self.rename = False
        self.guard: str | None = None
        self._resent = 0
        self._counts = threading.Lock()
        # The packer of each action's bodies, once made: what it left out is counted.
        self._packers: dict[str, BodyPacker] = {}
        # The state's members as planned, and the change the checkpoints have written since.
        self._planned_members: int | None = None
        self._written = 0
        # Whether the plan found member rows a re-send superseded that no run compacted (a
        # run that died): this run's end compacts every member's (StateStore.compact).
        self._uncompacted = False
        # What the engine had billed to the cohort before this run (an engine may outlive a
        # run: the Python API, tests).
        self._billed_before = warehouse.billed(spec.unique_id) or 0

    @property
    def mirror(self) -> bool:
        """Whether this cohort sends removals."""
        return self.spec.mode == "mirror"

    def dry_run(self, full_refresh: bool = False) -> CohortResult:
        """Count what a sync would add, re-send and remove, and the requests it would take
        (and, where the warehouse bills its jobs, what planning them cost)."""
        started = time.monotonic()
        try:
            with (
                self.warehouse.billing(self.spec.unique_id),
                self.warehouse.snapshot(self.spec, self.key),
            ):
                self._plan(full_refresh)
                requests = resent = 0
                for body in self._add_bodies(full_refresh):
                    requests += 1
                    resent += body.resent
                if self.mirror:
                    requests += sum(1 for _ in self._bodies(REMOVE))
                self._count_too_long()
            self.result.planned_requests = requests
            # A rename re-sends a few current members to carry the name: counted as the
            # run will count them.
            self.result.planned_resend = max(self.result.planned_resend, resent)
            self.result.renamed = self._renaming
            if self.guard:
                self.result.status, self.result.error = GUARDED, self.guard
            else:
                self.result.status = DRY_RUN
        except CohortError as exc:
            self.result.error = str(exc)
        except Interrupted as exc:
            self.result.status, self.result.error = INTERRUPTED, str(exc)
        self.result.bytes_billed = self._billed()
        self.result.seconds = round(time.monotonic() - started, 3)
        return self.result

    def run(self, full_refresh: bool) -> CohortResult:
        """Sync under the cohort's lock; errors end this cohort only (or the workspace).

        Every warehouse job of the cohort is billed to it (where the warehouse bills its
        jobs): the lock, the snapshot, the plan, the streams and the run rows here, the
        checkpoints in the send threads (`_owned`). The result's figure is read once the
        lock is released, so it counts them all; the run row's, up to its own write.
        """
        started = time.monotonic()
        adds, removes = Tally(), Tally()
        try:
            with (
                self.warehouse.billing(self.spec.unique_id),
                self.state.lock(
                    self.spec, self.key, self.run_id, self.settings.lock_wait_seconds, self.stop
                ) as held,
            ):
                self.held = held
                self._run_locked(full_refresh, adds, removes)
        except WorkspaceFatal as exc:
            self.fatal = exc
            self.result.error = str(exc)
        except Interrupted as exc:
            self.result.status, self.result.error = INTERRUPTED, str(exc)
        except (CohortError, TransientError) as exc:
            self.result.error = str(exc)
        self._tally(adds, removes)
        self.result.bytes_billed = self._billed()
        self.result.seconds = round(time.monotonic() - started, 3)
        return self.result

    def _run_locked(self, full_refresh: bool, adds: Tally, removes: Tally) -> None:
        """Send the delta; the run row says 'running' until it says how it ended."""
        adopted = self.state.adopt_legacy(self.spec, self.key)
        if adopted:
            self.progress.message(
                f"{self.spec.model}: {adopted:,} members recorded before the state was kept "
                f"per endpoint are sent again to {self.key.endpoint}"
            )
        row = RunRow(
            run_id=self.run_id,
            endpoint=self.key.endpoint,
            workspace_id=self.key.workspace_id,
            cohort_id=self.spec.cohort_id,
            model=self.spec.model,
            mode=self.spec.mode,
            full_refresh=full_refresh,
            started_at=utcnow(),
        )
        self.state.save_run(row)
        try:
            # One reading of the model: the plan, the guard and every stream come from it.
            with self.warehouse.snapshot(self.spec, self.key):
                self._plan(full_refresh)
                if self.guard:
                    self.result.status, self.result.error = GUARDED, self.guard
                    return
                self._send(full_refresh, adds, removes)
            self.result.status = SYNCED
        except Interrupted as exc:
            # Marked here, so the run row says how it ended (not 'running' forever).
            self.result.status, self.result.error = INTERRUPTED, str(exc)
            raise
        except MoEngageSyncError as exc:
            self.result.error = str(exc)
            raise
        finally:
            self._tally(adds, removes)
            self._remember(adds)
            r = self.result
            row.finished_at = utcnow()
            row.status, row.error = r.status, r.error
            row.added, row.removed, row.resent = r.added, r.removed, r.resent
            row.unchanged, row.left_but_kept = r.unchanged, r.left_but_kept
            row.requests, row.retries, row.renamed = r.requests, r.retries, r.renamed
            row.members_after = self._members_after()
            # A row cannot count the job that writes it: it holds what was billed before.
            row.bytes_billed = self._billed()
            self.state.save_run(row)
            # Statistics first: the compaction's join is then planned for the rows the run
            # wrote (a hash join on Postgres, not one index probe per re-sent uid).
            self.state.refresh_statistics(
                adds.uids_accepted + removes.uids_accepted, self._planned_members or 0
            )
            self._compact()

    def _compact(self) -> None:
        """Once per cohort run, delete the member rows this run's re-sends superseded (and
        any a run that died left). A failure costs only rows the next run compacts (its
        plan finds them), never what MoEngage accepted: each uid keeps its newest row."""
        with self._counts:
            resent = self._resent
        if not (resent or self._uncompacted):
            return
        try:
            self.state.compact(self.spec, self.key, self.run_id, everyone=self._uncompacted)
        except WarehouseError as exc:
            self.progress.message(
                f"model '{self.spec.model}': the state keeps older rows of the uids this run "
                f"re-sent, which the next run deletes ({exc})"
            )

    def _billed(self) -> int | None:
        """Bytes the warehouse billed for the cohort's jobs in this run so far; None where
        the engine reports no cost."""
        billed = self.warehouse.billed(self.spec.unique_id)
        return None if billed is None else billed - self._billed_before

    def _members_after(self) -> int | None:
        """The cohort's members in the state as the run ends; None if the warehouse fails.

        After a clean run, the plan's count plus what the checkpoints wrote: each added uid
        was not in the state, each removed one was, and the lock kept every other writer
        out. Otherwise (a failure, a full refresh's replacing writes) the state is counted.
        """
        if self._planned_members is not None and self.result.status in (SYNCED, GUARDED):
            return self._planned_members + self._written
        try:
            return self.state.member_count(self.spec, self.key)
        except WarehouseError:
            return None

    def _plan(self, full_refresh: bool) -> None:
        counts = self.warehouse.audience_stats(self.spec)
        delta = self.state.plan(self.spec, self.key, full_refresh, self.now)
        if self.state.ready:
            self.record = self.state.cohort_record(self.spec, self.key)
        r = self.result
        r.uids_total = delta.distinct
        r.dropped = counts.dropped(delta.distinct)
        self._planned_members = None if full_refresh else delta.current
        self._uncompacted = delta.uncompacted
        r.unchanged = delta.unchanged
        r.planned_add = delta.to_add
        r.planned_resend = delta.to_resend
        if self.mirror:
            r.planned_remove = delta.to_remove
        else:
            r.left_but_kept = delta.to_remove
        if self.record is not None:
            self.rename = (self.record.cohort_name, self.record.cohort_description) != (
                self.spec.cohort_name,
                self.spec.description,
            )
        else:
            # Members but no record (state from before names were kept): send the name.
            self.rename = delta.current > 0
        self.guard = self._guard(delta)

    @property
    def _renaming(self) -> bool:
        """Whether this run changes a name or description MoEngage knows."""
        return self.rename and self.record is not None and self.record.cohort_name is not None

    def _guard(self, delta: Delta) -> str | None:
        """Why a mirror run is refused: it would empty the cohort or remove too many."""
        if not self.mirror or not self.result.planned_remove or self.allow_large_removal:
            return None
        removing, current = self.result.planned_remove, delta.current
        fraction = self.spec.max_remove_fraction
        if delta.distinct == 0:
            why = f"the model has no valid uid, so all {current:,} members would be removed"
        elif removing > fraction * current:
            why = (
                f"{removing:,} of {current:,} members ({removing / current:.0%}) would be "
                f"removed, more than max_remove_fraction = {fraction:g}"
            )
        else:
            return None
        return (
            f"model '{self.spec.model}': guarded, nothing sent: {why}. If the model is right, "
            "re-run with --allow-large-removal (or raise meta.moengage.max_remove_fraction); "
            "if not, fix the model first"
        )

    def _send(self, full_refresh: bool, adds: Tally, removes: Tally) -> None:
        """Removals first, then additions and re-sends. Removals MoEngage refuses (a
        workspace without them answers 400) never hold back the additions: those go, then
        the cohort fails naming the refusal; the next run retries the removals."""
        assert self.client is not None
        self.progress.cohort_started(self.result)
        refused: RequestRejected | None = None
        if self.mirror and self.result.planned_remove:
            try:
                self.client.send_all(self._bodies(REMOVE), removes, self._checkpoint(REMOVE))
            except RequestRejected as exc:
                refused = exc
        bodies = self._add_bodies(full_refresh)
        self.client.send_all(bodies, adds, self._checkpoint(ADD, full_refresh))
        self._count_too_long()
        if refused is not None:
            left = self.result.planned_remove - removes.uids_accepted
            raise CohortError(
                f"model '{self.spec.model}': MoEngage refused the removals (HTTP "
                f"{refused.status}: {refused.detail}); "
                f"{left:,} members who left the model are still in the segment, the "
                "additions and re-sends were sent. Set meta.moengage.mode: add to stop "
                "removing, or have removals enabled for the workspace; the next run "
                "retries them"
            )

    def _count_too_long(self) -> None:
        """uids too long for any request (where no max_uid_length left them out in the
        warehouse) were left out of the bodies: each is counted as dropped, not to add, and
        named. A member who left but is too long to remove fails the cohort."""
        packer = self._packers.get(ADD)
        if packer is not None and packer.too_long:
            r, count = self.result, packer.too_long
            r.dropped[TOO_LONG] += count
            r.uids_total = max(r.uids_total - count, 0)
            r.planned_add = max(r.planned_add - count, 0)
            self.progress.message(
                f"{self.spec.model}: {count:,} uids not sent: {_too_long(packer)}; set "
                "meta.moengage.max_uid_length to leave them out in the warehouse"
            )
        packer = self._packers.get(REMOVE)
        if packer is not None and packer.too_long:
            raise CohortError(
                f"model '{self.spec.model}': {packer.too_long:,} members who left the model "
                f"cannot be removed: {_too_long(packer)}; raise MOENGAGE_MAX_BODY_BYTES"
            )

    def _remember(self, adds: Tally) -> None:
        """Record the model, and the name and description once a request carried them."""
        sent = adds.accepted > 0
        if not sent and self.result.status != SYNCED:
            return
        self.result.renamed = sent and self._renaming
        old = self.record or CohortRecord(self.spec.model, None, None)
        self.state.save_cohort(
            self.spec,
            self.key,
            CohortRecord(
                model=self.spec.model,
                cohort_name=self.spec.cohort_name if sent else old.cohort_name,
                cohort_description=self.spec.description if sent else old.cohort_description,
            ),
        )

    def _checkpoint(self, action: str, full_refresh: bool = False) -> Callable[[Body], None]:
        """What runs after each accepted body: record its uids, then show progress."""
        spec, key = self.spec, self.key
        if action == REMOVE:
            removed = GroupCommit(self._owned(self._counted(-1, self.state.record_removed)))

            def accepted_removal(body: Body) -> None:
                removed.record(body.uids)
                self.progress.sent(self.result, action, len(body.uids))

            return accepted_removal
        # A full refresh resends every member; each accepted body replaces its uids' rows,
        # so the state stays true even if the refresh stops halfway.
        added = GroupCommit(
            self._owned(
                self._counted(
                    1,
                    lambda cohort, at, uids: self.state.record_added(
                        cohort, at, uids, self.run_id, replace=full_refresh
                    ),
                )
            )
        )
        resent = GroupCommit(
            self._owned(lambda uids: self.state.record_resent(spec, key, uids, self.run_id))
        )

        def accepted(body: Body) -> None:
            if body.resent < len(body.uids):
                added.record(body.new_uids)
            if body.resent:
                resent.record(body.resent_uids)
                with self._counts:
                    self._resent += body.resent
            self.progress.sent(self.result, action, len(body.uids))

        return accepted

    def _add_bodies(self, full_refresh: bool) -> Iterable[Body]:
        """New uids, then the re-sends due (or a rename's few members) in the same bodies."""
        if full_refresh:
            return self._bodies(ADD, everyone=True)
        r = self.result
        if r.planned_resend:
            again: Change | None = Change.DUE
        elif self.rename and not r.planned_add:
            again = Change.RENAME
        else:
            again = None
        if not r.planned_add and again is None:
            return iter(())
        # The plan counted the snapshot's new uids: with none, their anti-join is not run.
        return self._bodies(ADD, resend=again, new=bool(r.planned_add))

    def _bodies(
        self,
        action: str,
        everyone: bool = False,
        resend: Change | None = None,
        new: bool = True,
    ) -> Iterable[Body]:
        packer = BodyPacker(
            action=ADD if action == ADD else REMOVE,
            partner=self.settings.partner,
            cohort_name=self.spec.cohort_name,
            cohort_id=self.spec.cohort_id,
            description=self.spec.description,
            max_bytes=self.settings.max_body_bytes,
        )
        self._packers[action] = packer
        kind = Change.LEFT if action == REMOVE else Change.EVERYONE if everyone else Change.NEW
        stream: Iterable[list[str]] = (
            self.state.stream(self.spec, self.key, kind, now=self.now) if new else iter(())
        )
        if resend is None:
            return packer.pack(stream)
        again = self.state.stream(self.spec, self.key, resend, now=self.now)
        return packer.pack(stream, resend=again)

    def _counted(
        self, sign: int, write: Callable[[CohortSpec, StateKey, list[str]], None]
    ) -> Callable[[list[str]], None]:
        """A checkpoint write of this cohort that counts the members it adds or removes."""

        def counted(batch: list[str]) -> None:
            write(self.spec, self.key, batch)
            with self._counts:
                self._written += sign * len(batch)

        return counted

    def _owned(self, write: Callable[[list[str]], None]) -> Callable[[list[str]], None]:
        """A checkpoint write that first checks the run still holds the cohort's lock. It
        runs in a send thread, outside run()'s billing: its jobs are billed to the cohort
        here."""

        def checked(batch: list[str]) -> None:
            with self.warehouse.billing(self.spec.unique_id):
                self.held.check()
                write(batch)

        return checked

    def _tally(self, adds: Tally, removes: Tally) -> None:
        r = self.result
        with self._counts:
            r.resent = self._resent
        r.added, r.removed = adds.uids_accepted - r.resent, removes.uids_accepted
        r.uids_sent = adds.uids_accepted + r.removed
        r.requests = adds.requests + removes.requests
        r.retries = adds.retries + removes.retries
        if r.status != SYNCED:
            r.uids_unsynced = max(r.planned_add - r.added, 0) + max(r.planned_remove - r.removed, 0)


def _too_long(packer: BodyPacker) -> str:
    """What a packer left out, for a message."""
    size, start = packer.too_long_example or (0, "")
    return (
        f"each is too long for one request of at most {packer.max_bytes:,} bytes "
        f"(the first takes {size:,} encoded bytes and starts {start!r})"
    )


def profile_target(options: SyncOptions) -> ProfileTarget:
    """The dbt profile target the options name, rendered by dbt."""
    return load_profile_target(
        options.project_dir,
        options.profiles_dir,
        options.target,
        options.environ,
        profile=options.profile,
        cli_vars=options.vars,
    )


def check_built_for(manifest: Manifest, target: ProfileTarget) -> None:
    """Refuse a manifest dbt wrote for another kind of warehouse than the target the run
    reads: none of its relations can be there."""
    built = manifest.adapter_type
    if built is None or built == target.type:
        return
    raise ManifestError(
        f"{manifest.path} was built for a {built} warehouse, and this run reads "
        f"{target.where}, a {target.type} warehouse, so no model of the manifest is there: "
        f"build (or `dbt parse`) with the target the sync reads (`dbt build --target "
        f"{target.target_name}`), or sync with --target set to the one that built it"
    )


def checked_column(
    warehouse: Engine, spec: CohortSpec, manifest: Manifest, target: ProfileTarget
) -> CohortSpec:
    """The spec with its uid column as the warehouse spells it. A missing relation that the
    manifest puts in another database than the target's says so: the manifest was built
    for another target, and building the model in this one is not the fix."""
    try:
        column = warehouse.check_uid_column(spec)
    except RelationMissing:
        built = manifest.target_database_of(spec.unique_id)
        reads = str(getattr(target.credentials, "database", "") or "")
        if built is None or not reads or built.casefold() == reads.casefold():
            raise
        raise RelationMissing(
            f"model '{spec.model}': relation {spec.relation_name} is not in the warehouse "
            f"this run reads: {manifest.path} was built for database '{built}', and "
            f"{target.where} reads database '{reads}'. Build (or `dbt parse`) with the "
            f"target the sync reads (`dbt build --target {target.target_name}`), or sync "
            "with --target set to the one that built the manifest"
        ) from None
    return replace(spec, uid_column=column.name)


def state_key(settings: MoEngageSettings) -> StateKey:
    """The state key of a destination: its endpoint (normalized base URL) and workspace."""
    return StateKey(normalize_endpoint(settings.base_url), settings.workspace_id)


def discover_cohorts(
    options: SyncOptions, manifest: Manifest | None = None, settle: bool = True
) -> Discovery:
    """The selected cohorts of the manifest, validated (no warehouse, no API).

    With `settle`, cohorts sharing a cohort_id or cohort_name are all refused, as nothing
    says which is live; a sync settles them with the state instead.
    """
    manifest = manifest or load_manifest(options.target_dir)
    nodes = list(manifest.cohort_nodes())
    selected = select_cohorts(options, manifest, [n.unique_id for n in nodes])
    discovery = discover(nodes, selected, cohort_defaults(options.environ))
    return discovery.settle() if settle else discovery


def cohort_defaults(environ: Mapping[str, str]) -> CohortDefaults:
    """Run-wide cohort defaults from the environment (MOENGAGE_RESEND_AFTER)."""
    raw = environ.get("MOENGAGE_RESEND_AFTER", "").strip()
    if not raw:
        return CohortDefaults()
    try:
        return CohortDefaults(resend_after=parse_duration(raw))
    except ValueError:
        raise SettingsError(f"MOENGAGE_RESEND_AFTER = {raw!r}: not {DURATION_HINT}") from None


@dataclass
class Validation:
    """What `validate` found: the cohorts that would sync, problems, and warnings."""

    specs: list[CohortSpec]
    problems: list[str]
    warnings: list[str]
    warehouse_checked: bool = False
    # Cohorts sharing a cohort_id or cohort_name, judged without the sync state: which of
    # them keeps syncing, the state says (`--warehouse` reads it).
    unsettled: list[str] = field(default_factory=list)


def validate(options: SyncOptions, check_warehouse: bool = False) -> Validation:
    """Every check a sync makes before sending, without the API; the warehouse if asked.

    Settings of the default destination that are missing or wrong raise SettingsError
    (exit 2, as `sync` does); a named destination's are problems of its cohorts.
    """
    manifest = load_manifest(options.target_dir)
    discovery = discover_cohorts(options, manifest, settle=False)
    problems: list[str] = []
    warnings = manifest.near_misses()
    senders: dict[str | None, MoEngageSettings] = {}
    every = [*discovery.specs, *discovery.contested]
    for name in dict.fromkeys(spec.destination for spec in every):
        try:
            senders[name] = MoEngageSettings.from_env(options.environ, destination=name)
        except SettingsError as exc:
            if name is None:
                raise
            problems.append(str(exc))
            continue
        warning = data_center_warning(options.environ, name)
        if warning:
            warnings.append(warning)
    try:
        NotifySettings.from_env(options.environ)
    except SettingsError as exc:
        warnings.append(f"{exc}; no notification would be sent")
    if not check_warehouse:
        discovery = discovery.settle()
        found = discovery.problems
        problems[:0] = [str(p) for p in found if not isinstance(p, UnsettledConflict)]
        unsettled = [str(p) for p in found if isinstance(p, UnsettledConflict)]
        warnings.extend(default_id_warnings(manifest.cohort_nodes(), discovery.specs))
        warnings.extend(doubtful_names(discovery.specs))
        return Validation(discovery.specs, problems, warnings, unsettled=unsettled)
    target = profile_target(options)
    check_built_for(manifest, target)
    state_schema = options.state_schema or options.environ.get("MOENGAGE_STATE_SCHEMA") or None
    with connect(
        target, options.project_dir, state_schema=state_schema, read_only=True
    ) as warehouse:
        state = StateStore(warehouse)
        status = state.prepare(create=False)
        if status.note:
            warnings.append(status.note)
        discovery = discovery.settle(_ownership(state, senders))
        problems[:0] = [str(p) for p in discovery.problems]
        specs = []
        for spec in discovery.specs:
            try:
                spec = checked_column(warehouse, spec, manifest, target)
                specs.append(spec)
                long = warehouse.long_uids(spec)
                if long is not None:
                    warnings.append(long.message(spec))
            except CohortError as exc:
                problems.append(str(exc))
        keys = {destination: state_key(settings) for destination, settings in senders.items()}
        try:
            left = find_left_behind(StateHistory(warehouse), keys, manifest.cohort_nodes())
            warnings.extend(c.message() for c in left)
        except WarehouseError as exc:
            warnings.append(f"could not look for cohorts left behind in the sync state: {exc}")
    warnings.extend(default_id_warnings(manifest.cohort_nodes(), discovery.specs))
    warnings.extend(doubtful_names(discovery.specs))
    return Validation(specs, problems, warnings, warehouse_checked=True)


def select_cohorts(
    options: SyncOptions, manifest: Manifest, cohort_ids: list[str]
) -> tuple[str, ...]:
    """Unique ids of the cohorts `--select`/`--exclude` pick (all when neither is given),
    resolved against the manifest being synced."""
    if not options.select and not options.exclude:
        return ()
    chosen = resolve_selection(
        manifest.path, options.project_dir, options.select, options.exclude, options.environ
    )
    picked = tuple(uid for uid in cohort_ids if uid in chosen)
    if not picked:
        names = ", ".join(uid.rsplit(".", 1)[-1] for uid in cohort_ids) or "none"
        raise ConfigError(
            f"{shown_selection(options.select, options.exclude)} selects no cohort model "
            f"({len(chosen)} models selected); cohort models: {names}"
        )
    return picked


def _only_built(
    manifest: Manifest, discovery: Discovery, report: RunReport, progress: Progress
) -> Discovery:
    """Keep the cohorts whose model built, and passed its tests, in run_results.json."""
    statuses = load_run_results(manifest.path.parent)
    kept: list[CohortSpec] = []
    for spec in discovery.specs:
        outcome = build_outcome(manifest, spec.unique_id, statuses)
        if outcome.built:
            kept.append(spec)
            continue
        result = _result(spec, SKIPPED, f"not synced: {outcome.reason}")
        # Left out of the invocation (`build --select`) is the user's choice, not a failure.
        result.unselected = not outcome.selected
        report.results.append(result)
        progress.cohort_finished(result)
    return Discovery(specs=kept, problems=discovery.problems)


def _invalid_results(
    problems: Iterable[CohortSpecError], progress: Progress, manifest: Manifest
) -> list[CohortResult]:
    """One `invalid` result per model with problems, in the mode its config declares."""
    by_model: dict[str, list[CohortSpecError]] = {}
    for problem in problems:
        by_model.setdefault(problem.model, []).append(problem)
        progress.problem(str(problem))
    modes = {node.name: declared_mode(node.meta) for node in manifest.cohort_nodes()}
    return [
        CohortResult(
            model=model,
            cohort_id=None,
            cohort_name=None,
            mode=modes.get(model, "-"),
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

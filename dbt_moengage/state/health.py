"""Each cohort of the project as the sync state in the warehouse has it, for `status` and
`report`: members MoEngage was told of, its last run, its last success (and its latest runs,
for the report). Read only. report/status.py prints it; `StatusReport.to_json` is what
`status --output json` prints.

Health, per cohort, from its latest run row:
    ok            the latest run synced
    failing       the latest run failed, was guarded (a mirror removal refused), was
                  interrupted, or did not sync because its model failed in dbt (not_built,
                  `--only-built`): the command exits 1
    running       a sync is in progress: it holds the cohort's lock
    stopped       the latest run says 'running' but holds no lock: it was killed outright
                  (kill -9, a lost machine) and none ran since; the command exits 1, and
                  the next sync resumes where it stopped
    sync running  DuckDB: another process (a sync, or dbt) holds the database file for
                  writing, and DuckDB lets no other process open it meanwhile, so nothing
                  of the state can be read; exit 0, as for `running`
    never synced  no run row and no member for the cohort under this endpoint and workspace
    no history    members in the state but no run row (moengage_sync_runs was dropped, or
                  its rows deleted): the members are shown, the runs are missing
    unknown       its destination's workspace or data center is not set, so the state
                  cannot be keyed
The command also exits 1 when a cohort's config is invalid (it cannot sync), and 2 when it
cannot start (no manifest, no profile, the default destination's workspace not set). A
note names what the state lacks: no state at all, none for this endpoint and workspace
while it holds others (a data center or base URL that differs from the sync's), a dropped
table.

Cohorts left behind (the state holds them, no model of the project syncs them: see
state/left_behind.py) are listed after the project's, as `left behind`; nothing failed, so
they leave the exit code as it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..cohorts import CohortSpec, Discovery, Owner
from ..errors import LockTimeout, SettingsError
from ..manifest import load_manifest
from ..pipeline import SyncOptions, discover_cohorts, profile_target, state_key
from ..report import FAILED, GUARDED, INTERRUPTED, NOT_BUILT, SYNCED
from ..settings import MoEngageSettings, destination_prefix
from ..warehouse import connect
from . import SCHEMA_VERSION, StateKey, StateStore, utcnow
from .history import RunRecord, StateHistory
from .left_behind import LeftBehind, find_left_behind
from .schema import MEMBERS, RUNS

OK = "ok"
FAILING = "failing"
RUNNING = "running"
STOPPED = "stopped"
SYNC_RUNNING = "sync running"
NEVER_SYNCED = "never synced"
NO_HISTORY = "no history"
UNKNOWN = "unknown"
# Run statuses that make a cohort failing (exit 1). A dry run writes no run row.
FAILING_STATUSES = (FAILED, GUARDED, INTERRUPTED, NOT_BUILT)
RUNNING_STATUS = "running"
# A DuckDB file held for writing is waited for this long (a process that opens it for a
# moment lets go); still held, it is a sync (or dbt) at work: said at once, not waited out.
DUCKDB_WAIT_SECONDS = 1.0
HELD_NOTE = (
    "the DuckDB database is held for writing by another process: a sync is running (or dbt "
    "is writing the database), and DuckDB lets no other process open the file until it ends, "
    "so members and runs cannot be read now"
)


@dataclass
class CohortStatus:
    """One cohort of the project and what the state says of it."""

    spec: CohortSpec
    endpoint: str = ""
    members: int = 0
    last_run: RunRecord | None = None
    last_success: datetime | None = None
    # Why the state could not be read for it (its destination's settings).
    problem: str | None = None
    # Its latest runs, oldest first (filled for the HTML report).
    runs: list[RunRecord] = field(default_factory=list)
    # Its latest run says 'running' but holds no lock any more (it was killed).
    stopped: bool = False
    # The DuckDB file is held for writing by another process: nothing could be read.
    held: bool = False

    @property
    def health(self) -> str:
        """ok, failing, running, stopped, sync running, never synced, no history or unknown
        (see the module docstring)."""
        if self.problem is not None:
            return UNKNOWN
        if self.held:
            return SYNC_RUNNING
        if self.last_run is None:
            return NO_HISTORY if self.members else NEVER_SYNCED
        if self.last_run.status == SYNCED:
            return OK
        if self.last_run.status == RUNNING_STATUS:
            return STOPPED if self.stopped else RUNNING
        return FAILING

    @property
    def error(self) -> str | None:
        """The latest run's error, when the cohort is failing or its run was stopped."""
        if self.last_run is None:
            return None
        if self.health == STOPPED:
            return (
                f"run {self.last_run.run_id} stopped without finishing (the process was "
                "killed or lost its machine); the next sync resumes where it stopped"
            )
        if self.health != FAILING:
            return None
        return self.last_run.error or f"the last run ended {self.last_run.status}"


@dataclass
class StatusReport:
    """Every selected cohort's status, and what the user should know about the state."""

    generated_at: datetime
    state_schema: str
    # None when it could not be looked at (the DuckDB file was held: `state_held`).
    state_found: bool | None
    cohorts: list[CohortStatus]
    notes: list[str] = field(default_factory=list)
    # Cohorts whose config is invalid: they cannot sync.
    problems: list[str] = field(default_factory=list)
    # Cohorts the state holds that no model of the project syncs (never an exit 1).
    left_behind: list[LeftBehind] = field(default_factory=list)
    # DuckDB: another process held the database file for writing (a sync running).
    state_held: bool = False

    @property
    def exit_code(self) -> int:
        """1 when a cohort is failing or stopped, or a cohort's config is invalid; else 0
        (cohorts left behind, a sync running, no history included: nothing failed)."""
        failing = any(c.health in (FAILING, STOPPED) for c in self.cohorts)
        return 1 if failing or self.problems else 0

    def to_json(self) -> dict[str, Any]:
        """The report as `status --output json` prints it."""
        now = self.generated_at
        return {
            "generated_at": _iso(now),
            "state_schema": self.state_schema,
            "state_found": self.state_found,
            "state_held": self.state_held,
            "exit_code": self.exit_code,
            "cohorts": [_cohort_json(c, now) for c in self.cohorts],
            "left_behind": [c.to_json(now) for c in self.left_behind],
            "problems": self.problems,
            "notes": self.notes,
        }


def collect_status(options: SyncOptions, history_runs: int = 0) -> StatusReport:
    """Read each selected cohort's status from the state (and its latest `history_runs`
    runs); never creates or changes the state."""
    manifest = load_manifest(options.target_dir)
    discovery = discover_cohorts(options, manifest, settle=False)
    every = [*discovery.specs, *discovery.contested]
    keys, unkeyed = _state_keys(options.environ, {spec.destination for spec in every})
    state_schema = options.state_schema or options.environ.get("MOENGAGE_STATE_SCHEMA") or None
    notes: list[str] = []
    target = profile_target(options)
    try:
        warehouse = connect(
            target,
            options.project_dir,
            state_schema=state_schema,
            read_only=True,
            wait_seconds=DUCKDB_WAIT_SECONDS,
        )
    except LockTimeout:
        if history_runs > 0:
            # The report draws runs: a page of none would replace a good one.
            raise LockTimeout(f"{HELD_NOTE}; the report needs them") from None
        schema = state_schema or str(getattr(target.credentials, "schema", None) or "main")
        return _held(discovery, unkeyed, schema)
    with warehouse as engine:
        # A run row is 'running' while its lock row is beaten within this window.
        with contextlib.suppress(SettingsError):
            engine.lock_stale_seconds = MoEngageSettings.from_env(
                options.environ, require_credentials=False
            ).lock_stale_seconds
        store = StateStore(engine)
        # Refuses state written by a newer dbt-moengage (StateVersionError, exit 2).
        prepared = store.prepare(create=False)
        history = StateHistory(engine)
        if history.exists and prepared.version < SCHEMA_VERSION:
            notes.append(
                f"the sync state in schema {engine.state_schema!r} is version "
                f"{prepared.version}; the next `dbt-moengage sync` upgrades it to "
                f"{SCHEMA_VERSION}. Read as it is until then"
            )
        if not history.has_members and not history.has_runs:
            notes.append(
                f"no sync state in schema {engine.state_schema!r}: nothing was synced from "
                "this warehouse yet (or --state-schema / MOENGAGE_STATE_SCHEMA names another "
                "schema); `dbt-moengage sync` creates it"
            )
        elif not history.has_runs:
            notes.append(
                f"the sync state in schema {engine.state_schema!r} has no {RUNS} table "
                f"(dropped?): members are read from {MEMBERS}, but each cohort's runs, last "
                "success and errors are missing (`no history`); the next `dbt-moengage sync` "
                "creates the table again"
            )
        elif not history.has_members:
            notes.append(
                f"the sync state in schema {engine.state_schema!r} has no {MEMBERS} table "
                "(dropped?): members show 0 although runs synced some; the next "
                "`dbt-moengage sync` creates it and sends every member again"
            )
        ownership: dict[tuple[str | None, str], Owner] = {}
        for destination, key in keys.items():
            for cohort_id, owner in store.owners(key).items():
                ownership[(destination, cohort_id)] = owner
        discovery = discovery.settle(ownership)
        statuses = [CohortStatus(spec) for spec in discovery.specs]
        for destination, key in keys.items():
            mine = [s for s in statuses if s.spec.destination == destination]
            if mine:
                _read(history, key, mine, history_runs)
        for status in statuses:
            status.problem = unkeyed.get(status.spec.destination)
        notes.extend(_elsewhere(history, keys, statuses))
        return StatusReport(
            generated_at=utcnow(),
            state_schema=engine.state_schema,
            state_found=history.has_members or history.has_runs,
            cohorts=statuses,
            notes=notes,
            problems=[str(p) for p in discovery.problems],
            left_behind=find_left_behind(history, keys, manifest.cohort_nodes()),
        )


def _held(discovery: Discovery, unkeyed: dict[str | None, str], schema: str) -> StatusReport:
    """The report when another process holds the DuckDB file for writing: nothing of the
    state can be read, so each cohort is `sync running`; invalid configs still show (the
    manifest says so), and shared ids stay unsettled (the state would settle them)."""
    statuses = [CohortStatus(spec, held=True) for spec in [*discovery.specs, *discovery.contested]]
    for status in statuses:
        status.problem = unkeyed.get(status.spec.destination)
    return StatusReport(
        generated_at=utcnow(),
        state_schema=schema,
        state_found=None,
        cohorts=statuses,
        notes=[f"{HELD_NOTE}; run `dbt-moengage status` again once it finished"],
        problems=[str(p) for p in discovery.problems],
        state_held=True,
    )


def _elsewhere(
    history: StateHistory, keys: Mapping[str | None, StateKey], statuses: list[CohortStatus]
) -> list[str]:
    """A note for each destination whose endpoint and workspace the state holds nothing for
    while it holds other keys: the settings likely name another data center or workspace
    than the syncs used."""
    known = history.keys()
    notes = []
    for destination, key in keys.items():
        mine = [s for s in statuses if s.spec.destination == destination]
        if key in known or not known or any(s.members or s.last_run for s in mine):
            continue
        prefix = destination_prefix(destination) if destination else "MOENGAGE_"
        others = ", ".join(
            f"{k.endpoint} workspace {k.workspace_id} ({n:,} cohort{'' if n == 1 else 's'})"
            for k, n in sorted(known.items(), key=lambda item: item[0].params)
        )
        check = []
        if any(k.workspace_id == key.workspace_id for k in known):
            check.append(f"{prefix}DATA_CENTER (or {prefix}BASE_URL)")
        elif any(k.endpoint == key.endpoint for k in known):
            check.append(f"{prefix}WORKSPACE_ID")
        else:
            check = [f"{prefix}DATA_CENTER (or {prefix}BASE_URL)", f"{prefix}WORKSPACE_ID"]
        where = f"destination '{destination}': " if destination else ""
        notes.append(
            f"{where}no sync state for endpoint {key.endpoint} and workspace "
            f"{key.workspace_id}, but the state holds runs for {others}: if the cohorts "
            f"synced there, check {' and '.join(check)}; status reads the state of the "
            "endpoint and workspace they name, as sync does"
        )
    return notes


def _state_keys(
    environ: Mapping[str, str], destinations: set[str | None]
) -> tuple[dict[str | None, StateKey], dict[str | None, str]]:
    """The state key of each destination, and why a named one has none.

    The key needs the workspace id and the data center (or base URL), not the API key.
    The default destination's missing is a SettingsError (exit 2), as for `sync`.
    """
    keys: dict[str | None, StateKey] = {}
    unkeyed: dict[str | None, str] = {}
    for name in sorted(destinations, key=lambda d: d or ""):
        try:
            settings = MoEngageSettings.from_env(
                environ, require_credentials=False, destination=name
            )
            if not settings.workspace_id or not settings.base_url:
                prefix = destination_prefix(name) if name else "MOENGAGE_"
                where = f"destination '{name}': " if name else ""
                raise SettingsError(
                    f"{where}status reads the sync state of one workspace on one endpoint: set "
                    f"{prefix}WORKSPACE_ID and {prefix}DATA_CENTER (or {prefix}BASE_URL) as "
                    "for `sync`; the API key is not needed"
                )
        except SettingsError as exc:
            if name is None:
                raise
            unkeyed[name] = str(exc)
            continue
        keys[name] = state_key(settings)
    return keys, unkeyed


def _read(
    history: StateHistory, key: StateKey, statuses: list[CohortStatus], history_runs: int
) -> None:
    """Fill the statuses of one destination's cohorts from the state."""
    last = history.last_runs(key)
    successes = history.last_successes(key)
    runs = history.runs(key, history_runs) if history_runs > 0 else {}
    for status in statuses:
        cohort_id = status.spec.cohort_id
        status.endpoint = key.endpoint
        status.members = history.member_count(key, cohort_id)
        status.last_run = last.get(cohort_id)
        status.last_success = successes.get(cohort_id)
        status.runs = runs.get(cohort_id, [])
        run = status.last_run
        if run is not None and run.status == RUNNING_STATUS:
            _check_running(history, key, status, run)


def _check_running(
    history: StateHistory, key: StateKey, status: CohortStatus, run: RunRecord
) -> None:
    """Whether a run row saying 'running' is a run going on, or one that was killed.

    A run writes how it ended before it lets its lock go, so a row still 'running' once
    the lock is free was left by a run that stopped. Read again after the lock is seen
    free: a run that ended meanwhile has updated its row, one that began has its own.
    """
    if history.still_running(key, run.cohort_id, run.run_id):
        return
    again = history.last_runs(key).get(run.cohort_id)
    if again is not None and again.run_id == run.run_id and again.status == RUNNING_STATUS:
        status.stopped = True
    else:
        status.last_run = again


# -- as `status --output json` prints it ----------------------------------------------------


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat(timespec="seconds") + "Z"


def _seconds_ago(when: datetime, now: datetime) -> int:
    return int((now - when).total_seconds())


def _finished(when: datetime | None, now: datetime) -> dict[str, Any] | None:
    """When a run finished, and how many seconds before `now`; None when none did."""
    if when is None:
        return None
    return {"finished_at": _iso(when), "seconds_ago": _seconds_ago(when, now)}


def _cohort_json(c: CohortStatus, now: datetime) -> dict[str, Any]:
    run = c.last_run
    return {
        "model": c.spec.model,
        "cohort_id": c.spec.cohort_id,
        "cohort_name": c.spec.cohort_name,
        "destination": c.spec.destination,
        "mode": c.spec.mode,
        "endpoint": c.endpoint or None,
        "health": c.health,
        "members": None if c.held else c.members,
        "last_run": None
        if run is None
        else {
            "run_id": run.run_id,
            "status": run.status,
            "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at),
            "seconds_ago": _seconds_ago(run.started_at, now),
            "full_refresh": run.full_refresh,
            "added": run.added,
            "removed": run.removed,
            "resent": run.resent,
            "requests": run.requests,
            "retries": run.retries,
            "members_after": run.members_after,
            "bytes_billed": run.bytes_billed,
            "error": run.error,
        },
        "last_success": _finished(c.last_success, now),
        "error": c.error,
        "problem": c.problem,
    }

"""`dbt-moengage status`: each cohort of the project as the sync state in the warehouse has
it: members MoEngage was told of, its last run, its last success. Read only.

Health, per cohort, from its latest run row:
    ok            the latest run synced
    failing       the latest run failed, was guarded (a mirror removal refused) or was
                  interrupted: the command exits 1
    running       a sync is in progress: it holds the cohort's lock
    stopped       the latest run says 'running' but holds no lock: it was killed outright
                  (kill -9, a lost machine) and none ran since; the command exits 1, and
                  the next sync resumes where it stopped
    never synced  no run row for the cohort under this endpoint and workspace
    unknown       its destination's workspace or data center is not set, so the state
                  cannot be keyed
The command also exits 1 when a cohort's config is invalid (it cannot sync), and 2 when it
cannot start (no manifest, no profile, the default destination's workspace not set).

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

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from .cohorts import CohortSpec, Owner
from .errors import SettingsError
from .manifest import load_manifest
from .report import FAILED, GUARDED, INTERRUPTED, SYNCED, field_lines
from .settings import MoEngageSettings, destination_prefix
from .state import SCHEMA_VERSION, StateKey, StateStore, utcnow
from .state.history import RunRecord, StateHistory
from .state.left_behind import LEFT_BEHIND, LeftBehind, find_left_behind
from .sync import SyncOptions, discover_cohorts, profile_target, state_key
from .warehouse import connect

OK = "ok"
FAILING = "failing"
RUNNING = "running"
STOPPED = "stopped"
NEVER_SYNCED = "never synced"
UNKNOWN = "unknown"
# Run statuses that make a cohort failing (exit 1). A dry run writes no run row.
FAILING_STATUSES = (FAILED, GUARDED, INTERRUPTED)
RUNNING_STATUS = "running"
# A DuckDB file held by a running sync is waited for this long before giving up.
DUCKDB_WAIT_SECONDS = 5.0


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

    @property
    def health(self) -> str:
        """ok, failing, running, stopped, never synced or unknown (see the module
        docstring)."""
        if self.problem is not None:
            return UNKNOWN
        if self.last_run is None:
            return NEVER_SYNCED
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
    state_found: bool
    cohorts: list[CohortStatus]
    notes: list[str] = field(default_factory=list)
    # Cohorts whose config is invalid: they cannot sync.
    problems: list[str] = field(default_factory=list)
    # Cohorts the state holds that no model of the project syncs (never an exit 1).
    left_behind: list[LeftBehind] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when a cohort is failing or stopped, or a cohort's config is invalid; else 0
        (cohorts left behind included: nothing failed)."""
        failing = any(c.health in (FAILING, STOPPED) for c in self.cohorts)
        return 1 if failing or self.problems else 0

    def to_json(self) -> dict[str, Any]:
        """The report as `status --output json` prints it."""
        now = self.generated_at
        return {
            "generated_at": _iso(now),
            "state_schema": self.state_schema,
            "state_found": self.state_found,
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
    with connect(
        profile_target(options),
        options.project_dir,
        state_schema=state_schema,
        read_only=True,
        wait_seconds=DUCKDB_WAIT_SECONDS,
    ) as engine:
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
        if not history.exists:
            notes.append(
                f"no sync state in schema {engine.state_schema!r}: nothing was synced from "
                "this warehouse yet (or --state-schema / MOENGAGE_STATE_SCHEMA names another "
                "schema); `dbt-moengage sync` creates it"
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
        return StatusReport(
            generated_at=utcnow(),
            state_schema=engine.state_schema,
            state_found=history.exists,
            cohorts=statuses,
            notes=notes,
            problems=[str(p) for p in discovery.problems],
            left_behind=find_left_behind(history, keys, manifest.cohort_nodes()),
        )


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


# -- output --------------------------------------------------------------------------------


def ago(when: datetime | None, now: datetime) -> str:
    """How long before `now`, in the largest whole unit: 45s, 12m, 5h, 3d ago."""
    if when is None:
        return "never"
    seconds = max(int((now - when).total_seconds()), 0)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat(timespec="seconds") + "Z"


def _clock(when: datetime | None) -> str:
    return "-" if when is None else when.strftime("%Y-%m-%d %H:%M")


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
        "members": c.members,
        "last_run": None
        if run is None
        else {
            "run_id": run.run_id,
            "status": run.status,
            "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at),
            "seconds_ago": int((now - run.started_at).total_seconds()),
            "full_refresh": run.full_refresh,
            "added": run.added,
            "removed": run.removed,
            "resent": run.resent,
            "requests": run.requests,
            "retries": run.retries,
            "members_after": run.members_after,
            "error": run.error,
        },
        "last_success": None
        if c.last_success is None
        else {
            "finished_at": _iso(c.last_success),
            "seconds_ago": int((now - c.last_success).total_seconds()),
        },
        "error": c.error,
        "problem": c.problem,
    }


_HEALTH_STYLES = {
    OK: "green",
    FAILING: "red",
    STOPPED: "red",
    RUNNING: "yellow",
    UNKNOWN: "yellow",
}
_HEADERS = ("members", "added", "removed", "resent")


def _status_text(c: CohortStatus) -> Text:
    run = c.last_run
    word = run.status if run is not None and c.health != STOPPED else c.health
    return Text(word, style=_HEALTH_STYLES.get(c.health, ""))


def _numbers(c: CohortStatus) -> tuple[str, ...]:
    """Members, then the last run's added, removed and re-sent ('-' with no run)."""
    run = c.last_run
    if run is None:
        return (f"{c.members:,}", "-", "-", "-")
    return tuple(f"{value:,}" for value in (c.members, run.added, run.removed, run.resent))


def status_table(report: StatusReport) -> Table:
    """One row per cohort (needs a wide console)."""
    now = report.generated_at
    table = Table(title="MoEngage cohort status", title_justify="left")
    for name in ("model", "cohort_id", "cohort_name", "dest", "mode", "status"):
        table.add_column(name, no_wrap=True)
    for name in _HEADERS:
        table.add_column(name, justify="right", no_wrap=True)
    for name in ("last run (UTC)", "last success"):
        table.add_column(name, no_wrap=True)
    for c in report.cohorts:
        run = c.last_run
        table.add_row(
            Text(c.spec.model),
            Text(c.spec.cohort_id),
            Text(c.spec.cohort_name),
            Text(c.spec.destination or "default"),
            c.spec.mode,
            _status_text(c),
            *_numbers(c),
            "never" if run is None else f"{_clock(run.started_at)} ({ago(run.started_at, now)})",
            ago(c.last_success, now),
        )
    for left in report.left_behind:
        kept = left.cohort
        table.add_row(
            Text(kept.model or "-"),
            Text(kept.cohort_id),
            Text(kept.cohort_name or "-"),
            Text(left.destination or "default"),
            kept.mode or "-",
            Text(LEFT_BEHIND, style="yellow"),
            f"{kept.members:,}",
            "-",
            "-",
            "-",
            "-"
            if kept.synced_at is None
            else f"{_clock(kept.synced_at)} ({ago(kept.synced_at, now)})",
            ago(kept.synced_at, now),
        )
    return table


def stacked_status(report: StatusReport, width: int = 80) -> list[Text]:
    """A few short lines per cohort, for a console too narrow for the table; lines break
    between fields, so a name or a number is never cut."""
    now = report.generated_at
    lines = [Text("MoEngage cohort status", style="italic")]
    for c in report.cohorts:
        run = c.last_run
        head = Text(f"{c.spec.model} -> {c.spec.cohort_id} ({c.spec.mode}): ")
        head.append_text(_status_text(c))
        lines.append(head)
        fields = [
            f"name {c.spec.cohort_name!r}",
            f"dest {c.spec.destination or 'default'}",
            *(
                f"{name} {value}"
                for name, value in zip(_HEADERS, _numbers(c), strict=True)
                if run is not None or name == "members"
            ),
            "last run never"
            if run is None
            else f"last run {_clock(run.started_at)} UTC ({ago(run.started_at, now)})",
            f"last success {ago(c.last_success, now)}",
        ]
        lines.extend(field_lines(fields, width))
    for left in report.left_behind:
        kept = left.cohort
        head = Text(f"{kept.model or '-'} -> {kept.cohort_id} ({kept.mode or '-'}): ")
        head.append(LEFT_BEHIND, style="yellow")
        lines.append(head)
        fields = [
            f"name {kept.cohort_name!r}" if kept.cohort_name else "name -",
            f"dest {left.destination or 'default'}",
            f"members {kept.members:,}",
            "last synced never"
            if kept.synced_at is None
            else f"last synced {_clock(kept.synced_at)} UTC ({ago(kept.synced_at, now)})",
        ]
        lines.extend(field_lines(fields, width))
    return lines


def print_status(report: StatusReport, console: Console) -> None:
    """The table, or stacked lines on a narrow console; then errors, problems and notes,
    wrapped to the console. Text from the state is never read as markup."""
    table = status_table(report)
    natural = Measurement.get(console, console.options.update_width(1_000_000), table)
    if natural.maximum <= console.width:
        console.print(table)
    else:
        for line in stacked_status(report, console.width):
            console.print(line)
    for c in report.cohorts:
        if c.error:
            message = Text("error ", style="red")
            message.append(f"{c.spec.model}: {c.error}")
            console.print(message)
        if c.problem:
            message = Text("unknown ", style="yellow")
            message.append(f"{c.spec.model}: {c.problem}")
            console.print(message)
    for left in report.left_behind:
        message = Text("warning ", style="yellow")
        message.append(left.message())
        console.print(message)
    for problem in report.problems:
        message = Text("invalid ", style="red")
        message.append(problem)
        console.print(message)
    for note in report.notes:
        message = Text("note ", style="yellow")
        message.append(note)
        console.print(message)

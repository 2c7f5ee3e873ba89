"""Reading the sync state back, for `status` and `report`: what each cohort holds now, how
its runs went, and its members over time; and every cohort the state holds, for finding
those left behind (left_behind.py). Read only: nothing here creates or changes state.

Every read is keyed like the state (endpoint, workspace) and tolerates state written by
older runners: a missing table reads as nothing synced, a column an older version lacks
(`members_after`, `bytes_billed`) reads as NULL. Members and runs are read apart: members
with their run rows gone (`moengage_sync_runs` dropped) still count.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import WarehouseError
from ..warehouse.engine import Engine
from .schema import ALIASES, COHORTS, MEMBERS, RUNS, StateKey

# Run-row columns every state version has (since version 2), in the order RunRecord takes.
_RUN_COLUMNS = (
    "run_id",
    "cohort_id",
    "model",
    "mode",
    "full_refresh",
    "started_at",
    "finished_at",
    "status",
    "added",
    "removed",
    "resent",
    "requests",
    "retries",
    "error",
)
# Added after version 2 (read as NULL from state written before it), or read only where a
# table has them (left_but_kept: a dbt package's tables of old may lack it).
_OPTIONAL_RUN_COLUMNS = ("members_after", "left_but_kept", "bytes_billed")

_KEY = "endpoint = ? and workspace_id = ?"


def _ranked(where: str, keep: str) -> str:
    """The run rows under the key (and `where`) ranked per cohort, latest first (ties on
    started_at broken by run id, as the dbt package's moengage_cohort_status view does),
    and those `keep` names."""
    return f"""
        select {{columns}} from (
            select {{columns}}, row_number() over (
                partition by cohort_id order by started_at desc, run_id desc
            ) as run_rank
            from {{runs}} where {_KEY}{where}
        ) r where {keep}"""


_SQL = {
    "last_successes": f"""
        select cohort_id, max(finished_at) from {{runs}}
        where {_KEY} and status = 'synced' group by cohort_id""",
    # The latest `limit` runs of each cohort, oldest first.
    "run_history": _ranked("", "run_rank <= ? order by cohort_id, started_at, run_id"),
    # Each cohort's latest successful run.
    "last_synced": _ranked(" and status = 'synced'", "run_rank = 1"),
    # Each cohort's latest run, and latest successful run, other than run `?`.
    "runs_before": _ranked(" and run_id <> ?", "run_rank = 1"),
    "synced_before": _ranked(" and run_id <> ? and status = 'synced'", "run_rank = 1"),
    # The keys the state holds anything for, read from its small tables.
    "run_keys": "select endpoint, workspace_id, count(distinct cohort_id) from {runs} "
    "group by endpoint, workspace_id",
}


@dataclass(frozen=True)
class RunRecord:
    """One row of moengage_sync_runs as read back: one cohort in one run."""

    run_id: str
    cohort_id: str
    model: str
    mode: str
    full_refresh: bool
    started_at: datetime
    finished_at: datetime | None
    status: str
    added: int
    removed: int
    resent: int
    requests: int
    retries: int
    error: str | None
    # The cohort's member count right after the run; None for runs recorded before the
    # state kept it.
    members_after: int | None = None
    # Members in the state but not in the model when the run planned (add mode keeps them).
    left_but_kept: int | None = None
    # Bytes the warehouse billed for the run's jobs on the cohort; None where the engine
    # reports no cost, and for runs recorded before the state kept it (version 5).
    bytes_billed: int | None = None

    @property
    def model_uids(self) -> int | None:
        """The model's distinct valid uids in this run, when it synced and the state kept
        the count after it.

        A run that synced left the state as the members before it plus every uid of the
        model, so the model held `members_after - left_but_kept` (mirror mode removed those
        that left: its left_but_kept is 0).
        """
        if self.status != "synced" or self.members_after is None:
            return None
        return max(self.members_after - (self.left_but_kept or 0), 0)


@dataclass(frozen=True)
class StateCohort:
    """A cohort the state holds under one key, as the last syncs left it."""

    cohort_id: str
    # Members MoEngage was told of: distinct uids in the state.
    members: int
    # The model of its latest successful run (else of its latest run, else the one that
    # last sent its name); its mode, and when that run finished.
    model: str | None
    mode: str | None
    synced_at: datetime | None
    # The name MoEngage last got for it; None when no request carried one.
    cohort_name: str | None


@dataclass(frozen=True)
class MemberPoint:
    """A cohort's member count right after one run."""

    run: RunRecord
    # None when it cannot be known: before a full refresh, in state that kept no count.
    members: int | None
    # Worked back from later counts and the runs' adds and removes (runs recorded before
    # the state kept `members_after`), not read.
    estimated: bool = False


def members_over_time(runs: Sequence[RunRecord], current: int) -> list[MemberPoint]:
    """The member count after each of a cohort's runs (oldest first), `current` being the
    count the state holds now, after the latest run.

    A run's `members_after` is used where recorded. Where not, the count is worked back
    from the next one: before a run there were `after - added + removed` members. A full
    refresh re-adds everyone, so the count before it stays unknown unless recorded.
    """
    points: list[MemberPoint] = []
    after: int | None = current
    exact = True
    for run in reversed(runs):
        if run.members_after is not None:
            after, exact = run.members_after, True
        points.append(MemberPoint(run, after, estimated=after is not None and not exact))
        if after is None or run.full_refresh:
            after = None
        else:
            after = max(after - run.added + run.removed, 0)
            exact = False
    points.reverse()
    return points


class StateHistory:
    """Read-only views of one warehouse's sync state."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.present = engine.state_columns()

    @property
    def exists(self) -> bool:
        """Whether the state has its members and runs tables, keyed by endpoint."""
        return self.has_members and self.has_runs

    @property
    def has_members(self) -> bool:
        """Whether the state has its members table, keyed by endpoint."""
        return MEMBERS in self.present and "endpoint" in self.present[MEMBERS]

    @property
    def has_runs(self) -> bool:
        """Whether the state has its run rows' table, keyed by endpoint."""
        return RUNS in self.present and "endpoint" in self.present[RUNS]

    @property
    def keeps_members_after(self) -> bool:
        """Whether run rows record the member count after each run (newer state)."""
        return "members_after" in self.present.get(RUNS, set())

    def member_count(self, key: StateKey, cohort_id: str) -> int:
        """Members MoEngage was told of for the cohort: distinct uids in the state."""
        if not self.has_members:
            return 0
        row = self.engine.one("member_count", (*key.params, cohort_id))
        return int(row[0] or 0) if row is not None else 0

    def still_running(self, key: StateKey, cohort_id: str, run_id: str) -> bool:
        """Whether a run whose row says 'running' is really going on: it still holds the
        cohort's lock. When the warehouse cannot tell, it is taken to be."""
        try:
            return self.engine.lock_alive(key, cohort_id, run_id)
        except WarehouseError:
            return True

    def last_runs(self, key: StateKey) -> dict[str, RunRecord]:
        """Each cohort's latest run under the key, by cohort id."""
        return {cohort_id: runs[-1] for cohort_id, runs in self.runs(key, 1).items()}

    def last_successes(self, key: StateKey) -> dict[str, datetime]:
        """When each cohort's latest successful run finished, by cohort id."""
        if not self.has_runs:
            return {}
        rows = self._rows("last_successes", key.params)
        return {str(cohort_id): when for cohort_id, when in rows if when is not None}

    def last_synced(self, key: StateKey) -> dict[str, RunRecord]:
        """Each cohort's latest successful run under the key, by cohort id."""
        if not self.exists:
            return {}
        return {r.cohort_id: r for r in map(_run_record, self._rows("last_synced", key.params))}

    def before(
        self, key: StateKey, run_id: str
    ) -> tuple[dict[str, RunRecord], dict[str, RunRecord]]:
        """Each cohort's latest run, and latest successful run, other than run `run_id`: how
        things stood before that run (for its notification)."""
        if not self.has_runs:
            return {}, {}
        params = (*key.params, run_id)
        last = {r.cohort_id: r for r in map(_run_record, self._rows("runs_before", params))}
        synced = {r.cohort_id: r for r in map(_run_record, self._rows("synced_before", params))}
        return last, synced

    def keys(self) -> dict[StateKey, int]:
        """Every (endpoint, workspace) the run rows know, with how many cohorts each."""
        if not self.has_runs:
            return {}
        return {
            StateKey(str(endpoint), str(workspace)): int(count or 0)
            for endpoint, workspace, count in self._rows("run_keys", ())
        }

    def state_cohorts(self, key: StateKey, besides: Collection[str] = ()) -> list[StateCohort]:
        """The cohorts the state holds under the key, other than `besides`: those with
        members, or whose name MoEngage got (an emptied mirror cohort), by cohort id.

        Read from the small tables (runs, cohorts); members are counted only for the
        cohorts found there, never by scanning every cohort's members.
        """
        if not self.exists:
            return []
        names: dict[str, tuple[str, str | None]] = {}
        if COHORTS in self.present:
            for cohort_id, model, name in self.engine.all("cohort_names", key.params):
                names[str(cohort_id)] = (str(model), None if name is None else str(name))
        latest = self.last_runs(key)
        synced = self.last_synced(key)
        found: list[StateCohort] = []
        for cohort_id in sorted((set(names) | set(latest)) - set(besides)):
            members = self.member_count(key, cohort_id)
            model, name = names.get(cohort_id, (None, None))
            if not members and name is None:
                continue
            run = synced.get(cohort_id) or latest.get(cohort_id)
            found.append(
                StateCohort(
                    cohort_id=cohort_id,
                    members=members,
                    model=run.model if run is not None else model,
                    mode=run.mode if run is not None else None,
                    synced_at=synced[cohort_id].finished_at if cohort_id in synced else None,
                    cohort_name=name,
                )
            )
        return found

    def runs(self, key: StateKey, limit: int) -> dict[str, list[RunRecord]]:
        """The latest `limit` runs of each cohort under the key, oldest first."""
        if not self.has_runs:
            return {}
        found: dict[str, list[RunRecord]] = {}
        for record in map(_run_record, self._rows("run_history", (*key.params, limit))):
            found.setdefault(record.cohort_id, []).append(record)
        return found

    def _rows(self, name: str, params: Sequence[Any]) -> list[Any]:
        engine = self.engine
        fields = {alias: engine.state_table(table) for table, alias in ALIASES.items()}
        fields["columns"] = ", ".join(
            [
                *_RUN_COLUMNS,
                *(
                    column if column in self.present.get(RUNS, set()) else f"null as {column}"
                    for column in _OPTIONAL_RUN_COLUMNS
                ),
            ]
        )
        with engine.statements:
            cursor = engine.execute_sql(_SQL[name].format(**fields), params, name)
            try:
                return list(cursor.fetchall())
            finally:
                cursor.close()


def _int(value: Any) -> int:
    # Engines return counts as int or Decimal (Snowflake's NUMBER); NULL counts as 0.
    return int(value or 0)


def _run_record(row: Sequence[Any]) -> RunRecord:
    (run_id, cohort_id, model, mode, full_refresh, started_at, finished_at, status) = row[:8]
    added, removed, resent, requests, retries, error = row[8:14]
    members_after, left_but_kept, bytes_billed = row[14:]
    return RunRecord(
        run_id=str(run_id),
        cohort_id=str(cohort_id),
        model=str(model),
        mode=str(mode),
        full_refresh=bool(full_refresh),
        started_at=started_at,
        finished_at=finished_at,
        status=str(status),
        added=_int(added),
        removed=_int(removed),
        resent=_int(resent),
        requests=_int(requests),
        retries=_int(retries),
        error=None if error is None else str(error),
        members_after=None if members_after is None else int(members_after),
        left_but_kept=None if left_but_kept is None else int(left_but_kept),
        bytes_billed=None if bytes_billed is None else int(bytes_billed),
    )

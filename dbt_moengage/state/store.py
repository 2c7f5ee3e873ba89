"""Stage 6: what MoEngage has been told, kept in the user's warehouse.

`StateStore` runs the state flow through a warehouse engine: it creates and upgrades the
state tables, counts a cohort's change with one join of the model and the state, streams
each kind of change, records every accepted request (a checkpoint), and keeps run rows,
the name each cohort last got, and who owns a cohort id. Set work runs in the warehouse;
Python only sees the change, in batches.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import astuple, dataclass
from dataclasses import replace as with_fields
from datetime import UTC, datetime
from enum import StrEnum

from .. import __version__
from ..cohorts import CohortSpec, Owner
from ..errors import StateVersionError, WarehouseError
from ..report.results import RUNNING
from ..warehouse.engine import DEFAULT_FETCH_ROWS, Engine
from ..warehouse.redact import stored_error
from .locks import HeldLock, row_lock
from .schema import (
    ALIASES,
    LEGACY_ENDPOINT,
    LEGACY_SYNCED_AT,
    READABLE_SINCE,
    SCHEMA_VERSION,
    STATE_TABLES,
    TABLE_SINCE,
    VERSION,
    StateKey,
    StateStatus,
    schema_version_from,
    upgrade_statements,
)

# A run that changed at least this many member rows (and a tenth of the cohort) refreshes
# the planner's statistics where the engine keeps them (refresh_statistics).
ANALYZE_AFTER_ROWS = 10_000


class Change(StrEnum):
    """A kind of change between a cohort's model and what MoEngage was told."""

    NEW = "new"  # in the model, not in the state
    DUE = "due"  # in both, and due for a re-send (resend_after)
    RENAME = "rename"  # a few current members, to carry a new name or description
    LEFT = "left"  # in the state, no longer in the model
    EVERYONE = "everyone"  # every uid of the model (a full refresh)


_QUERIES = {
    Change.NEW: "add_delta",
    Change.DUE: "resend_delta",
    Change.RENAME: "rename_members",
    Change.LEFT: "remove_delta",
}


def utcnow() -> datetime:
    """Now in UTC, without tzinfo: the state tables hold UTC timestamps."""
    return datetime.now(UTC).replace(tzinfo=None)


def epoch_seconds(when: datetime) -> int:
    """Whole seconds since 1970 of a naive UTC timestamp."""
    return int((when - datetime(1970, 1, 1)).total_seconds())


@dataclass(frozen=True)
class Delta:
    """How a cohort's model differs from what MoEngage was told."""

    distinct: int
    to_add: int
    to_remove: int
    unchanged: int
    to_resend: int = 0
    # Members the state holds for the cohort now (before this run).
    current: int = 0
    # Rows the state holds for them: more than `current` while a re-send's older rows are
    # not yet compacted (a run that died before its cohort's end).
    rows: int = 0

    @property
    def uncompacted(self) -> bool:
        """Whether some member has rows a newer one supersedes (StateStore.compact)."""
        return self.rows > self.current


@dataclass(frozen=True)
class CohortRecord:
    """What the state says MoEngage got for a cohort: its model, name and description."""

    model: str
    cohort_name: str | None
    cohort_description: str | None


@dataclass
class RunRow:
    """One row of moengage_sync_runs: one cohort in one run (column order as the table)."""

    run_id: str
    endpoint: str
    workspace_id: str
    cohort_id: str
    model: str
    mode: str
    full_refresh: bool
    started_at: datetime
    finished_at: datetime | None = None
    # One of report.RUN_STATUSES, the list the dbt package's tests accept.
    status: str = RUNNING
    added: int = 0
    removed: int = 0
    resent: int = 0
    unchanged: int = 0
    left_but_kept: int = 0
    requests: int = 0
    retries: int = 0
    renamed: bool = False
    error: str | None = None
    # Members the state holds for the cohort once the run ended (null before version 3).
    members_after: int | None = None
    # Bytes the warehouse billed for the cohort's jobs up to this row's write (None where
    # the engine reports no cost, and before version 5).
    bytes_billed: int | None = None

    @property
    def key(self) -> StateKey:
        """The state key the run row belongs to."""
        return StateKey(self.endpoint, self.workspace_id)


class StateStore:
    """The sync state of one warehouse, through its engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ready = False
        # The state's version, once prepare found it.
        self.version = SCHEMA_VERSION

    # -- tables ----------------------------------------------------------------------------

    def prepare(self, create: bool) -> StateStatus:
        """Create the state tables that are missing and upgrade older ones, when allowed."""
        engine = self.engine
        create = create and not engine.read_only
        present = engine.state_columns()
        recorded = None
        if VERSION in present:
            row = engine.one("state_version")
            recorded = int(row[0]) if row is not None and row[0] is not None else None
        version = schema_version_from(present, recorded)
        where = f"the sync state in schema {engine.state_schema!r}"
        if version > SCHEMA_VERSION:
            raise StateVersionError(
                f"{where} is version {version}, written by a newer dbt-moengage; this one "
                f"knows version {SCHEMA_VERSION}: upgrade dbt-moengage"
            )
        missing = [t for t in STATE_TABLES if t not in present]
        if not create:
            # A table a later version added may be missing: reading never needs it.
            needed = [t for t in missing if TABLE_SINCE.get(t, 1) <= version]
            self.ready = not needed and version >= READABLE_SINCE
            self.version = version
            note = ""
            if present and version < SCHEMA_VERSION:
                note = (
                    f"{where} is version {version}; the next sync upgrades it to {SCHEMA_VERSION}"
                )
                if not self.ready:
                    note += ". Until then these counts assume nothing was sent"
            return StateStatus(ready=self.ready, note=note, version=version)
        with engine.ddl_lock():
            if missing:
                engine.run("create_schema")
                for table in missing:
                    engine.run(f"create_{table}")
            for statement in upgrade_statements(engine.STATE_TYPES, present):
                self._upgrade(statement)
            for index, steps in engine.state_indexes().items():
                self._index(index, steps)
            if recorded != SCHEMA_VERSION:
                runner = f"dbt-moengage {__version__}"
                engine.run("insert_version", (SCHEMA_VERSION, utcnow(), runner))
        self.ready = True
        upgraded = version if version < SCHEMA_VERSION and present else None
        note = ""
        if not present:
            # The dbt package's views check for the state when dbt builds them: built before
            # it existed, they read nothing until dbt builds them again.
            note = (
                f"created {where}; the dbt package's moengage_* views built before now read "
                "nothing until dbt builds them again (`dbt run --select package:moengage`, "
                "or your next `dbt build`)"
            )
        return StateStatus(ready=True, upgraded_from=upgraded, note=note)

    def _upgrade(self, template: str) -> None:
        """Run one of the upgrade's `alter table` statements."""
        fields = {alias: self.engine.state_table(table) for table, alias in ALIASES.items()}
        try:
            self.engine.execute_sql(template.format(**fields), (), "upgrade").close()
        except WarehouseError as exc:
            raise WarehouseError(
                f"upgrading the sync state in schema {self.engine.state_schema!r}: {exc}; "
                "the runner's role needs ALTER on the state tables once (or an admin runs "
                "one sync with a role that has it)"
            ) from None

    def _index(self, index: str, steps: list[str]) -> None:
        """Create one of the state's indexes (the statements named in `steps`)."""
        try:
            for step in steps:
                self.engine.run(step)
        except WarehouseError as exc:
            raise WarehouseError(
                f"creating index {index} of the sync state in schema "
                f"{self.engine.state_schema!r}: {exc}; the runner's role needs to own the state "
                "tables once (or an admin runs `dbt run-operation moengage_create_state_tables`,"
                " which creates it)"
            ) from None

    # -- the change ------------------------------------------------------------------------

    def due(self, cohort: CohortSpec, now: datetime) -> str:
        """SQL: whether state row `s` is due for a re-send under the cohort's resend_after.

        Each uid has its own phase (from its hash) on a cycle of 7/8 of resend_after; a
        member comes due at the first point of its phase at least 1/8 of resend_after after
        MoEngage last accepted it. So a member is re-sent at the latest resend_after after
        its acceptance, a run soon after a sync re-sends nothing, and a cohort first synced
        on one day comes due spread evenly over the days after, as does each later round.
        Members adopted from state written before endpoints are always due.
        """
        synced = self.engine.EPOCH.format("s.synced_at")
        legacy = f"{synced} < 86400"
        period = cohort.resend_after
        if period is None:
            return legacy
        if period == 0:
            return "1 = 1"
        rest = period // 8
        cycle = period - rest
        phase = self.engine.MOD.format(self.engine.UID_HASH.format("s.uid"), cycle)
        next_point = f"ceil(({synced} + {rest} + {phase}) / {cycle})"
        last_point = f"floor(({epoch_seconds(now)} + {phase}) / {cycle})"
        return f"{legacy} or {next_point} <= {last_point}"

    def plan(
        self, cohort: CohortSpec, key: StateKey, full_refresh: bool, now: datetime | None = None
    ) -> Delta:
        """Counts from one join of the model's uids with the state, in the warehouse."""
        if not self.ready:
            distinct = self.engine.count_model(cohort)
            return Delta(distinct=distinct, to_add=distinct, to_remove=0, unchanged=0)
        extra = {"due": self.due(cohort, now or utcnow())}
        row = self.engine.one("plan", (*key.params, cohort.cohort_id), cohort, extra)
        # Engines return counts as int or Decimal (Snowflake's NUMBER).
        distinct, to_add, to_remove, to_resend, current, rows = (int(v or 0) for v in row)
        if full_refresh:
            return Delta(distinct, distinct, to_remove, unchanged=0, current=current, rows=rows)
        return Delta(
            distinct=distinct,
            to_add=to_add,
            to_remove=to_remove,
            unchanged=distinct - to_add - to_resend,
            to_resend=to_resend,
            current=current,
            rows=rows,
        )

    def stream(
        self,
        cohort: CohortSpec,
        key: StateKey,
        change: Change,
        batch_rows: int = DEFAULT_FETCH_ROWS,
        now: datetime | None = None,
    ) -> Iterator[list[str]]:
        """The uids of one kind of change, `batch_rows` at a time."""
        if not self.ready:
            # No state yet (a dry run on a fresh warehouse): everything is new.
            if change not in (Change.NEW, Change.EVERYONE):
                return iter(())
            return self.engine.stream("cohort_uids", (), cohort, batch_rows=batch_rows)
        if change == Change.EVERYONE:
            return self.engine.stream("cohort_uids", (), cohort, batch_rows=batch_rows)
        extra = {"due": self.due(cohort, now or utcnow())}
        params = (*key.params, cohort.cohort_id)
        return self.engine.stream(_QUERIES[change], params, cohort, extra, batch_rows)

    # -- checkpoints -----------------------------------------------------------------------

    def record_added(
        self,
        cohort: CohortSpec,
        key: StateKey,
        uids: Sequence[str],
        run_id: str,
        replace: bool = False,
    ) -> None:
        """One bulk insert per accepted request (when replacing, a delete first, in one
        transaction with it: a crash between them would lose what MoEngage accepted)."""
        members = self.engine.uid_batch(uids)
        where = (*key.params, cohort.cohort_id)
        insert = (*where, utcnow(), run_id, members)
        if not replace:
            self.engine.run("insert_members", insert)
            return
        with self.engine.transaction():
            self.engine.run("delete_members", (*where, members))
            self.engine.run("insert_members", insert)

    def record_resent(
        self, cohort: CohortSpec, key: StateKey, uids: Sequence[str], run_id: str
    ) -> None:
        """One bulk insert per accepted request: each uid gets a newer row, which the state
        reads as its last acceptance (its older rows go at the run's end: `compact`).

        An update would find the uids' rows by scanning the cohort's state where the engine
        keeps no index (DuckDB, Snowflake, BigQuery), at every request; an insert costs
        what the request holds."""
        members = self.engine.uid_batch(uids)
        self.engine.run(
            "insert_members", (*key.params, cohort.cohort_id, utcnow(), run_id, members)
        )

    def compact(
        self, cohort: CohortSpec, key: StateKey, run_id: str, everyone: bool = False
    ) -> None:
        """Delete the member rows that newer ones supersede: those of the uids run `run_id`
        re-sent (one set-based statement at the cohort run's end), or, with `everyone`,
        every member's (what a run that died left, found by the next run's plan). Each uid
        keeps its newest row, so the state's set of members never changes here."""
        where = (*key.params, cohort.cohort_id)
        # The run's own rows first, by run id: they win over any older row whatever its
        # synced_at says (another runner's clock may run ahead of this one's).
        self.engine.compact_state(where, run_id)
        if everyone:
            self.engine.compact_state(where, None)

    def record_removed(self, cohort: CohortSpec, key: StateKey, uids: Sequence[str]) -> None:
        """One bulk delete per accepted request."""
        batch = self.engine.uid_batch(uids)
        self.engine.run("delete_members", (*key.params, cohort.cohort_id, batch))

    def refresh_statistics(self, changed: int, members_before: int) -> None:
        """After a run that changed much of the state, refresh the planner's statistics of
        the members table where the engine keeps them (Postgres): a mirror run soon after a
        first sync would otherwise be planned as if the state were empty, a nested loop over
        every member. A failure here costs only the plan, never the run."""
        if "analyze_members" not in self.engine.SQL or self.engine.read_only:
            return
        if changed < max(ANALYZE_AFTER_ROWS, members_before // 10):
            return
        with contextlib.suppress(WarehouseError):
            self.engine.run("analyze_members")

    # -- runs, names, owners ---------------------------------------------------------------

    def save_run(self, row: RunRow) -> None:
        """Delete-then-insert keeps one row per run and cohort on every engine.

        The error may quote a server's answer: it is stored capped, with its control
        characters escaped and any Authorization value redacted (see redact.py).
        """
        self.engine.run("delete_run", (row.run_id, *row.key.params, row.cohort_id))
        self.engine.run("insert_run", astuple(with_fields(row, error=stored_error(row.error))))

    def member_count(self, cohort: CohortSpec, key: StateKey) -> int:
        """Members the state holds for the cohort: what MoEngage was told, read as a set."""
        row = self.engine.one("member_count", (*key.params, cohort.cohort_id))
        return int(row[0] or 0) if row is not None else 0

    def notified(self, key: StateKey) -> dict[str, str]:
        """cohort_id -> the status the last notification announced, for one state key."""
        if not self.ready:
            return {}
        rows = self.engine.all("notified", key.params)
        return {str(cohort_id): str(status) for cohort_id, status in rows}

    def save_notified(
        self, key: StateKey, cohort_id: str, model: str, status: str, run_id: str
    ) -> None:
        """Delete-then-insert the cohort's row in moengage_notifications (after a post)."""
        where = (*key.params, cohort_id)
        self.engine.run("delete_notified", where)
        self.engine.run("insert_notified", (*where, model, status, utcnow(), run_id))

    def cohort_record(self, cohort: CohortSpec, key: StateKey) -> CohortRecord | None:
        """The cohort's row in moengage_cohorts, if it has one."""
        row = self.engine.one("cohort_record", (*key.params, cohort.cohort_id))
        if row is None:
            return None
        return CohortRecord(model=str(row[0]), cohort_name=row[1], cohort_description=row[2])

    def save_cohort(self, cohort: CohortSpec, key: StateKey, record: CohortRecord) -> None:
        """Delete-then-insert the cohort's row in moengage_cohorts."""
        where = (*key.params, cohort.cohort_id)
        self.engine.run("delete_cohort", where)
        self.engine.run(
            "insert_cohort",
            (*where, record.model, record.cohort_name, record.cohort_description, utcnow()),
        )

    def owners(self, key: StateKey) -> dict[str, Owner]:
        """The model that last synced each cohort of the workspace, and the name it sent."""
        if not self.ready:
            return {}
        found: dict[str, Owner] = {}
        for cohort_id, model in self.engine.all("run_models", (key.workspace_id,)):
            found[str(cohort_id)] = Owner(model=str(model))
        for cohort_id, model, name in self.engine.all("cohort_names", key.params):
            found[str(cohort_id)] = Owner(model=str(model), name_sent=name)
        return found

    def adopt_legacy(self, cohort: CohortSpec, key: StateKey) -> int:
        """Members recorded before endpoints become this endpoint's, due for a re-send."""
        legacy = (LEGACY_ENDPOINT, key.workspace_id, cohort.cohort_id)
        count = int(self.engine.one("legacy_members", legacy)[0] or 0)
        if count:
            self.engine.run("adopt_legacy", (key.endpoint, LEGACY_SYNCED_AT, *legacy))
        return count

    def lock(
        self,
        cohort: CohortSpec,
        key: StateKey,
        run_id: str,
        wait_seconds: float,
        stop: threading.Event | None = None,
    ) -> AbstractContextManager[HeldLock]:
        """Hold the cohort's lock row for the block (state/locks.py), beaten from the
        engine's `lock_beater` (how depends on the engine); raises LockTimeout after
        `wait_seconds`."""
        engine = self.engine
        return row_lock(engine, cohort, key, run_id, wait_seconds, stop, engine.lock_beater())

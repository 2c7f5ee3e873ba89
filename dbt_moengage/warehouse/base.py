"""Stage 3: the warehouse interface every engine implements, and the SQL flow they share.

Set work runs in the warehouse: the model's distinct uids, the anti-join against what
MoEngage was told (the state), the counts. Python only sees the delta, in batches.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from dataclasses import replace as with_fields
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar, Self

import orjson

from .. import __version__, uids
from ..cohorts import CohortSpec, Owner
from ..errors import CohortError, ConfigError, WarehouseError
from .redact import stored_error
from .schema import (
    ALIASES,
    COHORTS,
    LEGACY_ENDPOINT,
    LEGACY_SYNCED_AT,
    RUNS,
    SCHEMA_VERSION,
    STATE_COLUMNS,
    STATE_TABLES,
    VERSION,
    StateKey,
    StateStatus,
    schema_version_from,
    upgrade_statements,
)

DEFAULT_FETCH_ROWS = 50_000
# A rename travels with an add of this many current members (re-sent, so harmless).
RENAME_BATCH = 100

# What stream_delta yields.
ADD = "add"  # in the model, not in the state
RESEND = "resend"  # in both, and due for a re-send (RESEND_AFTER)
RENAME = "rename"  # a few current members, to carry a new name or description
REMOVE = "remove"  # in the state, no longer in the model
ALL = "all"  # every uid of the model (a full refresh)

_STATE_KEY = "endpoint = ? and workspace_id = ? and cohort_id = ?"
_RUN_COLUMNS = ", ".join(name for name, _, _ in STATE_COLUMNS[RUNS])
_COHORT_COLUMNS = ", ".join(name for name, _, _ in STATE_COLUMNS[COHORTS])


def _values(table: str) -> str:
    return ", ".join("?" for _ in STATE_COLUMNS[table])


# Statements every engine runs as they are (`?` parameters, ANSI SQL). Engines give the
# fragments that differ: `json_uids` (a request's uids from one JSON parameter), the
# model's uids, the anti-joins, and how to read a timestamp and hash a uid.
COMMON_SQL: dict[str, str] = {
    # The state is read as a set: a duplicated row can never inflate a count or a removal.
    "state_uids": (
        f"select uid, min(synced_at) as synced_at from {{members}} where {_STATE_KEY} group by uid"
    ),
    "count_model": "select count(*) from ({model_uids})",
    "long_uids": "select count(*), min(uid) from ({model_uids}) where length(uid) > ?",
    "plan": """
        select count(m.uid),
            sum(case when s.uid is null then 1 else 0 end),
            sum(case when m.uid is null then 1 else 0 end),
            sum(case when m.uid is not null and s.uid is not null and ({due}) then 1 else 0 end),
            count(s.uid)
        from ({model_uids}) m full outer join ({state_uids}) s on m.uid = s.uid""",
    "resend_delta": """
        select s.uid from ({state_uids}) s join ({model_uids}) m on s.uid = m.uid
        where {due}""",
    "rename_members": f"""
        select s.uid from ({{state_uids}}) s join ({{model_uids}}) m on s.uid = m.uid
        limit {RENAME_BATCH}""",
    "insert_members": """
        insert into {members} (endpoint, workspace_id, cohort_id, synced_at, run_id, uid)
        select ?, ?, ?, ?, ?, j.uid from ({json_uids}) j""",
    "delete_members": f"""
        delete from {{members}} where {_STATE_KEY} and uid in ({{json_uids}})""",
    "resent_members": f"""
        update {{members}} set synced_at = ?, run_id = ?
        where {_STATE_KEY} and uid in ({{json_uids}})""",
    "legacy_members": (
        "select count(*) from {members} where endpoint = ? and workspace_id = ? and cohort_id = ?"
    ),
    "adopt_legacy": """
        update {members} set endpoint = ?, synced_at = ?
        where endpoint = ? and workspace_id = ? and cohort_id = ?""",
    "delete_run": f"delete from {{runs}} where run_id = ? and {_STATE_KEY}",
    "insert_run": f"insert into {{runs}} ({_RUN_COLUMNS}) values ({_values(RUNS)})",
    "cohort_record": (
        f"select model, cohort_name, cohort_description from {{cohorts}} where {_STATE_KEY}"
    ),
    "delete_cohort": f"delete from {{cohorts}} where {_STATE_KEY}",
    "insert_cohort": f"insert into {{cohorts}} ({_COHORT_COLUMNS}) values ({_values(COHORTS)})",
    "cohort_names": (
        "select cohort_id, model, cohort_name from {cohorts} "
        "where endpoint = ? and workspace_id = ?"
    ),
    "run_models": (
        "select cohort_id, model from {runs} where workspace_id = ? and status = 'synced' "
        "order by started_at"
    ),
    "delete_stale_lock": f"delete from {{locks}} where {_STATE_KEY} and heartbeat_at < ?",
    "insert_lock": f"""
        insert into {{locks}} (endpoint, workspace_id, cohort_id, run_id, locked_at, heartbeat_at)
        select ?, ?, ?, ?, ?, ?
        where not exists (select 1 from {{locks}} where {_STATE_KEY})""",
    "lock_holder": f"""
        select run_id, locked_at from {{locks}} where {_STATE_KEY}
        order by locked_at, run_id limit 1""",
    "release_lock": f"delete from {{locks}} where {_STATE_KEY} and run_id = ?",
    "heartbeat_lock": "update {locks} set heartbeat_at = ? where run_id = ?",
    "create_schema": "create schema if not exists {schema}",
    "state_version": "select max(version) from {version}",
    "insert_version": "insert into {version} (version, upgraded_at, runner) values (?, ?, ?)",
}


def utcnow() -> datetime:
    """Now in UTC, without tzinfo: the state tables hold UTC timestamps."""
    return datetime.now(UTC).replace(tzinfo=None)


def epoch_seconds(when: datetime) -> int:
    """Whole seconds since 1970 of a naive UTC timestamp."""
    return int((when - datetime(1970, 1, 1)).total_seconds())


@dataclass(frozen=True)
class AudienceStats:
    """Rows of the model's uid column that cannot be sent: null, blank or padded."""

    rows: int
    nulls: int
    empties: int
    padded: int = 0

    def dropped(self, distinct: int) -> dict[str, int]:
        """Dropped rows by reason, given the number of distinct valid uids."""
        duplicates = self.rows - self.nulls - self.empties - self.padded - distinct
        return {
            uids.NULL: self.nulls,
            uids.BLANK: self.empties,
            uids.PADDED: self.padded,
            uids.DUPLICATE: max(duplicates, 0),
        }


@dataclass(frozen=True)
class UidColumn:
    """The uid column as the warehouse spells it (case may differ from the config)."""

    name: str
    type: str


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
    status: str = "running"
    added: int = 0
    removed: int = 0
    resent: int = 0
    unchanged: int = 0
    left_but_kept: int = 0
    requests: int = 0
    retries: int = 0
    renamed: bool = False
    error: str | None = None

    @property
    def key(self) -> StateKey:
        """The state key the run row belongs to."""
        return StateKey(self.endpoint, self.workspace_id)


class LockTimeout(CohortError):
    """Another run holds the cohort's lock for longer than we may wait."""


class StateVersionError(ConfigError):
    """The sync state was written by a newer dbt-moengage than this one."""


class Warehouse(ABC):
    """One connection to the user's warehouse, used from one thread."""

    engine: ClassVar[str] = ""

    @abstractmethod
    def check_uid_column(self, cohort: CohortSpec) -> UidColumn:
        """The uid column as the warehouse names it; WarehouseError if missing or unusable."""

    @abstractmethod
    def audience_stats(self, cohort: CohortSpec) -> AudienceStats:
        """Count rows, nulls, blank and padded uids of the model (`plan` counts distinct)."""

    @abstractmethod
    def prepare_state(self, create: bool) -> StateStatus:
        """Make sure the state tables exist and are current (create or upgrade when allowed)."""

    @abstractmethod
    def plan(
        self, cohort: CohortSpec, key: StateKey, full_refresh: bool, now: datetime | None = None
    ) -> Delta:
        """Count what a sync of the cohort would add, re-send, remove and leave alone."""

    @abstractmethod
    def stream_delta(
        self,
        cohort: CohortSpec,
        key: StateKey,
        action: str,
        batch_rows: int = ...,
        now: datetime | None = None,
    ) -> Iterator[list[str]]:
        """Yield the uids of one kind of change (ADD, RESEND, RENAME, REMOVE or ALL)."""

    @abstractmethod
    def record_added(
        self,
        cohort: CohortSpec,
        key: StateKey,
        uids: Sequence[str],
        run_id: str,
        replace: bool = False,
    ) -> None:
        """Checkpoint: MoEngage accepted these new uids into the cohort."""

    @abstractmethod
    def record_resent(
        self, cohort: CohortSpec, key: StateKey, uids: Sequence[str], run_id: str
    ) -> None:
        """Checkpoint: MoEngage accepted these members again."""

    @abstractmethod
    def record_removed(self, cohort: CohortSpec, key: StateKey, uids: Sequence[str]) -> None:
        """Checkpoint: MoEngage accepted the removal of these uids."""

    @abstractmethod
    def save_run(self, row: RunRow) -> None:
        """Insert or update the run row of one cohort."""

    @abstractmethod
    def cohort_record(self, cohort: CohortSpec, key: StateKey) -> CohortRecord | None:
        """The model, name and description MoEngage last got for the cohort."""

    @abstractmethod
    def save_cohort(self, cohort: CohortSpec, key: StateKey, record: CohortRecord) -> None:
        """Remember the model, name and description of the cohort."""

    @abstractmethod
    def owners(self, key: StateKey) -> dict[str, Owner]:
        """cohort_id -> the model that last synced it and the name MoEngage got."""

    @abstractmethod
    def adopt_legacy(self, cohort: CohortSpec, key: StateKey) -> int:
        """Take over the cohort's members recorded before endpoints, as due for a re-send."""

    @abstractmethod
    def lock(self, cohort: CohortSpec, key: StateKey, run_id: str, wait_seconds: float) -> Any:
        """A context manager holding the cohort's lock; raises LockTimeout."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SqlWarehouse(Warehouse):
    """The state flow in SQL over a DB-API connection with `?` parameters.

    An engine gives the connection, its SQL texts (`SQL`, formatted with the relation,
    the quoted column and the state tables' names), its type names, how to read a
    timestamp as epoch seconds and hash a uid, and how it reports errors.
    """

    SQL: ClassVar[dict[str, str]] = {}
    STATE_TYPES: ClassVar[dict[str, str]] = {}
    # `{}` is a timestamp column: its epoch seconds; a uid column: a non-negative integer.
    EPOCH: ClassVar[str] = "epoch({})"
    UID_HASH: ClassVar[str] = "hash({})"
    ERRORS: ClassVar[tuple[type[BaseException], ...]] = ()
    LOCK_POLL_SECONDS: ClassVar[float] = 0.5
    # Engines shared between machines beat the lock from a thread while it is held.
    HEARTBEAT_THREAD: ClassVar[bool] = False
    lock_stale_seconds: float = 120.0

    conn: Any
    state_schema: str
    state_ready: bool = False

    # Engines implement these three.
    @abstractmethod
    def state_table(self, name: str) -> str:
        """The quoted, qualified name of a state table."""

    @abstractmethod
    def quote(self, identifier: str) -> str:
        """Quote an identifier for this engine."""

    @abstractmethod
    def state_columns(self) -> dict[str, set[str]]:
        """Each state table present: its columns (lower-case names)."""

    def existing_state_tables(self) -> set[str]:
        """Which state tables exist already (lower-case names)."""
        return set(self.state_columns())

    def explain(self, exc: BaseException) -> str:
        """The engine's error as the user should read it (engines may add what to do)."""
        return str(exc)

    def due(self, cohort: CohortSpec, now: datetime) -> str:
        """SQL: whether state row `s` is due for a re-send under the cohort's resend_after.

        Each uid has its own phase (from its hash) on a cycle of 7/8 of resend_after; a
        member comes due at the first point of its phase at least 1/8 of resend_after after
        MoEngage last accepted it. So a member is re-sent at the latest resend_after after
        its acceptance, a run soon after a sync re-sends nothing, and a cohort first synced
        on one day comes due spread evenly over the days after, as does each later round.
        Members adopted from state written before endpoints are always due.
        """
        synced = self.EPOCH.format("s.synced_at")
        legacy = f"{synced} < 86400"
        period = cohort.resend_after
        if period is None:
            return legacy
        if period == 0:
            return "1 = 1"
        rest = period // 8
        cycle = period - rest
        phase = f"{self.UID_HASH.format('s.uid')} % {cycle}"
        next_point = f"ceil(({synced} + {rest} + {phase}) / {cycle})"
        last_point = f"floor(({epoch_seconds(now)} + {phase}) / {cycle})"
        return f"{legacy} or {next_point} <= {last_point}"

    def _format(
        self, name: str, cohort: CohortSpec | None = None, now: datetime | None = None
    ) -> str:
        fields: dict[str, str] = {
            alias: self.state_table(table) for table, alias in ALIASES.items()
        }
        fields["schema"] = self.quote(self.state_schema)
        fields["json_uids"] = self.SQL["json_uids"]
        if cohort is not None:
            fields["relation"] = cohort.relation_name
            fields["col"] = self.quote(cohort.uid_column)
            fields["model_uids"] = self.SQL["model_uids"].format(
                relation=cohort.relation_name, col=self.quote(cohort.uid_column)
            )
            fields["due"] = self.due(cohort, now or utcnow())
        fields["state_uids"] = self.SQL["state_uids"].format(**fields)
        return self.SQL[name].format(**fields)

    @cached_property
    def _statements(self) -> threading.RLock:
        """One statement at a time: the heartbeat thread shares the connection."""
        return threading.RLock()

    def _execute(
        self,
        name: str,
        params: Sequence[Any] = (),
        cohort: CohortSpec | None = None,
        now: datetime | None = None,
    ) -> Any:
        with self._statements:
            cursor = self.conn.cursor()
            try:
                cursor.execute(self._format(name, cohort, now), params)
            except self.ERRORS as exc:
                cursor.close()
                where = f"model '{cohort.model}': " if cohort else ""
                raise WarehouseError(
                    f"{where}{name.replace('_', ' ')} failed: {self.explain(exc)}"
                ) from None
            return cursor

    def _scalar_row(
        self,
        name: str,
        params: Sequence[Any] = (),
        cohort: CohortSpec | None = None,
        now: datetime | None = None,
    ) -> Any:
        with self._statements:
            cursor = self._execute(name, params, cohort, now)
            try:
                return cursor.fetchone()
            finally:
                cursor.close()

    def _rows(self, name: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._statements:
            cursor = self._execute(name, params)
            try:
                return list(cursor.fetchall())
            finally:
                cursor.close()

    def _run(self, name: str, params: Sequence[Any] = (), cohort: CohortSpec | None = None) -> None:
        with self._statements:
            self._execute(name, params, cohort).close()

    def audience_stats(self, cohort: CohortSpec) -> AudienceStats:
        """Count rows, nulls, blank and padded uids in one scan."""
        rows, nulls, empties, padded = (int(v or 0) for v in self._scalar_row("stats", (), cohort))
        return AudienceStats(rows=rows, nulls=nulls, empties=empties, padded=padded)

    def prepare_state(self, create: bool) -> StateStatus:
        """Create the state tables that are missing and upgrade older ones, when allowed."""
        present = self.state_columns()
        recorded = None
        if VERSION in present:
            row = self._scalar_row("state_version")
            recorded = int(row[0]) if row is not None and row[0] is not None else None
        version = schema_version_from(present, recorded)
        where = f"the sync state in schema {self.state_schema!r}"
        if version > SCHEMA_VERSION:
            raise StateVersionError(
                f"{where} is version {version}, written by a newer dbt-moengage; this one "
                f"knows version {SCHEMA_VERSION}: upgrade dbt-moengage"
            )
        missing = [t for t in STATE_TABLES if t not in present]
        if not create:
            self.state_ready = not missing and version == SCHEMA_VERSION
            note = ""
            if present and version < SCHEMA_VERSION:
                note = (
                    f"{where} is version {version}; the next sync upgrades it to "
                    f"{SCHEMA_VERSION}. Until then these counts assume nothing was sent"
                )
            return StateStatus(ready=self.state_ready, note=note)
        if missing:
            self._run("create_schema")
            for table in missing:
                self._run(f"create_{table}")
        for statement in upgrade_statements(self.STATE_TYPES, present):
            self._run_sql(statement)
        if recorded != SCHEMA_VERSION:
            self._run("insert_version", (SCHEMA_VERSION, utcnow(), f"dbt-moengage {__version__}"))
        self.state_ready = True
        upgraded = version if version < SCHEMA_VERSION and present else None
        return StateStatus(ready=True, upgraded_from=upgraded)

    def _run_sql(self, template: str) -> None:
        """Run a statement built outside SQL (the upgrade's alter statements)."""
        fields = {alias: self.state_table(table) for table, alias in ALIASES.items()}
        with self._statements:
            cursor = self.conn.cursor()
            try:
                cursor.execute(template.format(**fields))
            except self.ERRORS as exc:
                raise WarehouseError(
                    f"upgrading the sync state in schema {self.state_schema!r} failed: "
                    f"{self.explain(exc)}; the runner's role needs ALTER on the state tables "
                    "once (or an admin runs one sync with a role that has it)"
                ) from None
            finally:
                cursor.close()

    def plan(
        self, cohort: CohortSpec, key: StateKey, full_refresh: bool, now: datetime | None = None
    ) -> Delta:
        """Counts from one join of the model's uids with the state, in the warehouse."""
        if not self.state_ready:
            distinct = int(self._scalar_row("count_model", (), cohort)[0])
            return Delta(distinct=distinct, to_add=distinct, to_remove=0, unchanged=0)
        # Engines return counts as int or Decimal (Snowflake's NUMBER).
        distinct, to_add, to_remove, to_resend, current = (
            int(v or 0)
            for v in self._scalar_row("plan", (*key.params, cohort.cohort_id), cohort, now)
        )
        if full_refresh:
            return Delta(
                distinct=distinct,
                to_add=distinct,
                to_remove=to_remove,
                unchanged=0,
                current=current,
            )
        return Delta(
            distinct=distinct,
            to_add=to_add,
            to_remove=to_remove,
            unchanged=distinct - to_add - to_resend,
            to_resend=to_resend,
            current=current,
        )

    def check_uid_lengths(self, cohort: CohortSpec) -> None:
        """Refuse the cohort when uids exceed the max_uid_length its config sets."""
        limit = cohort.max_uid_length
        if limit is None:
            return
        count, example = self._scalar_row("long_uids", (limit,), cohort)
        if int(count or 0):
            raise WarehouseError(
                f"model '{cohort.model}': meta.moengage.max_uid_length = {limit}: "
                f"{int(count):,} uids are longer, e.g. {example[:80]!r} ({len(example)} "
                "characters); fix the model or raise the limit. Nothing was sent for it"
            )

    def stream_delta(
        self,
        cohort: CohortSpec,
        key: StateKey,
        action: str,
        batch_rows: int = DEFAULT_FETCH_ROWS,
        now: datetime | None = None,
    ) -> Iterator[list[str]]:
        """Stream the delta from a cursor of its own; checkpoints may write meanwhile."""
        query = self._delta_query(cohort, key, action)
        if query is None:
            return
        name, params = query
        cursor = self._execute(name, params, cohort, now)
        try:
            while True:
                try:
                    with self._statements:
                        rows = cursor.fetchmany(batch_rows)
                except self.ERRORS as exc:
                    raise read_failed(cohort, self.explain(exc)) from None
                if not rows:
                    return
                yield [row[0] for row in rows]
        finally:
            cursor.close()

    def _delta_query(
        self, cohort: CohortSpec, key: StateKey, action: str
    ) -> tuple[str, tuple[str, ...]] | None:
        """The statement (and parameters) that yields an action's uids; None for nothing."""
        if not self.state_ready:
            # No state yet (a dry run on a fresh warehouse): everything is to add.
            return ("model_uids", ()) if action in (ADD, ALL) else None
        if action == ALL:
            return "model_uids", ()
        name = {
            ADD: "add_delta",
            RESEND: "resend_delta",
            RENAME: "rename_members",
            REMOVE: "remove_delta",
        }[action]
        return name, (*key.params, cohort.cohort_id)

    def record_added(
        self,
        cohort: CohortSpec,
        key: StateKey,
        uids: Sequence[str],
        run_id: str,
        replace: bool = False,
    ) -> None:
        """One bulk insert per accepted request (a delete first, when replacing)."""
        members = uids_json(uids)
        where = (*key.params, cohort.cohort_id)
        if replace:
            self._run("delete_members", (*where, members))
        self._run("insert_members", (*where, utcnow(), run_id, members))

    def record_resent(
        self, cohort: CohortSpec, key: StateKey, uids: Sequence[str], run_id: str
    ) -> None:
        """One bulk update of synced_at per accepted request."""
        params = (utcnow(), run_id, *key.params, cohort.cohort_id, uids_json(uids))
        self._run("resent_members", params)

    def record_removed(self, cohort: CohortSpec, key: StateKey, uids: Sequence[str]) -> None:
        """One bulk delete per accepted request."""
        self._run("delete_members", (*key.params, cohort.cohort_id, uids_json(uids)))

    def save_run(self, row: RunRow) -> None:
        """Delete-then-insert keeps one row per run and cohort on every engine.

        The error may quote a server's answer: it is stored capped, with its control
        characters escaped and any Authorization value redacted (see redact.py).
        """
        self._run("delete_run", (row.run_id, *row.key.params, row.cohort_id))
        self._run("insert_run", astuple(with_fields(row, error=stored_error(row.error))))

    def cohort_record(self, cohort: CohortSpec, key: StateKey) -> CohortRecord | None:
        """The cohort's row in moengage_cohorts, if it has one."""
        row = self._scalar_row("cohort_record", (*key.params, cohort.cohort_id))
        if row is None:
            return None
        return CohortRecord(model=str(row[0]), cohort_name=row[1], cohort_description=row[2])

    def save_cohort(self, cohort: CohortSpec, key: StateKey, record: CohortRecord) -> None:
        """Delete-then-insert the cohort's row in moengage_cohorts."""
        where = (*key.params, cohort.cohort_id)
        self._run("delete_cohort", where)
        self._run(
            "insert_cohort",
            (*where, record.model, record.cohort_name, record.cohort_description, utcnow()),
        )

    def owners(self, key: StateKey) -> dict[str, Owner]:
        """The model that last synced each cohort of the workspace, and the name it sent."""
        if not self.state_ready:
            return {}
        found: dict[str, Owner] = {}
        for cohort_id, model in self._rows("run_models", (key.workspace_id,)):
            found[str(cohort_id)] = Owner(model=str(model))
        for cohort_id, model, name in self._rows("cohort_names", key.params):
            found[str(cohort_id)] = Owner(model=str(model), name_sent=name)
        return found

    def adopt_legacy(self, cohort: CohortSpec, key: StateKey) -> int:
        """Members recorded before endpoints become this endpoint's, due for a re-send."""
        legacy = (LEGACY_ENDPOINT, key.workspace_id, cohort.cohort_id)
        count = int(self._scalar_row("legacy_members", legacy)[0] or 0)
        if count:
            self._run("adopt_legacy", (key.endpoint, LEGACY_SYNCED_AT, *legacy))
        return count

    @contextmanager
    def lock(
        self, cohort: CohortSpec, key: StateKey, run_id: str, wait_seconds: float
    ) -> Iterator[None]:
        """Take the lock row of (endpoint, workspace, cohort); wait up to `wait_seconds`.

        A holder that stops beating for `lock_stale_seconds` (a killed runner) loses it.
        """
        self._acquire(cohort, key, run_id, wait_seconds, time.monotonic, time.sleep)
        stop = threading.Event()
        beat = threading.Thread(
            target=self._beat, args=(run_id, stop), name="moengage-lock-heartbeat", daemon=True
        )
        if self.HEARTBEAT_THREAD:
            beat.start()
        try:
            yield
        finally:
            stop.set()
            if beat.is_alive():
                beat.join()
            self._run("release_lock", (*key.params, cohort.cohort_id, run_id))

    def _beat(self, run_id: str, stop: threading.Event) -> None:
        while not stop.wait(self.lock_stale_seconds / 4):
            try:
                self.heartbeat(run_id)
            except WarehouseError:
                # A missed beat only risks the lock looking stale; the next one may land.
                continue

    def heartbeat(self, run_id: str) -> None:
        """Show the lock holder is alive, so its lock is not taken as stale."""
        self._run("heartbeat_lock", (utcnow(), run_id))

    def _acquire(
        self,
        cohort: CohortSpec,
        key: StateKey,
        run_id: str,
        wait_seconds: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        where = (*key.params, cohort.cohort_id)
        deadline = clock() + wait_seconds
        while True:
            now = utcnow()
            # Naive UTC on both sides: .timestamp() would read `now` as local time.
            stale = now - timedelta(seconds=self.lock_stale_seconds)
            self._run("delete_stale_lock", (*where, stale))
            self._run("insert_lock", (*where, run_id, now, now, *where))
            # Two runners may both insert; the oldest row wins, the other backs off.
            holder = self._scalar_row("lock_holder", where)
            if holder is not None and holder[0] == run_id:
                return
            self._run("release_lock", (*where, run_id))
            if clock() >= deadline:
                since = holder[1] if holder is not None else "?"
                raise LockTimeout(
                    f"model '{cohort.model}': cohort '{cohort.cohort_id}' is being synced by "
                    f"another run ({holder[0] if holder else '?'}, since {since} UTC); waited "
                    f"{wait_seconds:g} s. Let it finish, or raise MOENGAGE_LOCK_WAIT_SECONDS"
                )
            sleep(self.LOCK_POLL_SECONDS)


def uids_json(uids: Sequence[str]) -> str:
    """A request's uids as one bound parameter: a JSON array every engine's SQL unpacks
    (DuckDB parses it faster than it converts a list of Python strings)."""
    return orjson.dumps(list(uids)).decode()


def read_failed(cohort: CohortSpec, reason: str) -> WarehouseError:
    """Reading a cohort's uids failed mid-way (a lost connection, a dropped table)."""
    return WarehouseError(
        f"model '{cohort.model}': reading uids from {cohort.relation_name} failed: {reason}"
    )


def missing_column(cohort: CohortSpec, columns: Iterable[str]) -> WarehouseError:
    """The configured uid column is not in the model."""
    return WarehouseError(
        f"model '{cohort.model}': meta.moengage.uid_column = {cohort.uid_column!r}: "
        f"no such column in {cohort.relation_name} (columns: {', '.join(columns)}); "
        "set uid_column to the column holding MoEngage's Unique User ID"
    )


def unusable_type(cohort: CohortSpec, kind: str) -> WarehouseError:
    """The uid column's type would not cast to a uid cleanly."""
    return WarehouseError(
        f"model '{cohort.model}': meta.moengage.uid_column = {cohort.uid_column!r} has "
        f"type {kind}; uids must be text or whole numbers: cast it in the model "
        "(e.g. cast(... as varchar))"
    )


def quote_identifier(name: str, quote: str = '"') -> str:
    """Quote an identifier for SQL, doubling any quote inside it."""
    return quote + name.replace(quote, quote * 2) + quote


def exact_state_sql(exact: str) -> dict[str, str]:
    """The statements that match state uids, with the state's `uid` read through `exact`.

    For engines whose state columns may carry a collation the runner did not choose
    (Snowflake's DEFAULT_DDL_COLLATION applies to tables dbt or the runner creates): `exact`
    (`{}` is the column) strips it, so 'abc' never matches 'ABC'. Grouped by position: a
    name in GROUP BY would mean the collated column, not the select's exact alias.
    """
    uid = exact.format("uid")
    return {
        "state_uids": (
            f"select {uid} as uid, min(synced_at) as synced_at from {{members}} "
            f"where {_STATE_KEY} group by 1"
        ),
        "delete_members": f"""
        delete from {{members}} where {_STATE_KEY} and {uid} in ({{json_uids}})""",
        "resent_members": f"""
        update {{members}} set synced_at = ?, run_id = ?
        where {_STATE_KEY} and {uid} in ({{json_uids}})""",
    }

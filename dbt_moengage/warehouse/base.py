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
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar, Self

import orjson

from ..cohorts import CohortSpec
from ..errors import CohortError, WarehouseError

DEFAULT_FETCH_ROWS = 50_000
# A uid made only of these is empty: it can match no MoEngage user.
BLANK = " \t\n\x0b\x0c\r"

MEMBERS = "moengage_cohort_members"
RUNS = "moengage_sync_runs"
LOCKS = "moengage_sync_locks"
STATE_TABLES = (MEMBERS, RUNS, LOCKS)

ADD = "add"
REMOVE = "remove"
ALL = "all"

# The state tables' columns: (name, kind, not null). The dbt package's
# _moengage_state_columns macro holds the same list; integration_tests compares them.
STATE_COLUMNS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    MEMBERS: (
        ("workspace_id", "string", True),
        ("cohort_id", "string", True),
        ("uid", "string", True),
        ("synced_at", "timestamp", True),
        ("run_id", "string", True),
    ),
    RUNS: (
        ("run_id", "string", True),
        ("workspace_id", "string", True),
        ("cohort_id", "string", True),
        ("model", "string", True),
        ("mode", "string", True),
        ("full_refresh", "boolean", True),
        ("started_at", "timestamp", True),
        ("finished_at", "timestamp", False),
        ("status", "string", True),
        ("added", "bigint", False),
        ("removed", "bigint", False),
        ("unchanged", "bigint", False),
        ("left_but_kept", "bigint", False),
        ("requests", "bigint", False),
        ("retries", "bigint", False),
        ("error", "string", False),
    ),
    LOCKS: (
        ("workspace_id", "string", True),
        ("cohort_id", "string", True),
        ("run_id", "string", True),
        ("locked_at", "timestamp", True),
        ("heartbeat_at", "timestamp", True),
    ),
}


def state_ddl(types: dict[str, str]) -> dict[str, str]:
    """`create table if not exists` per state table, with the engine's type names."""
    placeholder = {MEMBERS: "{members}", RUNS: "{runs}", LOCKS: "{locks}"}
    ddl = {}
    for table, columns in STATE_COLUMNS.items():
        body = ",\n".join(
            f"    {name} {types[kind]}{' not null' if not_null else ''}"
            for name, kind, not_null in columns
        )
        ddl[f"create_{table}"] = f"create table if not exists {placeholder[table]} (\n{body}\n)"
    return ddl


_RUN_COLUMNS = ", ".join(name for name, _, _ in STATE_COLUMNS[RUNS])

# Statements every engine runs as they are (`?` parameters, ANSI SQL).
COMMON_SQL: dict[str, str] = {
    "state_uids": "select uid from {members} where workspace_id = ? and cohort_id = ?",
    "count_model": "select count(*) from ({model_uids})",
    "long_uids": "select count(*), min(uid) from ({model_uids}) where length(uid) > ?",
    "delete_run": "delete from {runs} where run_id = ? and workspace_id = ? and cohort_id = ?",
    "insert_run": (
        f"insert into {{runs}} ({_RUN_COLUMNS}) "
        f"values ({', '.join('?' for _ in STATE_COLUMNS[RUNS])})"
    ),
    "delete_stale_lock": (
        "delete from {locks} where workspace_id = ? and cohort_id = ? and heartbeat_at < ?"
    ),
    "insert_lock": """
        insert into {locks} (workspace_id, cohort_id, run_id, locked_at, heartbeat_at)
        select ?, ?, ?, ?, ?
        where not exists (select 1 from {locks} where workspace_id = ? and cohort_id = ?)""",
    "lock_holder": """
        select run_id, locked_at from {locks} where workspace_id = ? and cohort_id = ?
        order by locked_at, run_id limit 1""",
    "release_lock": "delete from {locks} where workspace_id = ? and cohort_id = ? and run_id = ?",
    "heartbeat_lock": "update {locks} set heartbeat_at = ? where run_id = ?",
    "create_schema": "create schema if not exists {schema}",
}


def utcnow() -> datetime:
    """Now in UTC, without tzinfo: the state tables hold UTC timestamps."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class AudienceStats:
    """Rows of the model's uid column that cannot be sent: null or blank."""

    rows: int
    nulls: int
    empties: int

    def dropped(self, distinct: int) -> dict[str, int]:
        """Dropped rows by reason, given the number of distinct valid uids."""
        duplicates = self.rows - self.nulls - self.empties - distinct
        return {"null": self.nulls, "empty": self.empties, "duplicate": duplicates}


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


@dataclass
class RunRow:
    """One row of moengage_sync_runs: one cohort in one run (column order as the table)."""

    run_id: str
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
    unchanged: int = 0
    left_but_kept: int = 0
    requests: int = 0
    retries: int = 0
    error: str | None = None


class LockTimeout(CohortError):
    """Another run holds the cohort's lock for longer than we may wait."""


class Warehouse(ABC):
    """One connection to the user's warehouse, used from one thread."""

    engine: ClassVar[str] = ""

    @abstractmethod
    def check_uid_column(self, cohort: CohortSpec) -> UidColumn:
        """The uid column as the warehouse names it; WarehouseError if missing or unusable."""

    @abstractmethod
    def audience_stats(self, cohort: CohortSpec) -> AudienceStats:
        """Count rows, nulls and empty uids of the cohort's model (`plan` counts distinct)."""

    @abstractmethod
    def prepare_state(self, create: bool) -> bool:
        """Make sure the state tables exist (create them when allowed); True if they do."""

    @abstractmethod
    def plan(self, cohort: CohortSpec, workspace_id: str, full_refresh: bool) -> Delta:
        """Count what a sync of the cohort would add, remove and leave alone."""

    @abstractmethod
    def stream_delta(
        self, cohort: CohortSpec, workspace_id: str, action: str, batch_rows: int = ...
    ) -> Iterator[list[str]]:
        """Yield the uids to add (model minus state), remove (state minus model) or all."""

    @abstractmethod
    def record_added(
        self, cohort: CohortSpec, workspace_id: str, uids: Sequence[str], run_id: str
    ) -> None:
        """Checkpoint: MoEngage accepted these uids into the cohort."""

    @abstractmethod
    def record_removed(self, cohort: CohortSpec, workspace_id: str, uids: Sequence[str]) -> None:
        """Checkpoint: MoEngage accepted the removal of these uids."""

    @abstractmethod
    def save_run(self, row: RunRow) -> None:
        """Insert or update the run row of one cohort."""

    @abstractmethod
    def lock(self, cohort: CohortSpec, workspace_id: str, run_id: str, wait_seconds: float) -> Any:
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
    the quoted column and the state tables' names) and how it reports errors.
    """

    SQL: ClassVar[dict[str, str]] = {}
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
    def existing_state_tables(self) -> set[str]:
        """Which state tables exist already (lower-case names)."""

    def explain(self, exc: BaseException) -> str:
        """The engine's error as the user should read it (engines may add what to do)."""
        return str(exc)

    def _format(self, name: str, cohort: CohortSpec | None = None) -> str:
        fields: dict[str, str] = {
            "members": self.state_table(MEMBERS),
            "runs": self.state_table(RUNS),
            "locks": self.state_table(LOCKS),
            "schema": self.quote(self.state_schema),
        }
        if cohort is not None:
            fields["relation"] = cohort.relation_name
            fields["col"] = self.quote(cohort.uid_column)
            fields["model_uids"] = self.SQL["model_uids"].format(
                relation=cohort.relation_name, col=self.quote(cohort.uid_column)
            )
        fields["state_uids"] = self.SQL["state_uids"].format(**fields)
        return self.SQL[name].format(**fields)

    @cached_property
    def _statements(self) -> threading.RLock:
        """One statement at a time: the heartbeat thread shares the connection."""
        return threading.RLock()

    def _execute(
        self, name: str, params: Sequence[Any] = (), cohort: CohortSpec | None = None
    ) -> Any:
        with self._statements:
            cursor = self.conn.cursor()
            try:
                cursor.execute(self._format(name, cohort), params)
            except self.ERRORS as exc:
                cursor.close()
                where = f"model '{cohort.model}': " if cohort else ""
                raise WarehouseError(
                    f"{where}{name.replace('_', ' ')} failed: {self.explain(exc)}"
                ) from None
            return cursor

    def _scalar_row(
        self, name: str, params: Sequence[Any] = (), cohort: CohortSpec | None = None
    ) -> Any:
        with self._statements:
            cursor = self._execute(name, params, cohort)
            try:
                return cursor.fetchone()
            finally:
                cursor.close()

    def _run(self, name: str, params: Sequence[Any] = (), cohort: CohortSpec | None = None) -> None:
        with self._statements:
            self._execute(name, params, cohort).close()

    def audience_stats(self, cohort: CohortSpec) -> AudienceStats:
        """Count rows, nulls and empties in one scan."""
        rows, nulls, empties = (int(v or 0) for v in self._scalar_row("stats", (), cohort))
        return AudienceStats(rows=rows, nulls=nulls, empties=empties)

    def prepare_state(self, create: bool) -> bool:
        """Create the state schema and tables that are missing, when allowed."""
        missing = [t for t in STATE_TABLES if t not in self.existing_state_tables()]
        if missing and create:
            self._run("create_schema")
            for table in missing:
                self._run(f"create_{table}")
            missing = []
        self.state_ready = not missing
        return self.state_ready

    def plan(self, cohort: CohortSpec, workspace_id: str, full_refresh: bool) -> Delta:
        """Counts from one join of the model's uids with the state, in the warehouse."""
        if not self.state_ready:
            distinct = int(self._scalar_row("count_model", (), cohort)[0])
            return Delta(distinct=distinct, to_add=distinct, to_remove=0, unchanged=0)
        # Engines return counts as int or Decimal (Snowflake's NUMBER).
        distinct, to_add, to_remove = (
            int(v or 0) for v in self._scalar_row("plan", (workspace_id, cohort.cohort_id), cohort)
        )
        if full_refresh:
            return Delta(distinct=distinct, to_add=distinct, to_remove=to_remove, unchanged=0)
        return Delta(
            distinct=distinct, to_add=to_add, to_remove=to_remove, unchanged=distinct - to_add
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
        workspace_id: str,
        action: str,
        batch_rows: int = DEFAULT_FETCH_ROWS,
    ) -> Iterator[list[str]]:
        """Stream the delta from a cursor of its own; checkpoints may write meanwhile."""
        query = self._delta_query(cohort, workspace_id, action)
        if query is None:
            return
        name, params = query
        cursor = self._execute(name, params, cohort)
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
        self, cohort: CohortSpec, workspace_id: str, action: str
    ) -> tuple[str, tuple[str, ...]] | None:
        """The statement (and parameters) that yields an action's uids; None for nothing."""
        if not self.state_ready:
            # No state yet (a dry run on a fresh warehouse): everything is to add.
            return None if action == REMOVE else ("model_uids", ())
        if action == ALL:
            return "model_uids", ()
        name = "add_delta" if action == ADD else "remove_delta"
        return name, (workspace_id, cohort.cohort_id)

    def record_added(
        self,
        cohort: CohortSpec,
        workspace_id: str,
        uids: Sequence[str],
        run_id: str,
        replace: bool = False,
    ) -> None:
        """One bulk insert per accepted request (a delete first, when replacing)."""
        members = uids_json(uids)
        if replace:
            self._run("delete_members", (workspace_id, cohort.cohort_id, members))
        self._run("insert_members", (workspace_id, cohort.cohort_id, utcnow(), run_id, members))

    def record_removed(self, cohort: CohortSpec, workspace_id: str, uids: Sequence[str]) -> None:
        """One bulk delete per accepted request."""
        self._run("delete_members", (workspace_id, cohort.cohort_id, uids_json(uids)))

    def save_run(self, row: RunRow) -> None:
        """Delete-then-insert keeps one row per run and cohort on every engine."""
        self._run("delete_run", (row.run_id, row.workspace_id, row.cohort_id))
        self._run("insert_run", astuple(row))

    @contextmanager
    def lock(
        self, cohort: CohortSpec, workspace_id: str, run_id: str, wait_seconds: float
    ) -> Iterator[None]:
        """Take the lock row of (workspace, cohort); wait up to `wait_seconds` for it.

        A holder that stops beating for `lock_stale_seconds` (a killed runner) loses it.
        """
        self._acquire(cohort, workspace_id, run_id, wait_seconds, time.monotonic, time.sleep)
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
            self._run("release_lock", (workspace_id, cohort.cohort_id, run_id))

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
        workspace_id: str,
        run_id: str,
        wait_seconds: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        key = (workspace_id, cohort.cohort_id)
        deadline = clock() + wait_seconds
        while True:
            now = utcnow()
            # Naive UTC on both sides: .timestamp() would read `now` as local time.
            stale = now - timedelta(seconds=self.lock_stale_seconds)
            self._run("delete_stale_lock", (*key, stale))
            self._run("insert_lock", (*key, run_id, now, now, *key))
            # Two runners may both insert; the oldest row wins, the other backs off.
            holder = self._scalar_row("lock_holder", key)
            if holder is not None and holder[0] == run_id:
                return
            self._run("release_lock", (*key, run_id))
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

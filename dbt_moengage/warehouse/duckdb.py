"""DuckDB, the embedded default: the database file a dbt-duckdb profile points at.

DuckDB lets one process write a database file at a time. The runner opens it for
writing (state and checkpoints), so a second runner waits for the file, bounded, and
the lock rows of a runner that died are stale by the time anyone can open the file.
Opening the file (its path, memory cap and threads) is duckdb_connect.py.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import duckdb

from .. import uids
from ..cohorts import CohortSpec
from ..errors import RelationMissing, WarehouseError
from ..state.schema import MEMBERS, SQL_STATE_TYPES, StateKey, present_state_tables
from ..state.sql import state_sql
from .audience import UidColumn, find_uid_column, read_failed, unreadable, unusable_type
from .duckdb_connect import (
    DEFAULT_MEMORY_LIMIT,
    database_path,
    open_database,
    profile_memory_limit,
)
from .engine import DEFAULT_FETCH_ROWS, Engine, snapshot_name
from .profiles import ProfileTarget
from .redact import redact_path
from .sql import BLANK_UID, MODEL_SQL, NULL_UID, PADDED_UID, VALID, snapshot_sql, stats_sql

# Text, integers and UUIDs cast to text without losing what MoEngage matches on.
UID_TYPES = (
    "VARCHAR",
    "UUID",
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
)

# The one uid rule (dbt_moengage/uids.py): sent when not null, not blank, and without
# whitespace at either end.
# MoEngage compares uids as exact bytes. A column declared `collate nocase` (or noaccent,
# nfc, an ICU locale) keeps its collation through the cast and `describe` still says
# VARCHAR: the distinct, the joins with the state and the counts would fold 'abc', 'ABC'
# and 'Abc' into one member. `collate "binary"` (quoted: `binary` is a keyword) makes
# every comparison of the uid byte-wise, also against the state's plain varchar.
_TEXT = '(cast({col} as varchar) collate "binary")'
_TRIMMED = f"trim({_TEXT}, {uids.sql_literal()})"
# Whitespace at either end, tested on the end characters. Written as `trim(T) = T`,
# DuckDB's optimizer copies the equality into the other conditions and trims each row up
# to three times: the distinct over 1M uids took 5.4 s instead of 0.7 s.
_EDGE = (
    f"(strpos({uids.sql_literal()}, left({_TEXT}, 1)) > 0"
    f" or strpos({uids.sql_literal()}, right({_TEXT}, 1)) > 0)"
)
_VALID = f"{{col}} is not null and {_TEXT} <> '' and not {_EDGE}"
_KIND = f"""case when {{col}} is null then '{NULL_UID}' when {_TEXT} = '' then '{BLANK_UID}'
    when {_EDGE} then case when {_TRIMMED} = '' then '{BLANK_UID}' else '{PADDED_UID}' end
    else '{VALID}' end"""

# The state tables' types; the dbt package's variant for this engine uses the same.
STATE_TYPES = SQL_STATE_TYPES

SQL: dict[str, str] = {
    **MODEL_SQL,
    **state_sql(STATE_TYPES),
    **snapshot_sql(_TEXT, _KIND),
    "stats": stats_sql(
        "count(*) filter (where {})",
        f"""{{col}} is not null and case when {_TEXT} = '' then true
                when {_EDGE} then {_TRIMMED} = '' else false end""",
        f"""{{col}} is not null and case when {_TEXT} = '' then false
                when {_EDGE} then {_TRIMMED} <> '' else false end""",
    ),
    "model_uids": f"select distinct {_TEXT} as uid from {{relation}} where {_VALID}",
    "add_delta": "select m.uid from ({model_uids}) m anti join ({state_uids}) s on m.uid = s.uid",
    "remove_delta": (
        "select s.uid from ({state_uids}) s anti join ({model_uids}) m on s.uid = m.uid"
    ),
    "json_uids": """select unnest(from_json(?, '["varchar"]')) as uid""",
    "clear_locks": "delete from {locks}",
    # Compaction in windows of rows (DuckDBWarehouse.compact_state): the uids whose older
    # rows go, kept first in a temporary table of the connection, then each window's delete.
    "compact_run_uids": """
        create or replace temp table moengage_compact as
        select uid from {members}
        where endpoint = ? and workspace_id = ? and cohort_id = ? and run_id = ?""",
    "compact_run_window": """
        delete from {members} where endpoint = ? and workspace_id = ? and cohort_id = ?
            and run_id <> ? and rowid >= ? and rowid < ?
            and uid in (select uid from moengage_compact)""",
    "compact_members_uids": """
        create or replace temp table moengage_compact as
        select uid, max(synced_at) as newest from {members}
        where endpoint = ? and workspace_id = ? and cohort_id = ?
        group by 1 having count(*) > 1""",
    "compact_members_window": """
        delete from {members} d using moengage_compact n
        where d.endpoint = ? and d.workspace_id = ? and d.cohort_id = ?
            and d.rowid >= ? and d.rowid < ? and d.uid = n.uid and d.synced_at < n.newest""",
}
# Rows of the members table one compaction statement may touch before a checkpoint. DuckDB
# keeps a deleted row's version (16 KB for each 2,048-row vector it touches) in memory until
# a checkpoint; a run's re-sends spread over every vector of a 10M-member state passed the
# 96MB cap in one statement (about 90MB of versions). A window of 1M rows holds about 8MB.
COMPACT_WINDOW_ROWS = 1_000_000


class DuckDBWarehouse(Engine):
    """Reads cohort models from, and keeps sync state in, a DuckDB database file."""

    engine = "duckdb"
    SQL: ClassVar[dict[str, str]] = SQL
    STATE_TYPES: ClassVar[dict[str, str]] = STATE_TYPES
    EPOCH: ClassVar[str] = "epoch({})"
    UID_HASH: ClassVar[str] = "hash({})"
    # The warehouse's clock in UTC (naive, as the state holds it), and `?` seconds before.
    NOW: ClassVar[str] = "(current_timestamp at time zone 'UTC')"
    AGO: ClassVar[str] = "((current_timestamp at time zone 'UTC') - to_seconds(cast({} as double)))"
    ERRORS: ClassVar[tuple[type[BaseException], ...]] = (duckdb.Error,)
    # A sync holds the database file: runners of one file never send at once.
    QUOTA_BEAT_SECONDS: ClassVar[float | None] = None

    def __init__(
        self,
        path: str,
        *,
        state_schema: str = "main",
        read_only: bool = False,
        wait_seconds: float = 0.0,
        memory_limit: str = DEFAULT_MEMORY_LIMIT,
    ) -> None:
        self.path = path
        self.state_schema = state_schema
        self.read_only = read_only
        self.memory_limit = memory_limit
        self.conn = open_database(path, read_only, wait_seconds, memory_limit)
        self._locks_cleared = False

    @classmethod
    def from_profile(
        cls,
        target: ProfileTarget,
        project_dir: Path,
        *,
        state_schema: str | None = None,
        read_only: bool = False,
        wait_seconds: float = 0.0,
    ) -> DuckDBWarehouse:
        """Open the database a dbt-duckdb target points at (duckdb_connect.py)."""
        return cls(
            str(database_path(target, project_dir)),
            state_schema=target.state_schema(state_schema, "main"),
            read_only=read_only,
            wait_seconds=wait_seconds,
            memory_limit=profile_memory_limit(target),
        )

    def state_columns(self) -> dict[str, set[str]]:
        """State tables present in the state schema, with their columns."""
        rows = self.conn.execute(
            "select lower(table_name), lower(column_name) from information_schema.columns "
            "where table_catalog = current_database() and table_schema = ?",
            [self.state_schema],
        ).fetchall()
        return present_state_tables(rows)

    def lock_beater(self) -> None:
        """None, no heartbeat: only one process can write the file at a time. So the lock
        rows there when this process first locks belong to runners that died: they go."""
        if not self._locks_cleared:
            self.run("clear_locks")
            self._locks_cleared = True

    def snapshot_table(self, cohort: CohortSpec, key: StateKey) -> str | None:
        """A temp table: this connection's own, also on a read-only database file."""
        return f"temp.main.{snapshot_name(key, cohort)}"

    def create_snapshot(self, table: str, select: str) -> list[str]:
        """`create temp table`: DuckDB spills it to disk past the memory limit."""
        return [f"create temp table {table} as {select}"]

    def compact_state(self, where: Sequence[Any], run_id: str | None) -> None:
        """Engine.compact_state in windows of COMPACT_WINDOW_ROWS rows, each followed by a
        checkpoint, so the delete versions DuckDB holds stay under its memory cap. The
        windows go from the last rows to the first: a checkpoint may merge the row groups
        a window emptied, moving the rows after it to lower rowids, never those before."""
        which = "compact_members" if run_id is None else "compact_run"
        prepare = (*where,) if run_id is None else (*where, run_id)
        window = (*where,) if run_id is None else (*where, run_id)
        with self.statements:
            cursor = self.conn.cursor()
            try:
                cursor.execute(self.format(f"{which}_uids"), prepare)
                members = self.state_table(MEMBERS)
                (last,) = cursor.execute(f"select max(rowid) from {members}").fetchone()
                start = -1 if last is None else last - last % COMPACT_WINDOW_ROWS
                while start >= 0:
                    end = start + COMPACT_WINDOW_ROWS
                    cursor.execute(self.format(f"{which}_window"), (*window, start, end))
                    # Not possible while another connection has a transaction open: the
                    # versions then wait for a later checkpoint, as they always did.
                    with contextlib.suppress(duckdb.Error):
                        cursor.execute("checkpoint")
                    start -= COMPACT_WINDOW_ROWS
                cursor.execute("drop table if exists moengage_compact")
            except duckdb.Error as exc:
                raise WarehouseError(
                    f"{which.replace('_', ' ')} failed: {self.explain(exc)}"
                ) from None
            finally:
                cursor.close()

    def lock_alive(self, key: StateKey, cohort_id: str, run_id: str) -> bool:
        """No: a sync holds the database file for writing while it runs, so a process that
        has the file open (`status`) knows that no other process is syncing into it."""
        return False

    def check_uid_column(self, cohort: CohortSpec) -> UidColumn:
        """Refuse a missing relation, a missing column, or a column of an unusable type."""
        try:
            rows = self.conn.execute(f"describe select * from {cohort.relation_name}").fetchall()
        except duckdb.CatalogException:
            raise RelationMissing(
                f"model '{cohort.model}': relation {cohort.relation_name} does not exist in "
                f"{redact_path(self.path)}: build the model with "
                f"`dbt build --select {cohort.model}`"
            ) from None
        except duckdb.Error as exc:
            raise unreadable(cohort, self.explain(exc)) from None
        columns = [(str(name), str(kind).upper()) for name, kind, *_ in rows]
        name, kind = find_uid_column(cohort, columns, lambda column: column[0])
        if kind not in UID_TYPES:
            raise unusable_type(cohort, kind)
        return UidColumn(name=name, type=kind)

    def cursor(self) -> Any:
        """The connection itself, read like a cursor: a DuckDB cursor is a connection of its
        own, which would not see the cohort's snapshot (a temp table). Callers read a result
        under `statements`, so no other statement replaces it meanwhile."""
        return _Result(self.conn)

    def stream(
        self,
        name: str,
        params: Sequence[Any],
        cohort: CohortSpec,
        extra: Mapping[str, str] = {},
        batch_rows: int = DEFAULT_FETCH_ROWS,
    ) -> Iterator[list[str]]:
        """Write the statement's uids to a temp table, then read it a page at a time.

        A result kept open while checkpoints insert would stop DuckDB from flushing them,
        so memory would grow with the audience; short page reads keep it flat.
        """
        table = f"moengage_delta_{uuid.uuid4().hex[:12]}"
        with self.statements:
            try:
                with self.cancellable(name):
                    self.conn.execute(
                        f"create temp table {table} as {self.format(name, cohort, extra)}",
                        params,
                    )
                (total,) = self.conn.execute(f"select count(*) from {table}").fetchone() or (0,)
            except duckdb.Error as exc:
                raise read_failed(cohort, self.explain(exc)) from None
        try:
            for start in range(0, total, batch_rows):
                with self.statements:
                    try:
                        with self.cancellable(name):
                            rows = self.conn.execute(
                                f"select uid from {table} where rowid >= ? and rowid < ?",
                                [start, start + batch_rows],
                            ).fetchall()
                    except duckdb.Error as exc:
                        raise read_failed(cohort, self.explain(exc)) from None
                if rows:
                    yield [row[0] for row in rows]
        finally:
            with self.statements, contextlib.suppress(duckdb.Error):
                self.conn.execute(f"drop table if exists {table}")

    def explain(self, exc: BaseException) -> str:
        """DuckDB's error (paths in it redacted); out of memory says how to give it more."""
        if not isinstance(exc, duckdb.OutOfMemoryException):
            return redact_path(str(exc))
        first = redact_path(str(exc).splitlines()[0])
        return (
            f"{first}. The runner caps DuckDB at memory_limit = {self.memory_limit}: raise it "
            "with MOENGAGE_DUCKDB_MEMORY_LIMIT (e.g. 1GB) or the profile's "
            "`settings: {memory_limit: ...}`"
        )

    def cancel(self, running: Any) -> None:
        """Interrupt the query running on the connection (the one connection every statement
        uses); it raises InterruptException."""
        running.interrupt()

    def close(self) -> None:
        """Close the database."""
        self.conn.close()


class _Result:
    """The connection as a cursor of one statement; closing it leaves the connection open."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._conn.execute(sql, params)

    def fetchone(self) -> Any:
        return self._conn.fetchone()

    def fetchall(self) -> list[Any]:
        return self._conn.fetchall()

    def fetchmany(self, size: int) -> list[Any]:
        return self._conn.fetchmany(size)

    def close(self) -> None:
        """Nothing to close: the result goes with the connection's next statement."""

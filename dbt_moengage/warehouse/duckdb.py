"""DuckDB, the embedded default: the database file a dbt-duckdb profile points at.

DuckDB lets one process write a database file at a time. The runner opens it for
writing (state and checkpoints), so a second runner waits for the file, bounded, and
the lock rows of a runner that died are stale by the time anyone can open the file.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar

import duckdb

from .. import uids
from ..cohorts import CohortSpec
from ..errors import LockTimeout, ProfileError, RelationMissing, WarehouseError
from ..state.locks import HeldLock, row_lock
from ..state.schema import MEMBERS, STATE_TABLES, StateKey, state_ddl
from ..state.sql import STATE_SQL
from .engine import (
    BLANK_UID,
    DEFAULT_FETCH_ROWS,
    MODEL_SQL,
    NULL_UID,
    PADDED_UID,
    VALID,
    Engine,
    UidColumn,
    missing_column,
    quote_identifier,
    read_failed,
    snapshot_name,
    snapshot_sql,
    unusable_type,
)
from .profiles import ProfileTarget
from .redact import redact_path

# DuckDB's own memory (hash tables, the delta, checkpoints not yet in the file) is capped
# here and spills to disk past it, so a sync's memory stays flat whatever the audience's
# size. The runner's own statements all spill; a model view doing something that cannot
# (a huge list() say) gets an error saying how to raise the cap. Each DuckDB thread keeps
# buffers of its own that cannot spill (writing the snapshot of a 10M-uid model needs
# about 40MB a thread): the runner uses at most THREADS of them and caps memory at
# MEMORY_PER_THREAD_MB for each (64MB in all ran out on 2 threads at 10M uids).
THREADS = max(2, min(os.cpu_count() or 2, 4))
MEMORY_PER_THREAD_MB = 48
DEFAULT_MEMORY_LIMIT = f"{MEMORY_PER_THREAD_MB * THREADS}MB"

# dbt-duckdb paths of MotherDuck databases. Opening one needs the network and DuckDB's
# motherduck extension, which the runner never downloads at run time.
MOTHERDUCK = ("md:", "motherduck:")

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
STATE_TYPES = {
    "string": "varchar",
    "timestamp": "timestamp",
    "bigint": "bigint",
    "boolean": "boolean",
}

SQL: dict[str, str] = {
    **MODEL_SQL,
    **STATE_SQL,
    **state_ddl(STATE_TYPES),
    **snapshot_sql(_TEXT, _KIND),
    "stats": f"""
        select count(*), count(*) - count({{col}}),
            count(*) filter (where {{col}} is not null and case when {_TEXT} = '' then true
                when {_EDGE} then {_TRIMMED} = '' else false end),
            count(*) filter (where {{col}} is not null and case when {_TEXT} = '' then false
                when {_EDGE} then {_TRIMMED} <> '' else false end)
        from {{relation}}""",
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
        self.conn = self._open(path, read_only, wait_seconds, memory_limit)
        self._locks_cleared = False

    @staticmethod
    def _open(
        path: str, read_only: bool, wait_seconds: float, memory_limit: str
    ) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                conn = duckdb.connect(path, read_only=read_only)
                # Its progress bar would draw over the runner's own output.
                conn.execute("set enable_progress_bar = false")
                # Row order is never needed, and dropping it lets DuckDB stream and spill.
                conn.execute("set preserve_insertion_order = false")
                conn.execute(f"set threads = {THREADS}")
                # The state rows of each accepted request are durable once in the WAL.
                # DuckDB folding the WAL into the file every 16MB (its default) stalled the
                # stream 0.1-0.3 s each time; every 64MB costs less in all (bench/).
                conn.execute("set checkpoint_threshold = '64MB'")
                # Bounded memory: the distinct and anti-join spill to disk past this, so the
                # runner's memory stays flat as audiences grow.
                conn.execute(f"set memory_limit = '{memory_limit.replace(chr(39), '')}'")
                return conn
            except duckdb.IOException as exc:
                # Paths and DuckDB's text about them are shown redacted (redact.py).
                if "lock" not in str(exc).lower():
                    raise ProfileError(
                        redact_path(f"cannot open DuckDB database {path!r}: {exc}")
                    ) from None
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        redact_path(
                            f"DuckDB database {path!r} is held by another process (another "
                            f"dbt-moengage sync, or dbt itself) and stayed locked for "
                            f"{wait_seconds:g} s; let it finish, or raise "
                            f"MOENGAGE_LOCK_WAIT_SECONDS ({exc})"
                        )
                    ) from None
                time.sleep(0.25)
            except duckdb.Error as exc:
                raise ProfileError(
                    redact_path(
                        f"cannot open DuckDB database {path!r}: {exc}; check the profile's `path`"
                    )
                ) from None

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
        """Open the database a dbt-duckdb target points at."""
        credentials = target.credentials
        path = str(credentials.path or ":memory:")
        where = f"profile '{target.profile_name}' target '{target.target_name}'"
        # A MotherDuck path carries its token (`md:db?motherduck_token=...`): shown redacted.
        shown = redact_path(path)
        if path.lower().startswith(MOTHERDUCK):
            raise ProfileError(
                f"{where}: path {shown!r} is a MotherDuck database, which the runner cannot "
                "open: MotherDuck needs the network and DuckDB's motherduck extension, which "
                "the runner does not download at run time. Point `path` at a local .duckdb "
                "file (e.g. a copy of the database), or wait for MotherDuck support"
            )
        if not path or path.startswith(":memory:"):
            raise ProfileError(
                f"{where}: path {shown!r} is an in-memory database, gone when dbt exits; "
                "point `path` at a .duckdb file"
            )
        resolved = Path(path).expanduser()
        if not resolved.is_absolute() and not resolved.exists():
            # dbt-duckdb resolves against the folder dbt ran in, usually the project folder.
            resolved = project_dir / resolved
        if not resolved.exists():
            raise ProfileError(
                f"DuckDB database {shown!r} ({where}) does not exist: run `dbt build` first"
            )
        schema = state_schema or str(credentials.schema or "main")
        # The profile's `settings: {memory_limit: ...}` (as dbt-duckdb reads it) wins.
        settings = credentials.settings or {}
        memory_limit = str(
            settings.get("memory_limit")
            or os.environ.get("MOENGAGE_DUCKDB_MEMORY_LIMIT")
            or DEFAULT_MEMORY_LIMIT
        )
        return cls(
            str(resolved),
            state_schema=schema,
            read_only=read_only,
            wait_seconds=wait_seconds,
            memory_limit=memory_limit,
        )

    def quote(self, identifier: str) -> str:
        """DuckDB quotes with double quotes."""
        return quote_identifier(identifier)

    def state_table(self, name: str) -> str:
        """`"schema"."table"` in the database's own catalog."""
        return f"{self.quote(self.state_schema)}.{self.quote(name)}"

    def state_columns(self) -> dict[str, set[str]]:
        """State tables present in the state schema, with their columns."""
        rows = self.conn.execute(
            "select lower(table_name), lower(column_name) from information_schema.columns "
            "where table_catalog = current_database() and table_schema = ?",
            [self.state_schema],
        ).fetchall()
        found: dict[str, set[str]] = {}
        for table, column in rows:
            if table in STATE_TABLES:
                found.setdefault(table, set()).add(column)
        return found

    def cohort_lock(
        self,
        cohort: CohortSpec,
        key: StateKey,
        run_id: str,
        wait_seconds: float,
        stop: threading.Event | None = None,
    ) -> AbstractContextManager[HeldLock]:
        """The lock row, without a heartbeat: only one process can write the file at a time,
        so rows there when this process first locks belong to runners that died."""
        if not self._locks_cleared:
            self.run("clear_locks")
            self._locks_cleared = True
        return row_lock(self, cohort, key, run_id, wait_seconds, stop)

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
            raise WarehouseError(
                f"model '{cohort.model}': cannot read {cohort.relation_name}: {self.explain(exc)}"
            ) from None
        columns = {str(name).lower(): (str(name), str(kind)) for name, kind, *_ in rows}
        found = columns.get(cohort.uid_column.lower())
        if found is None:
            raise missing_column(cohort, (name for name, _ in columns.values()))
        kind = found[1].upper()
        if kind not in UID_TYPES:
            raise unusable_type(cohort, kind)
        return UidColumn(name=found[0], type=kind)

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

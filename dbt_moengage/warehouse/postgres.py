"""Postgres (and the dbt-postgres profiles of servers that speak its dialect).

Sessions are opened by dbt-postgres's own connection manager, so a profile that works for
`dbt build` works here. The main session runs in autocommit: each checkpoint is one
statement, durable once it returns. The delta is read on a session of its own through a
server-side (named) cursor, so memory stays flat however large the audience. The cohort
lock is a lock row taken with `insert ... on conflict` on the server's clock and beaten
from one session of the run's own (state/locks.py): it holds behind a transaction-pooling
pooler (PgBouncer, Supavisor), where a session advisory lock would land on whichever
server connection the pooler picked and outlive the run. Nothing here keeps session state
between statements: the snapshot is an unlogged table, the delta's cursor lives in one
transaction, the DDL lock is transaction-scoped.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar

import psycopg2
import psycopg2.errors

from .. import uids
from ..cohorts import CohortSpec
from ..errors import ProfileError, RelationMissing, WarehouseError
from ..state.schema import SQL_STATE_TYPES, present_state_tables
from ..state.sql import state_sql
from .audience import UidColumn, find_uid_column, read_failed, unreadable, unusable_type
from .engine import DEFAULT_FETCH_ROWS, Engine
from .profiles import ProfileTarget, open_handle
from .redact import redact_path
from .sql import MODEL_SQL, trimmed_uid_sql

# The dbt package's _moengage_state_lock_key: 'moengage' in ASCII as a bigint. The state
# tables' DDL runs under it, so dbt and the runner never create them at the same moment.
DDL_LOCK_KEY = 7885632997404272485

# Text, integers and UUIDs cast to text without losing what MoEngage matches on
# (type OIDs; numeric only with no fractional digits).
TEXT_OIDS = {25: "text", 1043: "varchar", 1042: "char", 2950: "uuid", 19: "name"}
INTEGER_OIDS = {20: "bigint", 21: "smallint", 23: "integer"}
NUMERIC_OID = 1700
# pg_type.typcategory of string types (text, varchar, citext, domains over them).
STRING_CATEGORY = "S"

# The one uid rule (dbt_moengage/uids.py). `collate "C"` compares the bytes, whatever
# collation (a nondeterministic ICU one, say) the column carries.
_TEXT = '(cast({col} as text) collate "C")'
_TRIMMED = f"btrim({_TEXT}, {uids.sql_literal()})"

# The state tables' indexes; the dbt package's postgres__ DDL creates the same.
LOCKS_KEY = "moengage_sync_locks_key"
MEMBERS_KEY = "moengage_cohort_members_key"

# The state tables' types; the dbt package's postgres__ variant uses the same.
STATE_TYPES = SQL_STATE_TYPES

SQL: dict[str, str] = {
    **MODEL_SQL,
    **state_sql(STATE_TYPES),
    **trimmed_uid_sql(_TEXT, _TRIMMED, "count(*) filter (where {})"),
    "add_delta": """
        select m.uid from ({model_uids}) m
        where not exists (select 1 from ({state_uids}) s where s.uid = m.uid)""",
    "remove_delta": """
        select s.uid from ({state_uids}) s
        where not exists (select 1 from ({model_uids}) m where m.uid = s.uid)""",
    "json_uids": "select jsonb_array_elements_text(cast(? as jsonb)) as uid",
    # The lock row (state/locks.py): inserted when free, taken over when its heartbeat is
    # older than the stale window (the last parameter, seconds), left alone otherwise. The
    # unique key makes two runners' inserts collide instead of both landing (MERGE would
    # need Postgres 15, and still races on inserts).
    "take_lock": """
        insert into {locks} as l (endpoint, workspace_id, cohort_id, run_id, locked_at,
            heartbeat_at)
        values (?, ?, ?, ?, {now}, {now})
        on conflict (endpoint, workspace_id, cohort_id) do update
            set run_id = excluded.run_id, locked_at = excluded.locked_at,
                heartbeat_at = excluded.heartbeat_at
            where l.heartbeat_at < ((now() at time zone 'utc') - make_interval(secs => ?))""",
    # The keys the state's statements look rows up by (StateStore.prepare adds any missing).
    "clear_locks": "delete from {locks}",
    # The planner's statistics of the members table, after a run changed much of it.
    "analyze_members": "analyze {members}",
    "create_locks_key": (
        f"create unique index if not exists {LOCKS_KEY} on {{locks}} "
        "(endpoint, workspace_id, cohort_id)"
    ),
    "create_members_key": (
        f"create index if not exists {MEMBERS_KEY} on {{members}} "
        "(endpoint, workspace_id, cohort_id, uid)"
    ),
}


class PostgresWarehouse(Engine):
    """Reads cohort models from, and keeps sync state in, a Postgres database."""

    engine = "postgres"
    SQL: ClassVar[dict[str, str]] = SQL
    STATE_TYPES: ClassVar[dict[str, str]] = STATE_TYPES
    EPOCH: ClassVar[str] = "extract(epoch from {})"
    # hashtext() is a signed 32-bit number; widened first, so abs() cannot overflow.
    UID_HASH: ClassVar[str] = "abs(hashtext({})::bigint)"
    NOW: ClassVar[str] = "(now() at time zone 'utc')"
    AGO: ClassVar[str] = "((now() at time zone 'utc') - make_interval(secs => {}))"
    ERRORS: ClassVar[tuple[type[BaseException], ...]] = (psycopg2.Error,)

    def __init__(self, conn: Any, state_schema: str, opener: Callable[[], Any]) -> None:
        conn.autocommit = True
        self.conn = conn
        self.state_schema = state_schema
        # Opens another session with the same profile: the delta's cursor and the lock
        # each get their own.
        self.opener = opener
        self._others: list[Any] = []

    @classmethod
    def from_profile(
        cls,
        target: ProfileTarget,
        project_dir: Path,
        *,
        state_schema: str | None = None,
        read_only: bool = False,
        wait_seconds: float = 0.0,
    ) -> PostgresWarehouse:
        """Connect with the dbt-postgres profile target, as dbt connects."""
        schema = target.state_schema(state_schema)
        if not schema:
            raise ProfileError(f"{target.where}: `schema` is required for Postgres")
        engine = cls(open_connection(target), schema, lambda: open_connection(target))
        engine.read_only = read_only
        return engine

    def render(self, sql: str) -> str:
        """psycopg2 takes `%s` parameters, and a literal `%` doubled."""
        return sql.replace("%", "%%").replace("?", "%s")

    def state_columns(self) -> dict[str, set[str]]:
        """State tables present in the state schema, with their columns."""
        with self.statements, self.conn.cursor() as cursor:
            cursor.execute(
                "select lower(table_name), lower(column_name) from information_schema.columns "
                "where table_schema = %s",
                [self.state_schema],
            )
            rows = cursor.fetchall()
        return present_state_tables(rows)

    def state_indexes(self) -> dict[str, list[str]]:
        """The state's indexes missing from the state schema, each with the statements that
        create it. The lock key's table is emptied first: no runner before this key wrote
        lock rows on Postgres, and none can hold one before it exists."""
        with self.statements, self.conn.cursor() as cursor:
            cursor.execute(
                "select indexname from pg_indexes where schemaname = %s", [self.state_schema]
            )
            present = {str(name) for (name,) in cursor.fetchall()}
        wanted = {
            LOCKS_KEY: ["clear_locks", "create_locks_key"],
            MEMBERS_KEY: ["create_members_key"],
        }
        return {name: steps for name, steps in wanted.items() if name not in present}

    def check_uid_column(self, cohort: CohortSpec) -> UidColumn:
        """Find the uid column case-insensitively; refuse types that do not cast cleanly."""
        try:
            with self.statements, self.conn.cursor() as cursor:
                cursor.execute(f"select * from {cohort.relation_name} limit 0")
                description = cursor.description
        except psycopg2.errors.UndefinedTable:
            raise RelationMissing(
                f"model '{cohort.model}': relation {cohort.relation_name} does not exist: build "
                f"it with `dbt build --select {cohort.model}`, and grant SELECT to the runner"
            ) from None
        except psycopg2.Error as exc:
            raise unreadable(cohort, self.explain(exc)) from None
        column = find_uid_column(cohort, description, lambda c: str(c.name))
        oid = column.type_code
        if oid in TEXT_OIDS or oid in INTEGER_OIDS:
            return UidColumn(name=str(column.name), type=TEXT_OIDS.get(oid) or INTEGER_OIDS[oid])
        if oid == NUMERIC_OID:
            if not column.scale:
                return UidColumn(name=str(column.name), type="numeric")
            raise unusable_type(cohort, f"numeric({column.precision},{column.scale})")
        # Types of extensions and domains have no fixed oid: the catalog names them, and a
        # string type (citext, a domain over text) is text.
        name, category = self._type_of(oid)
        if category == STRING_CATEGORY:
            return UidColumn(name=str(column.name), type=name)
        raise unusable_type(cohort, name)

    def _type_of(self, oid: int) -> tuple[str, str]:
        """A type's name and category (pg_type.typcategory), by oid."""
        with self.statements, self.conn.cursor() as cursor:
            cursor.execute(
                "select format_type(oid, null), typcategory from pg_type where oid = %s", [oid]
            )
            row = cursor.fetchone()
        return (str(row[0]), str(row[1])) if row else (f"type oid {oid}", "")

    def stream(
        self,
        name: str,
        params: Sequence[Any],
        cohort: CohortSpec,
        extra: Mapping[str, str] = {},
        batch_rows: int = DEFAULT_FETCH_ROWS,
    ) -> Iterator[list[str]]:
        """The statement's uids from a server-side cursor on a session of its own, in a
        read-only transaction: memory stays flat, and checkpoints commit meanwhile."""
        reader = self._open_other()
        reader.autocommit = False
        cursor = reader.cursor(name=f"moengage_{uuid.uuid4().hex[:12]}")
        try:
            with self.cancellable(name, reader):
                cursor.execute(self.render(self.format(name, cohort, extra)), params)
            while True:
                # The query runs as rows are fetched: the first fetch may take minutes.
                with self.cancellable(name, reader):
                    rows = cursor.fetchmany(batch_rows)
                if not rows:
                    return
                yield [row[0] for row in rows]
        except psycopg2.Error as exc:
            raise read_failed(cohort, self.explain(exc)) from None
        finally:
            with contextlib.suppress(psycopg2.Error):
                cursor.close()
                reader.rollback()
            self._close_other(reader)

    def create_snapshot(self, table: str, select: str) -> list[str]:
        """An unlogged table in the state schema (Engine.snapshot_table): the delta's
        sessions read it, also through a transaction-pooling pooler, where a temp table
        would be lost between statements. Unlogged: no WAL, it is gone with the run anyway;
        then analyzed for the joins."""
        return [f"create unlogged table {table} as {select}", f"analyze {table}"]

    def ddl_lock(self) -> AbstractContextManager[None]:
        """Create or upgrade the state tables under the dbt package's advisory lock."""
        return self._ddl_lock()

    @contextlib.contextmanager
    def _ddl_lock(self) -> Iterator[None]:
        with self.statements:
            self.conn.autocommit = False
            try:
                with self.conn.cursor() as cursor:
                    cursor.execute("select pg_advisory_xact_lock(%s)", [DDL_LOCK_KEY])
                yield
                self.conn.commit()
            except BaseException:
                self.conn.rollback()
                raise
            finally:
                self.conn.autocommit = True

    def open_beside(self) -> PostgresWarehouse:
        """Another session with the same profile: the run's heartbeat session, which beats
        the lock rows (checked before each checkpoint); a runner that dies leaves a row that
        is stale after MOENGAGE_LOCK_STALE_SECONDS."""
        return PostgresWarehouse(self._open_other(), self.state_schema, self.opener)

    def _open_other(self) -> Any:
        try:
            conn = self.opener()
        except ProfileError as exc:
            raise WarehouseError(str(exc)) from None
        conn.autocommit = True
        self._others.append(conn)
        return conn

    def _close_other(self, conn: Any) -> None:
        with contextlib.suppress(psycopg2.Error):
            conn.close()
        with contextlib.suppress(ValueError):
            self._others.remove(conn)

    def cancel(self, running: Any) -> None:
        """Ask the server to cancel the query of the session `running` (libpq's PQcancel,
        over a connection of its own); the query raises QueryCanceled."""
        running.cancel()

    def explain(self, exc: BaseException) -> str:
        """Postgres's message on one line, with any path or URL in it redacted."""
        return redact_path(" ".join(str(exc).split()))

    def close(self) -> None:
        """Close every session the engine opened."""
        self.close_heartbeat()
        for conn in [*self._others, self.conn]:
            with contextlib.suppress(psycopg2.Error):
                conn.close()
        self._others.clear()


def open_connection(target: ProfileTarget) -> Any:
    """A psycopg2 session for the profile target, opened by dbt-postgres itself."""
    from dbt.adapters.postgres.connections import PostgresConnectionManager

    return open_handle(target, PostgresConnectionManager, lambda exc: _failure(target, exc))


def _failure(target: ProfileTarget, exc: BaseException) -> str:
    credentials = target.credentials
    text = " ".join(str(exc).split())
    if credentials.password:
        text = text.replace(str(credentials.password), "***")
    return (
        f"{target.where}: cannot connect to Postgres at {credentials.host}:{credentials.port} "
        f"as user '{credentials.user}', database '{credentials.database}': {redact_path(text)}; "
        "check host, port, user, password and dbname"
    )

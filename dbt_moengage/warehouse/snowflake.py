"""Snowflake: cohort models and sync state in the user's Snowflake account.

Identifiers follow dbt-snowflake's default (unquoted, so Snowflake folds them to upper
case): the state tables a `dbt run-operation moengage_create_state_tables` made are
the ones the runner finds. Checkpoints bind a request's uids as one JSON array and
FLATTEN it in the warehouse: one statement per accepted request, never one per uid.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar

import snowflake.connector
from snowflake.connector.constants import FIELD_ID_TO_NAME

from .. import uids
from ..cohorts import CohortSpec
from ..errors import ProfileError, RelationMissing, WarehouseError
from ..state.locks import HeldLock, row_lock
from ..state.schema import STATE_TABLES, StateKey, state_ddl
from ..state.sql import STATE_SQL, exact_state_sql
from .engine import (
    MODEL_SQL,
    OUTER_ANTI_JOINS,
    Engine,
    UidColumn,
    missing_column,
    quote_identifier,
    snapshot_name,
    trimmed_uid_sql,
    unusable_type,
)
from .profiles import ProfileTarget
from .redact import redact_path
from .snowflake_connect import open_connection

TEXT_TYPES = ("TEXT",)
NUMBER_TYPES = ("FIXED",)
# Snowflake errno for "does not exist or not authorized".
NOT_FOUND = 2003
_SIMPLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")

# The one uid rule (dbt_moengage/uids.py): sent when not null, not blank, and without
# whitespace at either end.
# MoEngage compares uids as exact bytes; a Snowflake column may carry a collation
# (`collate 'en-ci'`, or the DEFAULT_DDL_COLLATION of its account, database or schema)
# that the distinct, the joins and the counts would follow. COLLATE(..., '') strips it:
# the empty specification is no collation, so strings compare by their UTF-8 bytes. The
# state's uid is read the same way (exact_state_sql), so no side brings a collation in.
# fakesnow runs on DuckDB and accepts it too: sqlglot drops an empty collation.
_EXACT = "collate({}, '')"
_TEXT = _EXACT.format("cast({col} as varchar)")
# The cast inside TRIM changes nothing on Snowflake; fakesnow rewrites a TRIM whose operand
# is not a cast to varchar and loses its characters argument on the way.
_TRIMMED = f"trim(cast({_TEXT} as varchar), {uids.sql_literal()})"

# The state tables' types; the dbt package's variant for this engine uses the same.
STATE_TYPES = {
    "string": "varchar",
    "timestamp": "timestamp_ntz",
    "bigint": "number(38,0)",
    "boolean": "boolean",
}

SQL: dict[str, str] = {
    **MODEL_SQL,
    **STATE_SQL,
    **exact_state_sql(_EXACT),
    **state_ddl(STATE_TYPES),
    **trimmed_uid_sql(_TEXT, _TRIMMED),
    "stats": f"""
        select count(*), count(*) - count({{col}}),
            count_if({{col}} is not null and {_TRIMMED} = ''),
            count_if({_TRIMMED} <> '' and {_TRIMMED} <> {_TEXT})
        from {{relation}}""",
    **OUTER_ANTI_JOINS,
    "json_uids": "select value::varchar as uid from table(flatten(input => parse_json(?)))",
}


class SnowflakeWarehouse(Engine):
    """Reads cohort models from, and keeps sync state in, Snowflake."""

    engine = "snowflake"
    SQL: ClassVar[dict[str, str]] = SQL
    STATE_TYPES: ClassVar[dict[str, str]] = STATE_TYPES
    EPOCH: ClassVar[str] = "date_part(epoch_second, {})"
    # Snowflake's hash() is a signed 64-bit number.
    UID_HASH: ClassVar[str] = "abs(hash({}))"
    # SYSDATE() is the warehouse's clock in UTC, a TIMESTAMP_NTZ like the state's columns.
    NOW: ClassVar[str] = "sysdate()"
    AGO: ClassVar[str] = "dateadd(millisecond, -cast({} * 1000 as integer), sysdate())"
    ERRORS: ClassVar[tuple[type[BaseException], ...]] = (snowflake.connector.errors.Error,)
    # Each beat is a statement pair on the warehouse the run keeps awake anyway.
    QUOTA_BEAT_SECONDS: ClassVar[float | None] = 5.0

    def __init__(
        self,
        conn: Any,
        database: str,
        state_schema: str,
        opener: Callable[[], Any] | None = None,
    ) -> None:
        self.conn = conn
        self.database = database
        self.state_schema = state_schema
        # Opens another session with the same profile: the lock's heartbeat gets its own,
        # so a long query on this one cannot starve it.
        self.opener = opener

    @classmethod
    def from_profile(
        cls,
        target: ProfileTarget,
        project_dir: Path,
        *,
        state_schema: str | None = None,
        read_only: bool = False,
        wait_seconds: float = 0.0,
    ) -> SnowflakeWarehouse:
        """Connect with the dbt-snowflake profile target, as dbt connects."""
        credentials = target.credentials
        database = str(credentials.database or "")
        schema = state_schema or str(credentials.schema or "")
        if not database or not schema:
            raise ProfileError(
                f"{target.where}: `database` and `schema` are required for Snowflake"
            )
        engine = cls(
            open_connection(target), database, schema, opener=lambda: open_connection(target)
        )
        engine.read_only = read_only
        return engine

    def quote(self, identifier: str) -> str:
        """Simple names stay unquoted (Snowflake folds them, as dbt-snowflake does): the
        state tables and schema as the runner and the dbt package create them."""
        return identifier if _SIMPLE.match(identifier) else quote_identifier(identifier)

    def cohort_lock(
        self,
        cohort: CohortSpec,
        key: StateKey,
        run_id: str,
        wait_seconds: float,
        stop: threading.Event | None = None,
    ) -> AbstractContextManager[HeldLock]:
        """The lock row, taken by MERGE on Snowflake's clock; runners on other machines
        share it, so it is beaten from the run's heartbeat session and checked before each
        checkpoint."""
        beater = self.heartbeat() or self
        return row_lock(self, cohort, key, run_id, wait_seconds, stop, beater)

    def open_beside(self) -> SnowflakeWarehouse | None:
        """Another session with the same profile (the run's heartbeat session)."""
        if self.opener is None:
            return None
        return SnowflakeWarehouse(self.opener(), self.database, self.state_schema)

    def snapshot_table(self, cohort: CohortSpec, key: StateKey) -> str | None:
        """A transient table in the state schema (a temporary one cannot be named there on
        every Snowflake stand-in); a read-only run (a dry run) reads the model each time."""
        return None if self.read_only else self.state_table(snapshot_name(key, cohort))

    def create_snapshot(self, table: str, select: str) -> list[str]:
        """Transient, kept no day past its drop: no Fail-safe or Time Travel storage."""
        return [f"create transient table {table} data_retention_time_in_days = 0 as {select}"]

    def state_table(self, name: str) -> str:
        """database.schema.table, each part as dbt-snowflake would write it."""
        return f"{self.quote(self.database)}.{self.quote(self.state_schema)}.{name}"

    def format(
        self, name: str, cohort: CohortSpec | None = None, extra: Mapping[str, str] = {}
    ) -> str:
        """As Engine.format; the schema is created in the profile's database."""
        text = super().format(name, cohort, extra)
        if name == "create_schema":
            return text.replace(
                f" {self.quote(self.state_schema)}",
                f" {self.quote(self.database)}.{self.quote(self.state_schema)}",
            )
        return text

    def state_columns(self) -> dict[str, set[str]]:
        """State tables present in the state schema, with their columns."""
        schema = (
            self.state_schema.upper() if _SIMPLE.match(self.state_schema) else self.state_schema
        )
        cursor = self.conn.cursor()
        try:
            cursor.execute(
                "select lower(table_name), lower(column_name) from "
                f"{self.quote(self.database)}.information_schema.columns where table_schema = ?",
                [schema],
            )
            found: dict[str, set[str]] = {}
            for table, column in cursor.fetchall():
                if table in STATE_TABLES:
                    found.setdefault(table, set()).add(column)
            return found
        except snowflake.connector.errors.ProgrammingError as exc:
            if exc.errno == NOT_FOUND:
                return {}
            raise WarehouseError(
                f"cannot list the state tables in {schema}: {self.explain(exc)}"
            ) from None
        finally:
            cursor.close()

    def check_uid_column(self, cohort: CohortSpec) -> UidColumn:
        """Find the uid column case-insensitively; refuse types that do not cast cleanly."""
        cursor = self.conn.cursor()
        try:
            cursor.execute(f"select * from {cohort.relation_name} limit 0")
            description = cursor.description
        except snowflake.connector.errors.ProgrammingError as exc:
            if exc.errno == NOT_FOUND:
                raise RelationMissing(
                    f"model '{cohort.model}': relation {cohort.relation_name} does not exist or "
                    "the role cannot read it: build it with "
                    f"`dbt build --select {cohort.model}` and grant SELECT to the runner's role"
                ) from None
            raise WarehouseError(
                f"model '{cohort.model}': cannot read {cohort.relation_name}: {self.explain(exc)}"
            ) from None
        finally:
            cursor.close()
        by_name = {str(c.name).lower(): c for c in description}
        column = by_name.get(cohort.uid_column.lower())
        if column is None:
            raise missing_column(cohort, (str(c.name) for c in description))
        kind = FIELD_ID_TO_NAME.get(column.type_code, str(column.type_code))
        whole_number = kind in NUMBER_TYPES and not column.scale
        if kind not in TEXT_TYPES and not whole_number:
            shown = f"NUMBER({column.precision},{column.scale})" if kind == "FIXED" else kind
            raise unusable_type(cohort, shown)
        return UidColumn(name=str(column.name), type="NUMBER" if whole_number else "VARCHAR")

    def cancel(self, running: Any) -> None:
        """Cancel the queries of the session `running` with SYSTEM$CANCEL_ALL_QUERIES: the
        connector learns a query's id only once `execute` returns, so the running one cannot
        be named (`abort_query`, SYSTEM$CANCEL_QUERY). A read runs alone on the session (one
        statement at a time), so it is the one cancelled. Sent from the heartbeat's session
        when it is open, as a statement of its own; the query raises ProgrammingError."""
        beater = self.__dict__.get("_beater")
        conn = beater.conn if isinstance(beater, SnowflakeWarehouse) else running
        cursor = conn.cursor()
        try:
            cursor.execute("select system$cancel_all_queries(?)", [running.session_id])
        finally:
            cursor.close()

    def explain(self, exc: BaseException) -> str:
        """Snowflake's error, with any URL or path in it redacted (a stage's, say)."""
        return redact_path(str(exc))

    def close(self) -> None:
        """Close the session (and the heartbeat's)."""
        self.close_heartbeat()
        self.conn.close()

"""Snowflake: cohort models and sync state in the user's Snowflake account.

Identifiers follow dbt-snowflake's default (unquoted, so Snowflake folds them to upper
case): the state tables a `dbt run-operation moengage_create_state_tables` made are
the ones the runner finds. Checkpoints bind a request's uids as one JSON array and
FLATTEN it in the warehouse: one statement per accepted request, never one per uid.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import snowflake.connector
from snowflake.connector.constants import FIELD_ID_TO_NAME

from .. import uids
from ..cohorts import CohortSpec
from ..errors import RelationMissing, WarehouseError
from ..state.schema import SQL_STATE_TYPES, present_state_tables
from ..state.sql import state_sql
from .audience import UidColumn, find_uid_column, unreadable, unusable_type
from .engine import Engine
from .profiles import ProfileTarget
from .redact import redact_path
from .snowflake_connect import open_connection
from .sql import MODEL_SQL, OUTER_ANTI_JOINS, quote_identifier, trimmed_uid_sql

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
STATE_TYPES = {**SQL_STATE_TYPES, "timestamp": "timestamp_ntz", "bigint": "number(38,0)"}

SQL: dict[str, str] = {
    **MODEL_SQL,
    **state_sql(STATE_TYPES, _EXACT),
    **trimmed_uid_sql(_TEXT, _TRIMMED, "count_if({})"),
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
        database, schema = target.state_location(
            state_schema, "`database` and `schema`", "Snowflake"
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

    def lock_beater(self) -> Engine:
        """The lock row is taken by MERGE on Snowflake's clock; runners on other machines
        share it, so it is beaten from the run's heartbeat session (from this session when
        there is no opener for another) and checked before each checkpoint."""
        return self.heartbeat() or self

    def open_beside(self) -> SnowflakeWarehouse | None:
        """Another session with the same profile (the run's heartbeat session)."""
        if self.opener is None:
            return None
        return SnowflakeWarehouse(self.opener(), self.database, self.state_schema)

    def create_snapshot(self, table: str, select: str) -> list[str]:
        """A transient table in the state schema (a temporary one cannot be named there on
        every Snowflake stand-in), kept no day past its drop: no Fail-safe or Time Travel
        storage."""
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
            return present_state_tables(cursor.fetchall())
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
            raise unreadable(cohort, self.explain(exc)) from None
        finally:
            cursor.close()
        column = find_uid_column(cohort, description, lambda c: str(c.name))
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

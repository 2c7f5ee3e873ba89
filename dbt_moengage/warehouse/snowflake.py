"""Snowflake: cohort models and sync state in the user's Snowflake account.

Identifiers follow dbt-snowflake's default (unquoted, so Snowflake folds them to upper
case): the state tables a `dbt run-operation moengage_create_state_tables` made are
the ones the runner finds. Checkpoints bind a request's uids as one JSON array and
FLATTEN it in the warehouse: one statement per accepted request, never one per uid.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import snowflake.connector
from snowflake.connector.constants import FIELD_ID_TO_NAME

from .. import uids
from ..cohorts import CohortSpec
from ..errors import ProfileError, WarehouseError
from .base import (
    COMMON_SQL,
    SqlWarehouse,
    UidColumn,
    exact_state_sql,
    missing_column,
    quote_identifier,
    unusable_type,
)
from .profiles import ProfileTarget
from .redact import redact_path
from .schema import STATE_TABLES, state_ddl
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
_VALID = f"{{col}} is not null and {_TEXT} <> '' and {_TRIMMED} = {_TEXT}"

# The state tables' types; the dbt package's variant for this engine uses the same.
STATE_TYPES = {
    "string": "varchar",
    "timestamp": "timestamp_ntz",
    "bigint": "number(38,0)",
    "boolean": "boolean",
}

SQL: dict[str, str] = {
    **COMMON_SQL,
    **exact_state_sql(_EXACT),
    **state_ddl(STATE_TYPES),
    "stats": f"""
        select count(*), count(*) - count({{col}}),
            count_if({{col}} is not null and {_TRIMMED} = ''),
            count_if({_TRIMMED} <> '' and {_TRIMMED} <> {_TEXT})
        from {{relation}}""",
    "model_uids": f"select distinct {_TEXT} as uid from {{relation}} where {_VALID}",
    "add_delta": """
        select m.uid from ({model_uids}) m
        left join ({state_uids}) s on m.uid = s.uid where s.uid is null""",
    "remove_delta": """
        select s.uid from ({state_uids}) s
        left join ({model_uids}) m on s.uid = m.uid where m.uid is null""",
    "json_uids": "select value::varchar as uid from table(flatten(input => parse_json(?)))",
}


class SnowflakeWarehouse(SqlWarehouse):
    """Reads cohort models from, and keeps sync state in, Snowflake."""

    engine = "snowflake"
    SQL: ClassVar[dict[str, str]] = SQL
    STATE_TYPES: ClassVar[dict[str, str]] = STATE_TYPES
    EPOCH: ClassVar[str] = "date_part(epoch_second, {})"
    # Snowflake's hash() is a signed 64-bit number.
    UID_HASH: ClassVar[str] = "abs(hash({}))"
    ERRORS: ClassVar[tuple[type[BaseException], ...]] = (snowflake.connector.errors.Error,)
    # Runners on different machines share the lock table; only the heartbeat tells a live
    # holder from a killed one. The connector's connections are thread safe.
    HEARTBEAT_THREAD: ClassVar[bool] = True

    def __init__(self, conn: Any, database: str, state_schema: str) -> None:
        self.conn = conn
        self.database = database
        self.state_schema = state_schema

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
        """Connect with the dbt-snowflake profile target's settings."""
        database = str(target.fields.get("database") or "")
        schema = state_schema or str(target.fields.get("schema") or "")
        if not database or not schema:
            raise ProfileError(
                f"profile '{target.profile_name}' target '{target.target_name}': `database` "
                "and `schema` are required for Snowflake"
            )
        return cls(open_connection(target), database, schema)

    def quote(self, identifier: str) -> str:
        """Simple names stay unquoted (Snowflake folds them, as dbt-snowflake does)."""
        return identifier if _SIMPLE.match(identifier) else quote_identifier(identifier)

    def state_table(self, name: str) -> str:
        """database.schema.table, each part as dbt-snowflake would write it."""
        return f"{self.quote(self.database)}.{self.quote(self.state_schema)}.{name}"

    def _format(
        self, name: str, cohort: CohortSpec | None = None, now: datetime | None = None
    ) -> str:
        text = super()._format(name, cohort, now)
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
                raise WarehouseError(
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

    def explain(self, exc: BaseException) -> str:
        """Snowflake's error, with any URL or path in it redacted (a stage's, say)."""
        return redact_path(str(exc))

    def close(self) -> None:
        """Close the session."""
        self.conn.close()

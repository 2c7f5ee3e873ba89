"""Snowflake: cohort models and sync state in the user's Snowflake account.

Identifiers follow dbt-snowflake's default (unquoted, so Snowflake folds them to upper
case): the state tables a `dbt run-operation moengage_create_state_tables` made are
the ones the runner finds. Checkpoints bind a request's uids as one JSON array and
FLATTEN it in the warehouse: one statement per accepted request, never one per uid.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import snowflake.connector
from snowflake.connector.constants import FIELD_ID_TO_NAME

from ..cohorts import CohortSpec
from ..errors import ProfileError, WarehouseError
from .base import (
    COMMON_SQL,
    STATE_TABLES,
    SqlWarehouse,
    UidColumn,
    missing_column,
    quote_identifier,
    state_ddl,
    unusable_type,
)
from .profiles import ProfileTarget
from .snowflake_connect import open_connection

TEXT_TYPES = ("TEXT",)
NUMBER_TYPES = ("FIXED",)
# Snowflake errno for "does not exist or not authorized".
NOT_FOUND = 2003
_SIMPLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")

# Whitespace-only uids count as empty: space, tab, LF, VT, FF, CR.
_BLANK = "chr(32) || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)"
_TEXT = "cast({col} as varchar)"
_VALID = f"{{col}} is not null and trim({_TEXT}, {_BLANK}) <> ''"
_JSON_UIDS = "select value::varchar from table(flatten(input => parse_json(?)))"

# The state tables' types; the dbt package's variant for this engine uses the same.
STATE_TYPES = {
    "string": "varchar",
    "timestamp": "timestamp_ntz",
    "bigint": "number(38,0)",
    "boolean": "boolean",
}

SQL: dict[str, str] = {
    **COMMON_SQL,
    **state_ddl(STATE_TYPES),
    "stats": f"""
        select count(*), count(*) - count({{col}}),
            count_if({{col}} is not null and trim({_TEXT}, {_BLANK}) = '')
        from {{relation}}""",
    "model_uids": f"select distinct {_TEXT} as uid from {{relation}} where {_VALID}",
    "plan": """
        select count(m.uid), count_if(s.uid is null), count_if(m.uid is null)
        from ({model_uids}) m full outer join ({state_uids}) s on m.uid = s.uid""",
    "add_delta": """
        select m.uid from ({model_uids}) m
        left join ({state_uids}) s on m.uid = s.uid where s.uid is null""",
    "remove_delta": """
        select s.uid from ({state_uids}) s
        left join ({model_uids}) m on s.uid = m.uid where m.uid is null""",
    "insert_members": """
        insert into {members} (workspace_id, cohort_id, synced_at, run_id, uid)
        select ?, ?, ?, ?, value::varchar from table(flatten(input => parse_json(?)))""",
    "delete_members": f"""
        delete from {{members}}
        where workspace_id = ? and cohort_id = ? and uid in ({_JSON_UIDS})""",
}


class SnowflakeWarehouse(SqlWarehouse):
    """Reads cohort models from, and keeps sync state in, Snowflake."""

    engine = "snowflake"
    SQL: ClassVar[dict[str, str]] = SQL
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

    def _format(self, name: str, cohort: CohortSpec | None = None) -> str:
        text = super()._format(name, cohort)
        if name == "create_schema":
            return text.replace(
                f" {self.quote(self.state_schema)}",
                f" {self.quote(self.database)}.{self.quote(self.state_schema)}",
            )
        return text

    def existing_state_tables(self) -> set[str]:
        """State tables present in the state schema."""
        schema = (
            self.state_schema.upper() if _SIMPLE.match(self.state_schema) else self.state_schema
        )
        cursor = self.conn.cursor()
        try:
            cursor.execute(
                f"select lower(table_name) from {self.quote(self.database)}.information_schema"
                ".tables where table_schema = ?",
                [schema],
            )
            return {name for (name,) in cursor.fetchall() if name in STATE_TABLES}
        except snowflake.connector.errors.ProgrammingError as exc:
            if exc.errno == NOT_FOUND:
                return set()
            raise WarehouseError(f"cannot list the state tables in {schema}: {exc}") from None
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
                f"model '{cohort.model}': cannot read {cohort.relation_name}: {exc}"
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

    def close(self) -> None:
        """Close the session."""
        self.conn.close()

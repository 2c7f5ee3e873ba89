"""DuckDB, the embedded default: the database file a dbt-duckdb profile points at.

DuckDB lets one process write a database file at a time. The runner opens it for
writing (state and checkpoints), so a second runner waits for the file, bounded, and
the lock rows of a runner that died are stale by the time anyone can open the file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

import duckdb

from ..cohorts import CohortSpec
from ..errors import ProfileError, WarehouseError
from .base import STATE_TABLES, LockTimeout, SqlWarehouse, UidColumn, quote_identifier
from .profiles import ProfileTarget

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

# Whitespace-only uids count as empty (space, tab, LF, VT, FF, CR); a regex is cheaper
# here than trim() with a character list.
_TEXT = "cast({col} as varchar)"
_BLANK = f"regexp_full_match({_TEXT}, '[ \\t\\n\\v\\f\\r]*')"
_VALID = f"{{col}} is not null and not {_BLANK}"

SQL: dict[str, str] = {
    "stats": f"""
        select count(*), count(*) - count({{col}}),
            count(*) filter (where {{col}} is not null and {_BLANK})
        from {{relation}}""",
    "model_uids": f"select distinct {_TEXT} as uid from {{relation}} where {_VALID}",
    "state_uids": "select uid from {members} where workspace_id = ? and cohort_id = ?",
    # One hash join gives every count: model uids, new ones, and those that left.
    "plan": """
        select count(m.uid), count(*) filter (where s.uid is null),
            count(*) filter (where m.uid is null)
        from ({model_uids}) m full outer join ({state_uids}) s on m.uid = s.uid""",
    "long_uids": "select count(*), min(uid) from ({model_uids}) where length(uid) > ?",
    "count_model": "select count(*) from ({model_uids})",
    "add_delta": "select m.uid from ({model_uids}) m anti join ({state_uids}) s on m.uid = s.uid",
    "remove_delta": (
        "select s.uid from ({state_uids}) s anti join ({model_uids}) m on s.uid = m.uid"
    ),
    "insert_members": """
        insert into {members} (workspace_id, cohort_id, synced_at, run_id, uid)
        select ?, ?, ?, ?, unnest(?::varchar[])""",
    "delete_members": """
        delete from {members}
        where workspace_id = ? and cohort_id = ? and uid in (select unnest(?::varchar[]))""",
    "delete_run": "delete from {runs} where run_id = ? and workspace_id = ? and cohort_id = ?",
    "insert_run": "insert into {runs} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "delete_stale_lock": """
        delete from {locks} where workspace_id = ? and cohort_id = ? and heartbeat_at < ?""",
    "insert_lock": """
        insert into {locks} select ?, ?, ?, ?, ?
        where not exists (select 1 from {locks} where workspace_id = ? and cohort_id = ?)""",
    "lock_holder": """
        select run_id, locked_at from {locks} where workspace_id = ? and cohort_id = ?
        order by locked_at, run_id limit 1""",
    "release_lock": "delete from {locks} where workspace_id = ? and cohort_id = ? and run_id = ?",
    "heartbeat_lock": "update {locks} set heartbeat_at = ? where run_id = ?",
    "clear_locks": "delete from {locks}",
    "create_schema": "create schema if not exists {schema}",
    # Same columns as the dbt package's moengage_create_state_tables macro.
    "create_moengage_cohort_members": """
        create table if not exists {members} (
            workspace_id varchar not null,
            cohort_id varchar not null,
            uid varchar not null,
            synced_at timestamp not null,
            run_id varchar not null
        )""",
    "create_moengage_sync_runs": """
        create table if not exists {runs} (
            run_id varchar not null,
            workspace_id varchar not null,
            cohort_id varchar not null,
            model varchar not null,
            mode varchar not null,
            full_refresh boolean not null,
            started_at timestamp not null,
            finished_at timestamp,
            status varchar not null,
            added bigint,
            removed bigint,
            unchanged bigint,
            left_but_kept bigint,
            requests bigint,
            retries bigint,
            error varchar
        )""",
    "create_moengage_sync_locks": """
        create table if not exists {locks} (
            workspace_id varchar not null,
            cohort_id varchar not null,
            run_id varchar not null,
            locked_at timestamp not null,
            heartbeat_at timestamp not null
        )""",
}


class DuckDBWarehouse(SqlWarehouse):
    """Reads cohort models from, and keeps sync state in, a DuckDB database file."""

    engine = "duckdb"
    SQL: ClassVar[dict[str, str]] = SQL
    ERRORS: ClassVar[tuple[type[BaseException], ...]] = (duckdb.Error,)

    def __init__(
        self,
        path: str,
        *,
        state_schema: str = "main",
        read_only: bool = False,
        wait_seconds: float = 0.0,
    ) -> None:
        self.path = path
        self.state_schema = state_schema
        self.read_only = read_only
        self.conn = self._open(path, read_only, wait_seconds)

    @staticmethod
    def _open(path: str, read_only: bool, wait_seconds: float) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                conn = duckdb.connect(path, read_only=read_only)
                # Its progress bar would draw over the runner's own output.
                conn.execute("set enable_progress_bar = false")
                return conn
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise ProfileError(f"cannot open DuckDB database {path!r}: {exc}") from None
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"DuckDB database {path!r} is held by another process (another "
                        f"dbt-moengage sync, or dbt itself) and stayed locked for "
                        f"{wait_seconds:g} s; let it finish, or raise MOENGAGE_LOCK_WAIT_SECONDS"
                        f" ({exc})"
                    ) from None
                time.sleep(0.25)
            except duckdb.Error as exc:
                raise ProfileError(
                    f"cannot open DuckDB database {path!r}: {exc}; check the profile's `path`"
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
        path = str(target.fields.get("path", ":memory:"))
        if path == ":memory:" or path.startswith("md:"):
            raise ProfileError(
                f"profile '{target.profile_name}' target '{target.target_name}': path {path!r} "
                "is not a database file the runner can open; point `path` at a .duckdb file"
            )
        resolved = Path(path).expanduser()
        if not resolved.is_absolute() and not resolved.exists():
            # dbt-duckdb resolves against the folder dbt ran in, usually the project folder.
            resolved = project_dir / resolved
        if not resolved.exists():
            raise ProfileError(
                f"DuckDB database {path!r} (profile '{target.profile_name}', target "
                f"'{target.target_name}') does not exist: run `dbt build` first"
            )
        schema = state_schema or str(target.fields.get("schema") or "main")
        return cls(
            str(resolved), state_schema=schema, read_only=read_only, wait_seconds=wait_seconds
        )

    def quote(self, identifier: str) -> str:
        """DuckDB quotes with double quotes."""
        return quote_identifier(identifier)

    def state_table(self, name: str) -> str:
        """`"schema"."table"` in the database's own catalog."""
        return f"{self.quote(self.state_schema)}.{self.quote(name)}"

    def existing_state_tables(self) -> set[str]:
        """State tables present in the state schema."""
        rows = self.conn.execute(
            "select lower(table_name) from information_schema.tables "
            "where table_catalog = current_database() and table_schema = ?",
            [self.state_schema],
        ).fetchall()
        return {name for (name,) in rows if name in STATE_TABLES}

    def prepare_state(self, create: bool) -> bool:
        """Create what is missing; lock rows left by a runner that died are stale here."""
        ready = super().prepare_state(create and not self.read_only)
        if ready and not self.read_only:
            self._run("clear_locks")
        return ready

    def check_uid_column(self, cohort: CohortSpec) -> UidColumn:
        """Refuse a missing relation, a missing column, or a column of an unusable type."""
        try:
            rows = self.conn.execute(f"describe select * from {cohort.relation_name}").fetchall()
        except duckdb.CatalogException:
            raise WarehouseError(
                f"model '{cohort.model}': relation {cohort.relation_name} does not exist in "
                f"{self.path}: build the model with `dbt build --select {cohort.model}`"
            ) from None
        except duckdb.Error as exc:
            raise WarehouseError(
                f"model '{cohort.model}': cannot read {cohort.relation_name}: {exc}"
            ) from None
        columns = {str(name).lower(): (str(name), str(kind)) for name, kind, *_ in rows}
        found = columns.get(cohort.uid_column.lower())
        if found is None:
            names = ", ".join(name for name, _ in columns.values())
            raise WarehouseError(
                f"model '{cohort.model}': meta.moengage.uid_column = {cohort.uid_column!r}: "
                f"no such column in {cohort.relation_name} (columns: {names}); "
                "set uid_column to the column holding MoEngage's Unique User ID"
            )
        kind = found[1].upper()
        if kind not in UID_TYPES:
            raise WarehouseError(
                f"model '{cohort.model}': meta.moengage.uid_column = {cohort.uid_column!r} has "
                f"type {kind}; uids must be text or whole numbers: cast it in the model "
                "(e.g. cast(... as varchar))"
            )
        return UidColumn(name=found[0], type=kind)

    def close(self) -> None:
        """Close the database."""
        self.conn.close()

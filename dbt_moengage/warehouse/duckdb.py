"""DuckDB, the embedded default: the database file a dbt-duckdb profile points at."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from ..cohorts import CohortSpec
from ..errors import ProfileError, WarehouseError
from .base import DEFAULT_FETCH_ROWS, AudienceStats, Warehouse, quote_identifier
from .profiles import ProfileTarget

# Text, integers and UUIDs cast to text without losing what MoEngage matches on.
UID_TYPES = (
    "VARCHAR",
    "TEXT",
    "STRING",
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

# Whitespace-only uids count as empty: space, tab, LF, VT, FF, CR.
BLANK_CHARS = "chr(32) || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)"

STATS_SQL = """
select
    count(*) as total_rows,
    count(*) filter (where {col} is null) as null_rows,
    count(*) filter (
        where {col} is not null and trim(cast({col} as varchar), {blank}) = ''
    ) as empty_rows,
    count(distinct cast({col} as varchar))
        filter (where trim(cast({col} as varchar), {blank}) <> '') as distinct_uids
from {relation}
"""

UIDS_SQL = """
select distinct cast({col} as varchar) as uid
from {relation}
where {col} is not null and trim(cast({col} as varchar), {blank}) <> ''
"""


class DuckDBWarehouse(Warehouse):
    """Reads cohort models from a DuckDB database file."""

    engine = "duckdb"

    def __init__(self, path: str, read_only: bool = True) -> None:
        self.path = path
        try:
            self.conn = duckdb.connect(path, read_only=read_only)
        except duckdb.Error as exc:
            raise ProfileError(
                f"cannot open DuckDB database {path!r}: {exc}; check the profile's `path` and "
                "that no other process (a running dbt) holds it open for writing"
            ) from None

    @classmethod
    def from_profile(cls, target: ProfileTarget, project_dir: Path) -> DuckDBWarehouse:
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
        return cls(str(resolved))

    def check_uid_column(self, cohort: CohortSpec) -> str:
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
        return kind

    def audience_stats(self, cohort: CohortSpec) -> AudienceStats:
        """Count rows, nulls, empties and distinct uids in one scan."""
        row = self._fetchone(STATS_SQL, cohort)
        return AudienceStats(rows=row[0], nulls=row[1], empties=row[2], distinct=row[3])

    def stream_uids(
        self, cohort: CohortSpec, batch_rows: int = DEFAULT_FETCH_ROWS
    ) -> Iterator[list[str]]:
        """Stream distinct uids in batches of `batch_rows` from a cursor of its own."""
        cursor = self.conn.cursor()
        try:
            cursor.execute(self._sql(UIDS_SQL, cohort))
            while True:
                rows = cursor.fetchmany(batch_rows)
                if not rows:
                    return
                yield [row[0] for row in rows]
        except duckdb.Error as exc:
            raise WarehouseError(
                f"model '{cohort.model}': reading uids from {cohort.relation_name} failed: {exc}"
            ) from None
        finally:
            cursor.close()

    def close(self) -> None:
        """Close the database."""
        self.conn.close()

    def _sql(self, template: str, cohort: CohortSpec) -> str:
        return template.format(
            relation=cohort.relation_name,
            col=quote_identifier(cohort.uid_column),
            blank=BLANK_CHARS,
        )

    def _fetchone(self, template: str, cohort: CohortSpec) -> Any:
        try:
            row = self.conn.execute(self._sql(template, cohort)).fetchone()
        except duckdb.Error as exc:
            raise WarehouseError(
                f"model '{cohort.model}': query on {cohort.relation_name} failed: {exc}"
            ) from None
        assert row is not None
        return row

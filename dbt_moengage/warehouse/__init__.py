"""Stage 3: warehouses, and `connect`, which picks the engine from the dbt profile.

The interface every engine implements is engine.py, with the parts it is made of: the SQL
engines share (sql.py), what they report about a cohort's model (audience.py), stopping
mid-read (cancel.py) and bytes billed (billing.py). Then one module per engine with its SQL
beside it (duckdb.py, postgres.py, snowflake.py, bigquery.py), how each engine connects
(duckdb_connect.py, snowflake_connect.py, bigquery_connect.py; Postgres's is short enough
to stay in postgres.py) and BigQuery's query jobs (bigquery_jobs.py). The dbt profile is
read by profiles.py; what may hold a secret is redacted by redact.py."""

from __future__ import annotations

from pathlib import Path

from ..errors import ProfileError
from .audience import AudienceStats, UidColumn
from .engine import Engine
from .profiles import ProfileTarget, load_profile_target

SUPPORTED = ("duckdb", "snowflake", "postgres", "bigquery")


def connect(
    target: ProfileTarget,
    project_dir: Path,
    *,
    state_schema: str | None = None,
    read_only: bool = False,
    wait_seconds: float = 0.0,
) -> Engine:
    """Open the warehouse a dbt profile target describes."""
    return engine_class(target).from_profile(
        target,
        project_dir,
        state_schema=state_schema,
        read_only=read_only,
        wait_seconds=wait_seconds,
    )


def engine_class(target: ProfileTarget) -> type[Engine]:
    """The engine of the target's adapter type, imported only when used (each brings its
    warehouse's driver)."""
    if target.type == "duckdb":
        from .duckdb import DuckDBWarehouse

        return DuckDBWarehouse
    if target.type == "snowflake":
        from .snowflake import SnowflakeWarehouse

        return SnowflakeWarehouse
    if target.type == "postgres":
        from .postgres import PostgresWarehouse

        return PostgresWarehouse
    if target.type == "bigquery":
        from .bigquery import BigQueryWarehouse

        return BigQueryWarehouse
    raise ProfileError(
        f"profile '{target.profile_name}' target '{target.target_name}' has type "
        f"{target.type!r}; dbt-moengage supports: {', '.join(SUPPORTED)}"
    )


__all__ = [
    "AudienceStats",
    "Engine",
    "ProfileTarget",
    "UidColumn",
    "connect",
    "load_profile_target",
]

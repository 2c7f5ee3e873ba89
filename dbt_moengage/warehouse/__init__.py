"""Stage 3: warehouses. The interface every engine implements (engine.py), one module per
engine with its SQL beside it, and `connect`, which picks the engine from the dbt profile."""

from __future__ import annotations

from pathlib import Path

from ..errors import ProfileError
from .engine import AudienceStats, Engine, UidColumn
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
    if target.type == "duckdb":
        from .duckdb import DuckDBWarehouse

        return DuckDBWarehouse.from_profile(
            target,
            project_dir,
            state_schema=state_schema,
            read_only=read_only,
            wait_seconds=wait_seconds,
        )
    if target.type == "snowflake":
        from .snowflake import SnowflakeWarehouse

        return SnowflakeWarehouse.from_profile(
            target, project_dir, state_schema=state_schema, read_only=read_only
        )
    if target.type == "postgres":
        from .postgres import PostgresWarehouse

        return PostgresWarehouse.from_profile(
            target, project_dir, state_schema=state_schema, read_only=read_only
        )
    if target.type == "bigquery":
        from .bigquery import BigQueryWarehouse

        return BigQueryWarehouse.from_profile(
            target, project_dir, state_schema=state_schema, read_only=read_only
        )
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

"""Stage 3: warehouses. One module per engine; `connect` picks it from the dbt profile."""

from __future__ import annotations

from pathlib import Path

from ..errors import ProfileError
from .base import (
    ADD,
    ALL,
    REMOVE,
    RENAME,
    RESEND,
    AudienceStats,
    CohortRecord,
    Delta,
    LockTimeout,
    RunRow,
    SqlWarehouse,
    StateVersionError,
    Warehouse,
)
from .profiles import ProfileTarget, load_profile_target
from .schema import SCHEMA_VERSION, StateKey, StateStatus, normalize_endpoint

SUPPORTED = ("duckdb", "snowflake")


def connect(
    target: ProfileTarget,
    project_dir: Path,
    *,
    state_schema: str | None = None,
    read_only: bool = False,
    wait_seconds: float = 0.0,
) -> SqlWarehouse:
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
    raise ProfileError(
        f"profile '{target.profile_name}' target '{target.target_name}' has type "
        f"{target.type!r}; dbt-moengage supports: {', '.join(SUPPORTED)}"
    )


__all__ = [
    "ADD",
    "ALL",
    "REMOVE",
    "RENAME",
    "RESEND",
    "SCHEMA_VERSION",
    "AudienceStats",
    "CohortRecord",
    "Delta",
    "LockTimeout",
    "ProfileTarget",
    "RunRow",
    "SqlWarehouse",
    "StateKey",
    "StateStatus",
    "StateVersionError",
    "Warehouse",
    "connect",
    "load_profile_target",
    "normalize_endpoint",
]

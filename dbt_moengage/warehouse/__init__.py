"""Stage 3: warehouses. One module per engine; `connect` picks it from the dbt profile."""

from __future__ import annotations

from pathlib import Path

from ..errors import ProfileError
from .base import AudienceStats, Warehouse
from .profiles import ProfileTarget, load_profile_target

SUPPORTED = ("duckdb",)


def connect(target: ProfileTarget, project_dir: Path) -> Warehouse:
    """Open the warehouse a dbt profile target describes."""
    if target.type == "duckdb":
        from .duckdb import DuckDBWarehouse

        return DuckDBWarehouse.from_profile(target, project_dir)
    raise ProfileError(
        f"profile '{target.profile_name}' target '{target.target_name}' has type "
        f"{target.type!r}; dbt-moengage supports: {', '.join(SUPPORTED)}"
    )


__all__ = ["AudienceStats", "ProfileTarget", "Warehouse", "connect", "load_profile_target"]

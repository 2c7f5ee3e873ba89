"""dbt-moengage: keep MoEngage cohorts in step with dbt models.

The Python API, for orchestrators (Airflow, Dagster, Prefect) that run a sync without the
CLI: `sync(...)` returns a typed `RunReport` (see api.py); the errors it may raise are in
errors.py, drawn as a tree.
"""

from ._version import __version__
from .api import sync
from .errors import (
    CohortError,
    ConfigError,
    MoEngageSyncError,
    ProfileError,
    SettingsError,
)
from .report import CohortResult, RunReport

__all__ = [
    "CohortError",
    "CohortResult",
    "ConfigError",
    "MoEngageSyncError",
    "ProfileError",
    "RunReport",
    "SettingsError",
    "__version__",
    "sync",
]

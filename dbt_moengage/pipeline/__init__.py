"""The pipeline wired together: manifest -> cohorts -> warehouse -> packing -> client -> state
-> report. `run_sync` (run.py) runs a sync; options.py holds what the user asked for;
validation.py the checks before any request; destination.py one workspace's cohorts;
cohort.py one cohort under its lock."""

from __future__ import annotations

from .cohort import CohortSync
from .destination import sync_destination
from .options import SyncOptions, cohort_defaults, profile_target, state_key
from .run import run_sync
from .validation import (
    Validation,
    check_built_for,
    checked_column,
    discover_cohorts,
    select_cohorts,
    validate,
)

__all__ = [
    "CohortSync",
    "SyncOptions",
    "Validation",
    "check_built_for",
    "checked_column",
    "cohort_defaults",
    "discover_cohorts",
    "profile_target",
    "run_sync",
    "select_cohorts",
    "state_key",
    "sync_destination",
    "validate",
]

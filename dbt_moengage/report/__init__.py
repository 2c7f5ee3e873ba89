"""Stage 7: the report. What a run did, for people and machines: results.py (each cohort's
result, the summary table, target/moengage_sync_results.json, the exit code), progress/
(bars, plain lines or JSON events while a sync runs); and what the other commands print:
listing.py (`ls`), status.py (`status`) and html.py (the `dbt-moengage report` page of
every cohort's history). tables.py prints a table that fits the console, else stacked
lines."""

from .results import (
    DRY_RUN,
    FAILED,
    GUARDED,
    INTERRUPTED,
    INVALID,
    NOT_BUILT,
    RUN_STATUSES,
    RUNNING,
    SKIPPED,
    SYNCED,
    CohortResult,
    RunReport,
    byte_size,
    print_summary,
)
from .tables import field_lines

__all__ = [
    "DRY_RUN",
    "FAILED",
    "GUARDED",
    "INTERRUPTED",
    "INVALID",
    "NOT_BUILT",
    "RUNNING",
    "RUN_STATUSES",
    "SKIPPED",
    "SYNCED",
    "CohortResult",
    "RunReport",
    "byte_size",
    "field_lines",
    "print_summary",
]

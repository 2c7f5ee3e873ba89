"""Stage 7: the report. What a run did, for people and machines: results.py (each cohort's
result, the summary table, target/moengage_sync_results.json, the exit code),
progress.py (bars, plain lines or JSON events while a sync runs) and html.py (the
`dbt-moengage report` page of every cohort's history)."""

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
    field_lines,
    print_summary,
)

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

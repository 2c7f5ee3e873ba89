"""Stage 7: what happened, for people (a summary table) and machines (a JSON file)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..uids import DROP_REASONS
from .tables import field_lines, labelled, print_fitted

RESULTS_FILE = "moengage_sync_results.json"

SYNCED = "synced"
DRY_RUN = "dry_run"
FAILED = "failed"
INVALID = "invalid"
SKIPPED = "skipped"
# A mirror run that would remove too many members, refused (nothing sent).
GUARDED = "guarded"
# The run was stopped (SIGINT, SIGTERM) before or while the cohort synced.
INTERRUPTED = "interrupted"
# A run row's status (never a result's: that is `skipped`) when `--only-built` did not sync
# the cohort because its model, or a test on it, failed in dbt: `status` then shows the
# cohort failing until a sync succeeds. A model left out of the invocation writes no row.
NOT_BUILT = "not_built"
OK_STATUSES = (SYNCED, DRY_RUN)
# How a status word shows on a console; any other is red.
STATUS_STYLES = {SYNCED: "green", DRY_RUN: "cyan"}
# A cohort's run row (moengage_sync_runs) says this from the moment its sync starts sending
# until the run ends; a run killed outright leaves it so.
RUNNING = "running"
# Every status the runner writes to a run row (a dry run, an invalid cohort and a skipped
# one write none). The dbt package's tests accept this list (macros/_moengage_run_statuses.sql;
# tests/unit/test_run_statuses.py checks the two agree): a new status the runner writes is one
# line here and one there.
RUN_STATUSES = (RUNNING, SYNCED, FAILED, GUARDED, INTERRUPTED, NOT_BUILT)


@dataclass
class CohortResult:
    """The outcome of one cohort in one run."""

    model: str
    cohort_id: str | None
    cohort_name: str | None
    mode: str = "add"
    status: str = FAILED
    uids_total: int = 0
    uids_sent: int = 0
    added: int = 0
    removed: int = 0
    # Members MoEngage had accepted before, sent again (unknown users may have joined since).
    resent: int = 0
    unchanged: int = 0
    left_but_kept: int = 0
    planned_add: int = 0
    planned_remove: int = 0
    planned_resend: int = 0
    # The cohort's name or description changed, and MoEngage got the new one.
    renamed: bool = False
    uids_unsynced: int = 0
    # Skipped because its model was not part of this dbt invocation: not a failure.
    unselected: bool = False
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    # Requests sent (retries included): each attempt that went out, never one refused
    # because the run stopped.
    requests: int = 0
    # Requests a dry run would send; a real run counts what it sent (`requests`), not this.
    planned_requests: int | None = None
    retries: int = 0
    seconds: float = 0.0
    error: str | None = None
    # Bytes the warehouse billed for the cohort's jobs in this run (BigQuery); None where
    # the engine reports no cost, or the cohort never reached the warehouse.
    bytes_billed: int | None = None


@dataclass
class RunReport:
    """Every cohort's result, plus when and how the run went."""

    run_id: str
    started_at: str
    dry_run: bool
    finished_at: str = ""
    results: list[CohortResult] = field(default_factory=list)
    # The signal that stopped the run (SIGINT 2, SIGTERM 15), if one did.
    interrupted_by: int | None = None
    # What went wrong without failing the run (a notification not sent), as it was shown.
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """128 + the signal when interrupted; 0 when every cohort synced (or would have, in
        a dry run), or was left out of this dbt invocation; else 1."""
        if self.interrupted_by is not None:
            return 128 + self.interrupted_by
        return 0 if all(r.status in OK_STATUSES or r.unselected for r in self.results) else 1

    @property
    def ok(self) -> bool:
        """True when every cohort synced (the CLI would exit 0)."""
        return self.exit_code == 0

    def failure_summary(self) -> str:
        """One line per cohort that did not sync, with its error: for an orchestrator's log."""
        failed = [r for r in self.results if r.status not in OK_STATUSES and not r.unselected]
        lines = [f"{r.model}: {r.status}: {r.error or 'no error recorded'}" for r in failed]
        if self.interrupted_by is not None:
            lines.insert(0, f"interrupted by signal {self.interrupted_by}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The report as written to target/moengage_sync_results.json."""
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "dry_run": self.dry_run,
            "exit_code": self.exit_code,
            "interrupted_by": self.interrupted_by,
            "warnings": list(self.warnings),
            "cohorts": [asdict(r) for r in self.results],
        }

    def write(self, target_dir: Path) -> Path:
        """Write the JSON report into dbt's target folder and return its path."""
        target_dir.mkdir(parents=True, exist_ok=True)
        path = target_dir / RESULTS_FILE
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path


def summary_table(report: RunReport) -> Table:
    """A table with one row per cohort (every number in full; it needs a wide console)."""
    title = "MoEngage cohort sync (dry run)" if report.dry_run else "MoEngage cohort sync"
    table = Table(title=title, title_justify="left")
    for name in ("model", "cohort_id", "mode", "status"):
        table.add_column(name, no_wrap=True)
    billed = _billed(report)
    for name in (*_number_headers(report), *(("billed",) if billed else ()), "sec"):
        table.add_column(name, justify="right", no_wrap=True)
    for r in report.results:
        table.add_row(
            Text(r.model),
            Text(r.cohort_id or "-"),
            r.mode,
            _status(r),
            *(f"{value:,}" for value in _numbers(report, r)),
            *((byte_size(r.bytes_billed),) if billed else ()),
            f"{r.seconds:.1f}",
        )
    return table


def _billed(report: RunReport) -> bool:
    """Whether the run's warehouse billed its jobs (BigQuery): only then is there a column."""
    return any(r.bytes_billed is not None for r in report.results)


def byte_size(count: int | None) -> str:
    """Bytes as BigQuery's console shows them (`12.3 MB`, units of 1,024); `-` when unknown."""
    if count is None:
        return "-"
    if count < 1024:
        return f"{count:,} B"
    size, unit = count / 1024, "KB"
    for bigger in ("MB", "GB", "TB", "PB"):
        if round(size, 1) < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:,.1f} {unit}"


def _number_headers(report: RunReport) -> tuple[str, ...]:
    if report.dry_run:
        return ("uids", "to add", "to resend", "to remove", "unchanged", "left", "dropped", "req")
    return (
        "uids",
        "added",
        "resent",
        "removed",
        "unchanged",
        "left",
        "dropped",
        "req",
        "retry",
    )


def _numbers(report: RunReport, r: CohortResult) -> tuple[int, ...]:
    dropped = sum(r.dropped.values())
    if report.dry_run:
        return (
            r.uids_total,
            r.planned_add,
            r.planned_resend,
            r.planned_remove,
            r.unchanged,
            r.left_but_kept,
            dropped,
            r.planned_requests or 0,
        )
    return (
        r.uids_total,
        r.added,
        r.resent,
        r.removed,
        r.unchanged,
        r.left_but_kept,
        dropped,
        r.requests,
        r.retries,
    )


def _status(r: CohortResult) -> Text:
    style = STATUS_STYLES.get(r.status, "red")
    if r.status == SKIPPED and r.unselected:
        style = "yellow"
    text = Text(r.status, style=style)
    if r.renamed:
        text.append(" renamed")
    return text


def stacked_summary(report: RunReport, width: int = 80) -> list[Text]:
    """The summary as a few short lines per cohort, for a console too narrow for the table.

    Lines break between fields only (`added 1,234`), so a number, its label or a model name
    is never cut.
    """
    title = "MoEngage cohort sync (dry run)" if report.dry_run else "MoEngage cohort sync"
    lines = [Text(title, style="italic")]
    headers = _number_headers(report)
    for r in report.results:
        head = Text(f"{r.model} -> {r.cohort_id or '-'} ({r.mode}): ")
        head.append_text(_status(r))
        lines.append(head)
        values = _numbers(report, r)
        fields = [f"{name} {value:,}" for name, value in zip(headers, values, strict=True)]
        if r.bytes_billed is not None:
            fields.append(f"billed {byte_size(r.bytes_billed)}")
        fields.append(f"{r.seconds:.1f} s")
        lines.extend(field_lines(fields, width))
    return lines


def _dropped_line(r: CohortResult) -> str | None:
    parts = [f"{count:,} {reason}" for reason, count in r.dropped.items() if count]
    return f"{r.model}: rows not sent: {', '.join(parts)}" if parts else None


def print_summary(report: RunReport, console: Console, results_path: Path | None) -> None:
    """The table (or, on a narrow console, stacked lines), every error in full, and where
    the JSON report went. Outside text is never read as markup."""
    print_fitted(console, summary_table(report), partial(stacked_summary, report))
    for r in report.results:
        dropped = _dropped_line(r)
        if dropped:
            console.print(Text(dropped))
    for r in report.results:
        if r.error:
            # Left out of the dbt invocation is the user's choice: a note, not an error.
            label, style = ("note", "yellow") if r.unselected else ("error", "red")
            console.print(labelled(label, style, f"{r.model}: {r.error}"), soft_wrap=True)
    if results_path is not None:
        console.print(Text(f"results written to {results_path}"), soft_wrap=True)

"""Stage 7: what happened, for people (a summary table) and machines (a JSON file)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS_FILE = "moengage_sync_results.json"

SYNCED = "synced"
DRY_RUN = "dry_run"
FAILED = "failed"
INVALID = "invalid"
SKIPPED = "skipped"
OK_STATUSES = (SYNCED, DRY_RUN)


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
    unchanged: int = 0
    left_but_kept: int = 0
    planned_add: int = 0
    planned_remove: int = 0
    uids_unsynced: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {"null": 0, "empty": 0, "duplicate": 0})
    requests: int = 0
    planned_requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class RunReport:
    """Every cohort's result, plus when and how the run went."""

    run_id: str
    started_at: str
    dry_run: bool
    finished_at: str = ""
    results: list[CohortResult] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every cohort synced (or would have, in a dry run), else 1."""
        return 0 if all(r.status in OK_STATUSES for r in self.results) else 1

    def to_json(self) -> dict[str, Any]:
        """The report as written to target/moengage_sync_results.json."""
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "dry_run": self.dry_run,
            "exit_code": self.exit_code,
            "cohorts": [asdict(r) for r in self.results],
        }

    def write(self, target_dir: Path) -> Path:
        """Write the JSON report into dbt's target folder and return its path."""
        target_dir.mkdir(parents=True, exist_ok=True)
        path = target_dir / RESULTS_FILE
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path


def summary_table(report: RunReport) -> Table:
    """A table with one row per cohort."""
    title = "MoEngage cohort sync (dry run)" if report.dry_run else "MoEngage cohort sync"
    table = Table(title=title, title_justify="left")
    table.add_column("model", no_wrap=True)
    table.add_column("cohort_id", no_wrap=True)
    table.add_column("mode", no_wrap=True)
    table.add_column("status", no_wrap=True)
    added, removed = ("to add", "to remove") if report.dry_run else ("added", "removed")
    numbers = ("uids", added, removed, "unchanged", "left", "null", "empty", "dup", "req")
    for name in (*numbers, "retry", "sec"):
        table.add_column(name, justify="right", no_wrap=True)
    styles = {SYNCED: "green", DRY_RUN: "cyan"}
    for r in report.results:
        style = styles.get(r.status, "red")
        if report.dry_run:
            values = (r.planned_add, r.planned_remove, r.planned_requests)
        else:
            values = (r.added, r.removed, r.requests)
        table.add_row(
            r.model,
            r.cohort_id or "-",
            r.mode,
            f"[{style}]{r.status}[/{style}]",
            f"{r.uids_total:,}",
            f"{values[0]:,}",
            f"{values[1]:,}",
            f"{r.unchanged:,}",
            f"{r.left_but_kept:,}",
            f"{r.dropped['null']:,}",
            f"{r.dropped['empty']:,}",
            f"{r.dropped['duplicate']:,}",
            f"{values[2]:,}",
            f"{r.retries:,}",
            f"{r.seconds:.1f}",
        )
    return table


def print_summary(report: RunReport, console: Console, results_path: Path | None) -> None:
    """Print the table, every error in full, and where the JSON report went."""
    console.print(summary_table(report))
    for r in report.results:
        if r.error:
            console.print(f"[red]error[/red] {r.model}: {r.error}", soft_wrap=True)
    if results_path is not None:
        console.print(f"results written to {results_path}", soft_wrap=True)

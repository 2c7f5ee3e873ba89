"""What `dbt-moengage status` prints: each cohort's health, members and last runs as a
table, or a few lines per cohort on a console too narrow for it (as the sync summary and
`ls` do), then its errors, the invalid configs and the notes on the state. What the state
says, and what each health word means: state/health.py. Text read from the state is never
read as markup."""

from __future__ import annotations

from datetime import datetime
from functools import partial

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..state.health import (
    FAILING,
    NO_HISTORY,
    OK,
    RUNNING,
    STOPPED,
    SYNC_RUNNING,
    UNKNOWN,
    CohortStatus,
    StatusReport,
)
from ..state.left_behind import LEFT_BEHIND
from .results import byte_size
from .tables import field_lines, labelled, print_fitted


def ago(when: datetime | None, now: datetime) -> str:
    """How long before `now`, in the largest whole unit: 45s, 12m, 5h, 3d ago."""
    if when is None:
        return "never"
    seconds = max(int((now - when).total_seconds()), 0)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _clock(when: datetime | None) -> str:
    return "-" if when is None else when.strftime("%Y-%m-%d %H:%M")


_HEALTH_STYLES = {
    OK: "green",
    FAILING: "red",
    STOPPED: "red",
    RUNNING: "yellow",
    SYNC_RUNNING: "yellow",
    NO_HISTORY: "yellow",
    UNKNOWN: "yellow",
}
_HEADERS = ("members", "added", "removed", "resent")


def _status_text(c: CohortStatus) -> Text:
    run = c.last_run
    word = run.status if run is not None and c.health != STOPPED else c.health
    return Text(word, style=_HEALTH_STYLES.get(c.health, ""))


def _numbers(c: CohortStatus) -> tuple[str, ...]:
    """Members, then the last run's added, removed and re-sent ('-' with no run)."""
    run = c.last_run
    if c.held:
        return ("-", "-", "-", "-")
    if run is None:
        return (f"{c.members:,}", "-", "-", "-")
    return tuple(f"{value:,}" for value in (c.members, run.added, run.removed, run.resent))


def _last_billed(c: CohortStatus) -> int | None:
    """The bytes its last run billed; None when unknown (a warehouse that reports no cost)."""
    return None if c.last_run is None else c.last_run.bytes_billed


def _last_run(c: CohortStatus, now: datetime, utc: bool = False) -> str:
    """When the last run started, and how long ago; `-` when the state could not be read."""
    run = c.last_run
    if c.held:
        return "-"
    if run is None:
        return "never"
    return f"{_clock(run.started_at)}{' UTC' if utc else ''} ({ago(run.started_at, now)})"


def status_table(report: StatusReport) -> Table:
    """One row per cohort (needs a wide console)."""
    now = report.generated_at
    table = Table(title="MoEngage cohort status", title_justify="left")
    for name in ("model", "cohort_id", "cohort_name", "dest", "mode", "status"):
        table.add_column(name, no_wrap=True)
    # Only where the warehouse bills its jobs (BigQuery): else no column.
    billed = any(_last_billed(c) is not None for c in report.cohorts)
    for name in (*_HEADERS, *(("billed",) if billed else ())):
        table.add_column(name, justify="right", no_wrap=True)
    for name in ("last run (UTC)", "last success"):
        table.add_column(name, no_wrap=True)
    for c in report.cohorts:
        table.add_row(
            Text(c.spec.model),
            Text(c.spec.cohort_id),
            Text(c.spec.cohort_name),
            Text(c.spec.destination or "default"),
            c.spec.mode,
            _status_text(c),
            *_numbers(c),
            *((byte_size(_last_billed(c)),) if billed else ()),
            _last_run(c, now),
            "-" if c.held else ago(c.last_success, now),
        )
    for left in report.left_behind:
        kept = left.cohort
        table.add_row(
            Text(kept.model or "-"),
            Text(kept.cohort_id),
            Text(kept.cohort_name or "-"),
            Text(left.destination or "default"),
            kept.mode or "-",
            Text(LEFT_BEHIND, style="yellow"),
            f"{kept.members:,}",
            "-",
            "-",
            "-",
            *(("-",) if billed else ()),
            "-"
            if kept.synced_at is None
            else f"{_clock(kept.synced_at)} ({ago(kept.synced_at, now)})",
            ago(kept.synced_at, now),
        )
    return table


def stacked_status(report: StatusReport, width: int = 80) -> list[Text]:
    """A few short lines per cohort, for a console too narrow for the table; lines break
    between fields, so a name or a number is never cut."""
    now = report.generated_at
    lines = [Text("MoEngage cohort status", style="italic")]
    for c in report.cohorts:
        run, billed = c.last_run, _last_billed(c)
        head = Text(f"{c.spec.model} -> {c.spec.cohort_id} ({c.spec.mode}): ")
        head.append_text(_status_text(c))
        lines.append(head)
        fields = [
            f"name {c.spec.cohort_name!r}",
            f"dest {c.spec.destination or 'default'}",
            *(
                f"{name} {value}"
                for name, value in zip(_HEADERS, _numbers(c), strict=True)
                if run is not None or name == "members"
            ),
            *([] if billed is None else [f"billed {byte_size(billed)}"]),
            f"last run {_last_run(c, now, utc=True)}",
            f"last success {'-' if c.held else ago(c.last_success, now)}",
        ]
        lines.extend(field_lines(fields, width))
    for left in report.left_behind:
        kept = left.cohort
        head = Text(f"{kept.model or '-'} -> {kept.cohort_id} ({kept.mode or '-'}): ")
        head.append(LEFT_BEHIND, style="yellow")
        lines.append(head)
        fields = [
            f"name {kept.cohort_name!r}" if kept.cohort_name else "name -",
            f"dest {left.destination or 'default'}",
            f"members {kept.members:,}",
            "last synced never"
            if kept.synced_at is None
            else f"last synced {_clock(kept.synced_at)} UTC ({ago(kept.synced_at, now)})",
        ]
        lines.extend(field_lines(fields, width))
    return lines


def print_status(report: StatusReport, console: Console) -> None:
    """The table, or stacked lines on a narrow console; then errors, problems and notes,
    wrapped to the console. Text from the state is never read as markup."""
    print_fitted(console, status_table(report), partial(stacked_status, report))
    for c in report.cohorts:
        if c.error:
            console.print(labelled("error", "red", f"{c.spec.model}: {c.error}"))
        if c.problem:
            console.print(labelled("unknown", "yellow", f"{c.spec.model}: {c.problem}"))
    for left in report.left_behind:
        console.print(labelled("warning", "yellow", left.message()))
    for problem in report.problems:
        console.print(labelled("invalid", "red", problem))
    for note in report.notes:
        console.print(labelled("note", "yellow", note))

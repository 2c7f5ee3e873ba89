"""What a sync tells the person (or orchestrator) watching it, while it runs.

`Progress` is the interface the pipeline calls; it prints nothing. `LinePrinter` writes a
plain line per event, for logs and pipes.
"""

from __future__ import annotations

from rich.console import Console

from .report import DRY_RUN, SYNCED, CohortResult


class Progress:
    """Events of a sync run; every method may be overridden, none must be."""

    def message(self, text: str) -> None:
        """Something worth saying that is not a problem."""

    def problem(self, text: str) -> None:
        """A cohort that cannot sync, and why."""

    def cohort_started(self, result: CohortResult) -> None:
        """A cohort's plan is known (planned_add, planned_remove) and sending starts."""

    def sent(self, result: CohortResult, action: str, uids: int) -> None:
        """MoEngage accepted one request of `uids` uids for the cohort (`action`)."""

    def cohort_finished(self, result: CohortResult) -> None:
        """A cohort is done, in whatever status."""

    def close(self) -> None:
        """The run is over."""


class LinePrinter(Progress):
    """One plain line per cohort and problem."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def message(self, text: str) -> None:
        """Print it."""
        self.console.print(text, soft_wrap=True)

    def problem(self, text: str) -> None:
        """Print it in red."""
        self.console.print(f"[red]invalid cohort[/red] {text}", soft_wrap=True)

    def cohort_finished(self, result: CohortResult) -> None:
        """What was sent, or would be, or why not."""
        self.console.print(result_line(result), soft_wrap=True)


def result_line(result: CohortResult) -> str:
    """One line saying how a cohort ended."""
    arrow = f"{result.model} -> {result.cohort_id}"
    if result.status == SYNCED:
        removed = f", removed {result.removed:,}" if result.mode == "mirror" else ""
        return (
            f"[green]synced[/green] {arrow}: added {result.added:,}{removed}, "
            f"{result.unchanged:,} unchanged, in {_plural(result.requests, 'request')} "
            f"({result.seconds:.1f} s)"
        )
    if result.status == DRY_RUN:
        removals = (
            f", remove {result.planned_remove:,}"
            if result.mode == "mirror"
            else f" ({result.left_but_kept:,} left the model but stay in MoEngage: add mode)"
        )
        return (
            f"[cyan]dry run[/cyan] {arrow}: would add {result.planned_add:,}{removals} "
            f"in {_plural(result.planned_requests, 'request')}"
        )
    return f"[red]{result.status}[/red] {result.model}: {result.error}"


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"

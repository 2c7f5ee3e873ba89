"""`Progress`: the events of a sync run, as the pipeline reports them. It prints nothing;
the renderers (console.py, json_lines.py) override what they show."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from ..results import CohortResult, RunReport


class Progress:
    """Events of a sync run; every method may be overridden, none must be."""

    def message(self, text: str) -> None:
        """Something worth saying that is not a problem."""

    def problem(self, text: str) -> None:
        """A cohort that cannot sync, and why."""

    def warning(self, text: str) -> None:
        """Something went wrong that does not fail the run (a notification not sent)."""
        self.message(f"warning: {text}")

    def cohort_started(self, result: CohortResult) -> None:
        """A cohort's plan is known (planned_add, planned_remove) and sending starts."""

    def sent(self, result: CohortResult, action: str, uids: int) -> None:
        """MoEngage accepted one request of `uids` uids for the cohort (`action`)."""

    def cohort_finished(self, result: CohortResult) -> None:
        """A cohort is done, in whatever status."""

    def waiting(self, seconds: float, why: str) -> None:
        """A sender waits `seconds` before trying again (a long Retry-After, a backoff)."""
        self.message(f"waiting {seconds:.0f} s before the next attempt: {why}")

    def finished(
        self, report: RunReport | None, results_path: Path | None, error: str | None = None
    ) -> None:
        """The run is over: its report (written to `results_path`), or the configuration
        error that kept it from starting (exit 2). The last event."""

    def close(self) -> None:
        """The run is over; safe to call more than once, and after an error."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

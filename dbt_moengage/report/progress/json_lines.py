"""Progress for orchestrators: `JsonProgress` writes one JSON object per line and event
(`--log-format json`); a cohort's fields come from its CohortResult, and the stream always
ends with a cohort_finished for every cohort, then a summary."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ..results import CohortResult, RunReport
from .base import Progress
from .meter import DEFAULT_INTERVAL, Clock, Meter

# The exit code of a run that could not start (see docs/operations.md, "Exit codes").
EXIT_CONFIG = 2


def _plan(result: CohortResult) -> dict[str, Any]:
    """The cohort and its plan, as each of its events starts."""
    return {
        "model": result.model,
        "cohort_id": result.cohort_id,
        "mode": result.mode,
        "uids_total": result.uids_total,
        "planned_add": result.planned_add,
        "planned_resend": result.planned_resend,
        "planned_remove": result.planned_remove,
    }


class JsonProgress(Progress):
    """One JSON object per line and event, for orchestrators; fields come from CohortResult."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        rate_limit_per_min: int | None = None,
        interval: float = DEFAULT_INTERVAL,
        clock: Clock = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.rate_limit_per_min = rate_limit_per_min
        self.meter = Meter(clock, interval)
        self._lock = threading.Lock()
        self._finished: set[int] = set()

    def message(self, text: str) -> None:
        """{"event": "message", "text": ...}"""
        self._emit("message", {"text": text})

    def problem(self, text: str) -> None:
        """{"event": "problem", "error": ...}"""
        self._emit("problem", {"error": text})

    def warning(self, text: str) -> None:
        """{"event": "warning", "text": ...}"""
        self._emit("warning", {"text": text})

    def cohort_started(self, result: CohortResult) -> None:
        """The cohort and its plan."""
        self.meter.start(result)
        self._emit(
            "cohort_started", {**_plan(result), "rate_limit_per_min": self.rate_limit_per_min}
        )

    def sent(self, result: CohortResult, action: str, uids: int) -> None:
        """A progress event every `interval` seconds per cohort, and one for its last request."""
        sending = self.meter.sent(result, action, uids)
        if not (self.meter.due(sending) or sending.done):
            return
        self._emit(
            "progress",
            {
                **_plan(result),
                "uids_sent": sending.uids_sent,
                "added": sending.added,
                "removed": sending.removed,
                "requests": sending.requests,
                "rate_per_min": self.meter.rate(),
                "rate_limit_per_min": self.rate_limit_per_min,
            },
        )

    def cohort_finished(self, result: CohortResult) -> None:
        """Every field of the cohort's result, as in moengage_sync_results.json."""
        self._finished.add(id(result))
        self._emit("cohort_finished", asdict(result))

    def waiting(self, seconds: float, why: str) -> None:
        """{"event": "waiting", "seconds": ..., "reason": ...}"""
        self._emit("waiting", {"seconds": round(seconds, 1), "reason": why})

    def finished(
        self, report: RunReport | None, results_path: Path | None, error: str | None = None
    ) -> None:
        """A cohort_finished for every cohort not yet reported (refused ones), then
        {"event": "summary", ...}: the stream always ends with both."""
        results = report.results if report else []
        for result in results:
            if id(result) not in self._finished:
                self.cohort_finished(result)
        statuses = Counter(result.status for result in results)
        self._emit(
            "summary",
            {
                "run_id": report.run_id if report else None,
                "exit_code": report.exit_code if report else EXIT_CONFIG,
                "interrupted_by": report.interrupted_by if report else None,
                "dry_run": report.dry_run if report else None,
                "cohorts": len(results),
                "statuses": dict(sorted(statuses.items())),
                "results_path": str(results_path) if results_path else None,
                "error": error,
            },
        )

    def _emit(self, event: str, fields: dict[str, Any]) -> None:
        ts = datetime.now(UTC).isoformat(timespec="milliseconds")
        line = json.dumps({"event": event, "ts": ts, **fields}, ensure_ascii=False)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

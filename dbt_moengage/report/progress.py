"""What a sync tells the person (or orchestrator) watching it, while it runs.

`Progress` is the interface the pipeline calls; it prints nothing. Three renderers:
`RichProgress` draws a bar per cohort on a terminal, `LinePrinter` writes plain lines for
logs and pipes, `JsonProgress` writes one JSON object per event for orchestrators.
`make_progress` picks one for `--log-format`.

Model names, cohort ids, uids, paths and server messages are outside text: it is printed
as rich `Text`, never parsed as markup or emoji codes, so `[uid]` or `[/x]` shows as is.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, ProgressColumn, Task, TaskID, TextColumn
from rich.progress import Progress as RichBars
from rich.text import Text

from .results import DRY_RUN, SYNCED, CohortResult, RunReport, byte_size

LOG_FORMATS = ("auto", "text", "json")
# The exit code of a run that could not start (see docs/operations.md, "Exit codes").
EXIT_CONFIG = 2
DEFAULT_INTERVAL = 10.0
RATE_WINDOW_SECONDS = 60.0
Clock = Callable[[], float]
_STATUS_STYLES = {SYNCED: "green", DRY_RUN: "cyan"}


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


@dataclass
class _Sending:
    """What one cohort has sent so far in this run (the result's counts fill in at the end)."""

    total: int
    uids_sent: int = 0
    added: int = 0
    removed: int = 0
    requests: int = 0
    reported_at: float = 0.0

    @property
    def done(self) -> bool:
        return self.uids_sent >= self.total


class _Meter:
    """Each cohort's sending, and the workspace's request rate over the last minute."""

    def __init__(self, clock: Clock, interval: float = DEFAULT_INTERVAL) -> None:
        self.clock = clock
        self.interval = interval
        self._cohorts: dict[int, _Sending] = {}
        self._accepted: deque[float] = deque()
        # `sent` comes from the client's recording thread, the rest from the main one.
        self._lock = threading.Lock()

    def start(self, result: CohortResult) -> _Sending:
        with self._lock:
            sending = _Sending(total=_planned(result), reported_at=self.clock())
            self._cohorts[id(result)] = sending
            return sending

    def sent(self, result: CohortResult, action: str, uids: int) -> _Sending:
        with self._lock:
            now = self.clock()
            sending = self._cohorts.get(id(result))
            if sending is None:
                sending = _Sending(total=_planned(result), reported_at=now)
                self._cohorts[id(result)] = sending
            sending.uids_sent += uids
            sending.requests += 1
            if action == "remove_members":
                sending.removed += uids
            else:
                sending.added += uids
            self._accepted.append(now)
            return sending

    def get(self, result: CohortResult) -> _Sending | None:
        return self._cohorts.get(id(result))

    def due(self, sending: _Sending) -> bool:
        """Whether `interval` seconds passed since the cohort was last reported (and mark it)."""
        with self._lock:
            now = self.clock()
            if now - sending.reported_at < self.interval:
                return False
            sending.reported_at = now
            return True

    def rate(self) -> int:
        """Requests MoEngage accepted in the last 60 seconds, across all cohorts."""
        with self._lock:
            horizon = self.clock() - RATE_WINDOW_SECONDS
            while self._accepted and self._accepted[0] <= horizon:
                self._accepted.popleft()
            return len(self._accepted)


def _rate_text(rate: int, limit: int | None) -> str:
    return f"{rate:,}/{limit:,} req/min" if limit else f"{rate:,} req/min"


def _arrow(result: CohortResult) -> str:
    return f"{result.model} -> {result.cohort_id or '-'}"


def _plain(text: str) -> Text:
    """Outside text as it is: no markup, no emoji codes."""
    return Text(text)


def _problem_text(text: str) -> Text:
    return Text.assemble(("invalid cohort", "red"), " ", text)


def _warning_text(text: str) -> Text:
    return Text.assemble(("warning", "yellow"), " ", text)


class _Printed(Progress):
    """Messages, problems and warnings printed on a console (a live display keeps them
    above its bars)."""

    console: Console

    def message(self, text: str) -> None:
        """Print it, as plain text."""
        self.console.print(_plain(text), soft_wrap=True)

    def problem(self, text: str) -> None:
        """Print it, after a red 'invalid cohort'."""
        self.console.print(_problem_text(text), soft_wrap=True)

    def warning(self, text: str) -> None:
        """Print it, after a yellow 'warning'."""
        self.console.print(_warning_text(text), soft_wrap=True)


class LinePrinter(_Printed):
    """One plain line per cohort and problem, and a progress line every `interval` seconds."""

    def __init__(
        self,
        console: Console,
        rate_limit_per_min: int | None = None,
        interval: float = DEFAULT_INTERVAL,
        clock: Clock = time.monotonic,
    ) -> None:
        self.console = console
        self.rate_limit_per_min = rate_limit_per_min
        self.meter = _Meter(clock, interval)

    def cohort_started(self, result: CohortResult) -> None:
        """Start the cohort's progress clock."""
        self.meter.start(result)

    def sent(self, result: CohortResult, action: str, uids: int) -> None:
        """A progress line, if the last one is `interval` seconds old."""
        sending = self.meter.sent(result, action, uids)
        if sending.done or not self.meter.due(sending):
            return  # the cohort's result line follows at once
        line = (
            f"{_arrow(result)}: {sending.uids_sent:,}/{sending.total:,} uids, "
            f"{_plural(sending.requests, 'request')}, "
            f"{_rate_text(self.meter.rate(), self.rate_limit_per_min)}"
        )
        self.console.print(_plain(line), soft_wrap=True)

    def cohort_finished(self, result: CohortResult) -> None:
        """What was sent, or would be, or why not."""
        self.console.print(result_text(result), soft_wrap=True)


class _CountsColumn(ProgressColumn):
    """uids sent of total, and requests done."""

    def render(self, task: Task) -> Text:
        sent, total = task.fields["uids_sent"], task.fields["uids_total"]
        return Text(f"{sent:,}/{total:,} uids  {_plural(task.fields['requests'], 'request')}")


class _RateColumn(ProgressColumn):
    """The workspace's request rate while the cohort sends, its end status after."""

    def __init__(self, meter: _Meter, limit: int | None) -> None:
        super().__init__()
        self.meter = meter
        self.limit = limit

    def render(self, task: Task) -> Text:
        status = task.fields["status"]
        if status is None:
            return Text(_rate_text(self.meter.rate(), self.limit))
        return Text(status, style=_STATUS_STYLES.get(status, "red"))


class RichProgress(_Printed):
    """A live bar per cohort on a terminal; problems and messages print above the bars."""

    def __init__(
        self,
        console: Console,
        rate_limit_per_min: int | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.console = console
        self.meter = _Meter(clock)
        self.bars = RichBars(
            # The description is the cohort's arrow, outside text: not markup.
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            _CountsColumn(),
            _RateColumn(self.meter, rate_limit_per_min),
            console=console,
            get_time=clock,
            refresh_per_second=4,
        )
        self._tasks: dict[int, TaskID] = {}
        self._started = False
        self._lock = threading.Lock()

    def cohort_started(self, result: CohortResult) -> None:
        """Add the cohort's bar (and show the bars, the first time)."""
        sending = self.meter.start(result)
        with self._lock:  # destinations sync side by side, each in its own thread
            if not self._started:
                self.bars.start()
                self._started = True
        self._tasks[id(result)] = self.bars.add_task(
            _arrow(result),
            total=max(sending.total, 1),
            uids_sent=0,
            uids_total=sending.total,
            requests=0,
            status=None,
        )
        self.bars.refresh()

    def sent(self, result: CohortResult, action: str, uids: int) -> None:
        """Move the cohort's bar."""
        sending = self.meter.sent(result, action, uids)
        task = self._tasks.get(id(result))
        if task is not None:
            self.bars.update(
                task,
                completed=sending.uids_sent,
                uids_sent=sending.uids_sent,
                requests=sending.requests,
            )

    def cohort_finished(self, result: CohortResult) -> None:
        """Leave the bar with its end status; say why a cohort failed (or had no bar)."""
        task = self._tasks.get(id(result))
        if task is not None:
            self.bars.update(task, status=result.status)
            if result.status == SYNCED:
                # A cohort with nothing to send has a one-step bar, full once it is synced.
                self.bars.update(task, completed=max(_planned(result), 1))
            self.bars.stop_task(task)
            self.bars.refresh()
        if task is None or result.status != SYNCED:
            self.console.print(result_text(result), soft_wrap=True)

    def close(self) -> None:
        """Stop the live display, leaving the last frame on screen."""
        with self._lock:
            if self._started:
                self._started = False
                self.bars.stop()


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
        self.meter = _Meter(clock, interval)
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
            "cohort_started",
            {
                "model": result.model,
                "cohort_id": result.cohort_id,
                "mode": result.mode,
                "uids_total": result.uids_total,
                "planned_add": result.planned_add,
                "planned_resend": result.planned_resend,
                "planned_remove": result.planned_remove,
                "rate_limit_per_min": self.rate_limit_per_min,
            },
        )

    def sent(self, result: CohortResult, action: str, uids: int) -> None:
        """A progress event every `interval` seconds per cohort, and one for its last request."""
        sending = self.meter.sent(result, action, uids)
        if not (self.meter.due(sending) or sending.done):
            return
        self._emit(
            "progress",
            {
                "model": result.model,
                "cohort_id": result.cohort_id,
                "mode": result.mode,
                "uids_total": result.uids_total,
                "planned_add": result.planned_add,
                "planned_resend": result.planned_resend,
                "planned_remove": result.planned_remove,
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


def make_progress(log_format: str, console: Console, rate_limit_per_min: int) -> Progress:
    """The renderer for `--log-format`: auto (bars on a terminal, else lines), text or json."""
    if log_format == "auto":
        if console.is_terminal:
            return RichProgress(console, rate_limit_per_min)
        return LinePrinter(console, rate_limit_per_min)
    if log_format == "text":
        return LinePrinter(console, rate_limit_per_min)
    if log_format == "json":
        return JsonProgress(console.file, rate_limit_per_min)
    raise ValueError(
        f"log format {log_format!r} is not one of {', '.join(LOG_FORMATS)}: "
        "use auto (bars on a terminal, lines otherwise), text or json"
    )


def _planned(result: CohortResult) -> int:
    """Uids a cohort's run plans to send: adds, re-sends and removals."""
    return result.planned_add + result.planned_resend + result.planned_remove


def result_text(result: CohortResult) -> Text:
    """One line saying how a cohort ended; only its status word is styled."""
    arrow = f"{result.model} -> {result.cohort_id}"
    renamed = ", renamed" if result.renamed else ""
    # Only where the warehouse bills its jobs (BigQuery).
    billed = "" if result.bytes_billed is None else f", billed {byte_size(result.bytes_billed)}"
    if result.status == SYNCED:
        removed = f", removed {result.removed:,}" if result.mode == "mirror" else ""
        return Text.assemble(
            ("synced", "green"),
            f" {arrow}: added {result.added:,}{removed}, re-sent {result.resent:,}, "
            f"{result.unchanged:,} unchanged{renamed}, in "
            f"{_plural(result.requests, 'request')} ({result.seconds:.1f} s){billed}",
        )
    if result.status == DRY_RUN:
        removals = (
            f", remove {result.planned_remove:,}"
            if result.mode == "mirror"
            else f" ({result.left_but_kept:,} left the model but stay in MoEngage: add mode)"
        )
        rename = ", rename" if result.renamed else ""
        return Text.assemble(
            ("dry run", "cyan"),
            f" {arrow}: would add {result.planned_add:,}, re-send "
            f"{result.planned_resend:,}{removals}{rename} in "
            f"{_plural(result.planned_requests or 0, 'request')}{billed}",
        )
    return Text.assemble((result.status, "red"), f" {result.model}: {result.error}")


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"

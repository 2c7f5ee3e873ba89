"""Progress for people: `RichProgress` draws a live bar per cohort on a terminal,
`LinePrinter` writes plain lines for logs and pipes. Both print messages, problems and
warnings, and a line for each cohort that did not sync (RichProgress) or for every cohort
(LinePrinter): `result_text`.

Model names, cohort ids, uids, paths and server messages are outside text: it is printed
as rich `Text`, never parsed as markup or emoji codes, so `[uid]` or `[/x]` shows as is.
"""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.progress import BarColumn, ProgressColumn, Task, TaskID, TextColumn
from rich.progress import Progress as RichBars
from rich.text import Text

from ..results import DRY_RUN, STATUS_STYLES, SYNCED, CohortResult, byte_size
from .base import Progress
from .meter import DEFAULT_INTERVAL, Clock, Meter, planned


def _rate_text(rate: int, limit: int | None) -> str:
    return f"{rate:,}/{limit:,} req/min" if limit else f"{rate:,} req/min"


def _arrow(result: CohortResult) -> str:
    return f"{result.model} -> {result.cohort_id or '-'}"


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


class _Printed(Progress):
    """Messages, problems and warnings printed on a console (a live display keeps them
    above its bars)."""

    console: Console

    def message(self, text: str) -> None:
        """Print it, as plain text (no markup, no emoji codes)."""
        self.console.print(Text(text), soft_wrap=True)

    def problem(self, text: str) -> None:
        """Print it, after a red 'invalid cohort'."""
        self.console.print(Text.assemble(("invalid cohort", "red"), " ", text), soft_wrap=True)

    def warning(self, text: str) -> None:
        """Print it, after a yellow 'warning'."""
        self.console.print(Text.assemble(("warning", "yellow"), " ", text), soft_wrap=True)


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
        self.meter = Meter(clock, interval)

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
        self.console.print(Text(line), soft_wrap=True)

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

    def __init__(self, meter: Meter, limit: int | None) -> None:
        super().__init__()
        self.meter = meter
        self.limit = limit

    def render(self, task: Task) -> Text:
        status = task.fields["status"]
        if status is None:
            return Text(_rate_text(self.meter.rate(), self.limit))
        return Text(status, style=STATUS_STYLES.get(status, "red"))


class RichProgress(_Printed):
    """A live bar per cohort on a terminal; problems and messages print above the bars."""

    def __init__(
        self,
        console: Console,
        rate_limit_per_min: int | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.console = console
        self.meter = Meter(clock)
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
                self.bars.update(task, completed=max(planned(result), 1))
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

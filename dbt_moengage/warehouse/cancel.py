"""Stopping a run mid-read: a stop cancels the engine's reads of models that are running
(READS), the driver's way (`Engine.cancel`), and refuses those that would start later.

A query over a large model takes minutes, and its driver call ignores the stop event: a
stop would wait for it, holding the warehouse (a DuckDB file stays locked) and the
orchestrator that asked the run to stop. `CancelsReads` is the part of Engine that does it.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from functools import cached_property
from typing import Any, ClassVar

from ..errors import Interrupted
from ..interrupt import when_stopped

# The statements that read a cohort's model, or join it with the state: minutes on a large
# model, and nothing a stopped run needs, so a stop cancels them (`Engine.cancelled_on`).
# Writes are never cancelled (checkpoints, run rows, locks, dropping the snapshot): what
# MoEngage accepted is still recorded, and each run row says how its run ended.
READS = frozenset(
    {
        "reading_the_model",
        "stats",
        "snapshot_stats",
        "count_model",
        "cohort_uids",
        "long_uids",
        "plan",
        "model_uids",
        "add_delta",
        "resend_delta",
        "rename_members",
        "remove_delta",
    }
)
# Once stopped, a read still running is cancelled again this often: a query the driver had
# not yet sent when the first cancel came (a BigQuery job being created) is caught by the next.
CANCEL_AGAIN_SECONDS = 0.5
CANCELLED = "the run was interrupted: the warehouse query reading the model was cancelled"


class CancelsReads:
    """Engine's reads of models, cancelled by a stop (see the module's docstring)."""

    conn: Any
    ERRORS: ClassVar[tuple[type[BaseException], ...]]

    def cancel(self, running: Any) -> None:
        """Cancel the statement running on `running` (the connection a read runs on: the
        main one, or a stream's own), the driver's way; called from another thread when the
        run is stopped. The statement then raises the driver's error. Base: nothing, the
        statement runs to its end."""

    @cached_property
    def _reads(self) -> _Reads:
        return _Reads()

    @contextlib.contextmanager
    def cancelled_on(self, stop: threading.Event) -> Iterator[None]:
        """While the block runs, setting `stop` cancels the reads of models running then
        (READS), and those that would start later raise Interrupted instead."""
        reads = self._reads
        reads.stop = stop
        try:
            with when_stopped(stop, self._cancel_reads, again=CANCEL_AGAIN_SECONDS):
                yield
        finally:
            reads.stop = threading.Event()

    def _cancel_reads(self) -> None:
        reads = self._reads
        with reads.lock:
            for running in reads.running.values():
                with contextlib.suppress(Exception):
                    self.cancel(running)

    @contextlib.contextmanager
    def cancellable(self, name: str, running: Any = None) -> Iterator[None]:
        """Run the block's driver call of statement `name` so that a stop cancels it when it
        is a read of a model (READS); `running` is the connection it runs on (default the
        main one). Its failure once stopped is Interrupted, not the driver's error."""
        if name not in READS:
            yield
            return
        reads = self._reads
        with reads.lock:
            if reads.stop.is_set():
                raise Interrupted(CANCELLED)
            token = next(reads.tokens)
            reads.running[token] = self.conn if running is None else running
        try:
            yield
        except self.ERRORS:
            if reads.stop.is_set():
                raise Interrupted(CANCELLED) from None
            raise
        finally:
            with reads.lock:
                del reads.running[token]


class _Reads:
    """The reads of models running on an engine (token -> the connection each runs on), and
    the stop that cancels them; `lock` makes starting, ending and cancelling one at a time,
    so a cancel never reaches a statement that is not a read."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.running: dict[int, Any] = {}
        self.tokens = itertools.count()

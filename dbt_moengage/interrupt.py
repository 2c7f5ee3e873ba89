"""Ctrl-C and SIGTERM (what Airflow and Kubernetes send): stop cleanly, then at once.

The first signal sets `Stop.event`: the sync starts no new request or cohort, lets the
requests in flight finish within their deadline, records what MoEngage accepted, marks
the rest `interrupted`, writes its report and exits 128 + the signal (130, 143). A second
signal exits at once; the state stays consistent, as after a crash (each checkpoint is one
statement, so the next run resends at most the requests that were in flight).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Stop:
    """Whether the run was asked to stop, and by which signal."""

    event: threading.Event = field(default_factory=threading.Event)
    signum: int | None = None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Stop]:
    """Handle SIGINT and SIGTERM as above while the block runs (main thread only)."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.event.is_set():
            os.write(2, b"\ninterrupted again: exiting now\n")
            os._exit(128 + signum)
        stop.signum = signum
        stop.event.set()
        # os.write, not print: a handler may run while the main thread is printing.
        os.write(
            2,
            f"\n{signal.Signals(signum).name}: finishing the requests in flight, then "
            "reporting (send it again to exit at once)\n".encode(),
        )

    previous = {sig: signal.signal(sig, handle) for sig in SIGNALS}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

"""Ctrl-C and SIGTERM (what Airflow and Kubernetes send): stop cleanly, then at once.

The first signal sets `Stop.event`: the sync starts no new request or cohort, lets the
requests in flight finish within their deadline, records what MoEngage accepted, marks
the rest `interrupted`, writes its report and exits 128 + the signal (130, 143). A second
signal exits at once; the state stays consistent, as after a crash (each checkpoint is one
statement, so the next run resends at most the requests that were in flight).

During the dbt phase of `build` (`stop_dbt_on_signals`) the first signal stops dbt the way
dbt stops on Ctrl-C (it cancels its queries and writes run_results.json), nothing is synced,
and the exit code is 128 + the signal likewise.
"""

from __future__ import annotations

import contextlib
import multiprocessing.util
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import NoReturn

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Stop:
    """Whether the run was asked to stop, and by which signal."""

    event: threading.Event = field(default_factory=threading.Event)
    signum: int | None = None


def stop_on_signals() -> contextlib.AbstractContextManager[Stop]:
    """Handle SIGINT and SIGTERM as above while the block runs (main thread only)."""
    return _on_signals("finishing the requests in flight, then reporting", interrupt=False)


def stop_dbt_on_signals() -> contextlib.AbstractContextManager[Stop]:
    """While dbt runs in this process: the first SIGINT or SIGTERM raises KeyboardInterrupt
    in the main thread, which dbt answers by cancelling its queries; a second exits at once.
    `Stop.event` is set from the first, so dbt's output can be hushed from then on."""
    return _on_signals(
        "dbt build stopped (dbt cancels its queries); nothing is synced", interrupt=True
    )


@contextlib.contextmanager
def _on_signals(says: str, interrupt: bool) -> Iterator[Stop]:
    """The first signal sets the stop (and says what happens now); a second exits at once."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.event.is_set():
            exit_now(signum)
        stop.signum = signum
        stop.event.set()
        # os.write, not print: a handler may run while the main thread is printing.
        name = signal.Signals(signum).name
        os.write(2, f"\n{name}: {says} (send it again to exit at once)\n".encode())
        if interrupt:
            raise KeyboardInterrupt

    with _handling(handle):
        yield stop


@contextlib.contextmanager
def _handling(handle: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    previous = {sig: signal.signal(sig, handle) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exit_now(signum: int) -> NoReturn:
    """End the process at once with 128 + the signal, as a second signal asks."""
    os.write(2, b"\ninterrupted again: exiting now\n")
    _unlink_semaphores()
    os._exit(128 + signum)


def _unlink_semaphores() -> None:
    """Unlink the named semaphores this process made, as the interpreter's exit would.

    dbt makes them (its adapters' connection locks and its manifest's lock come from a
    spawn multiprocessing context) whenever it runs in this process: `build`, `--select`.
    os._exit skips the exit handlers that unlink them, and multiprocessing's resource
    tracker would then warn of leaked semaphores; only those finalizers run here, not
    the others (a thread pool's would wait for its threads).
    """
    try:
        from multiprocessing.synchronize import SemLock
    except ImportError:  # a platform without named semaphores has none to unlink
        return
    cleanup = getattr(SemLock, "_cleanup", None)
    registry = getattr(multiprocessing.util, "_finalizer_registry", {})
    if cleanup is None:
        return
    for finalizer in list(registry.values()):
        if getattr(finalizer, "_callback", None) is cleanup:
            with contextlib.suppress(Exception):
                finalizer()

"""Ctrl-C and SIGTERM (what Airflow and Kubernetes send): stop cleanly, then at once.

The first signal sets `Stop.event`: the sync starts no new request or cohort, lets the
requests in flight finish within their deadline, records what MoEngage accepted, marks
the rest `interrupted`, writes its report and exits 128 + the signal (130, 143). What would
not end by itself is ended (`when_stopped`): a warehouse query reading a model is cancelled,
a notification post cut off. A second signal exits at once; the state stays consistent, as
after a crash (each checkpoint is one statement, so the next run resends at most the
requests that were in flight). Signals within SAME_STOP_SECONDS of the first are that first
one: GNU `timeout` sends SIGTERM to the process and then to its process group, so the
process gets two at once, and a clean stop must not turn into an exit at once.

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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import NoReturn

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A signal this soon after the first is the same stop sent twice (`timeout`: to the process,
# then to its group), not a second one asking to exit at once.
SAME_STOP_SECONDS = 1.0
# How often a `when_stopped` watcher looks at the stop event.
WATCH_SECONDS = 0.1


@dataclass
class Stop:
    """Whether the run was asked to stop, and by which signal."""

    event: threading.Event = field(default_factory=threading.Event)
    signum: int | None = None
    # When the first signal came (time.monotonic()).
    at: float | None = None


def stop_on_signals(
    says: str = "finishing the requests in flight, then reporting",
) -> contextlib.AbstractContextManager[Stop]:
    """Handle SIGINT and SIGTERM as above while the block runs (main thread only): the
    first says `says` and sets `Stop.event`, for the block to look at; a second exits at
    once."""
    return _on_signals(says, interrupt=False)


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
        now = time.monotonic()
        if stop.at is not None:
            if now - stop.at < SAME_STOP_SECONDS:
                return  # the first signal again (`timeout` sends two): one stop
            exit_now(signum)
        stop.at, stop.signum = now, signum
        stop.event.set()
        # os.write, not print: a handler may run while the main thread is printing.
        name = signal.Signals(signum).name
        os.write(2, f"\n{name}: {says} (send it again to exit at once)\n".encode())
        if interrupt:
            raise KeyboardInterrupt

    with _handling(handle):
        yield stop


@contextlib.contextmanager
def when_stopped(
    stop: threading.Event, act: Callable[[], None], again: float | None = None
) -> Iterator[None]:
    """Call `act` once `stop` is set while the block runs (and every `again` seconds after,
    until the block ends), from a thread of its own.

    A blocked socket read or a warehouse query does not look at the stop event, and the
    signal handler cannot end it: it runs in the main thread, which may be the one blocked.
    `act` ends it from outside (shuts the socket, cancels the query). A failing `act` is
    ignored: what it would end then ends by itself, as before.
    """
    done = threading.Event()

    def watch() -> None:
        while not stop.wait(WATCH_SECONDS):
            if done.is_set():
                return
        while not done.is_set():
            with contextlib.suppress(Exception):
                act()
            if again is None:
                return
            done.wait(again)

    threading.Thread(target=watch, name="moengage-stop-watch", daemon=True).start()
    try:
        yield
    finally:
        done.set()


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

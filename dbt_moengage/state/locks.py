"""The cohort lock: two runners never send for the same cohort at once.

`row_lock` keeps one row per (endpoint, workspace, cohort) in moengage_sync_locks, taken in
one atomic statement (MERGE; Postgres: insert ... on conflict) on the warehouse's clock: a
row whose heartbeat is older than `lock_stale_seconds` belongs to a runner that died and is
taken over. StateStore.lock takes it. Where runners on other machines share the table
(Snowflake, Postgres, BigQuery), a thread beats the lock on a connection of its own (the
engine's `lock_beater`), so a long query on the main connection cannot starve it, and the
run checks it still holds the lock before each checkpoint: a lost lock stops the cohort
cleanly. DuckDB needs no heartbeat: one process at a time writes its file.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..cohorts import CohortSpec
from ..errors import Interrupted, LockLost, LockTimeout, WarehouseError
from .schema import StateKey

if TYPE_CHECKING:
    from ..warehouse.engine import Engine

# A runner waiting for a lock tries again after POLL_SECONDS, then waits twice as long
# each time, up to MAX_POLL_SECONDS: a 300 s wait costs about 40 statements, not 600.
POLL_SECONDS = 0.5
MAX_POLL_SECONDS = 10.0


@dataclass
class HeldLock:
    """A cohort lock this run holds; `check()` raises LockLost once it is no longer held."""

    check: Callable[[], None] = field(default=lambda: None)


@contextlib.contextmanager
def row_lock(
    engine: Engine,
    cohort: CohortSpec,
    key: StateKey,
    run_id: str,
    wait_seconds: float,
    stop: threading.Event | None = None,
    beat_with: Engine | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[HeldLock]:
    """Hold the cohort's lock row for the block, beating it from `beat_with` if given."""
    where = (*key.params, cohort.cohort_id)
    _acquire(engine, cohort, where, run_id, wait_seconds, stop, clock, sleep)
    done = threading.Event()
    beat = None
    if beat_with is not None:
        beat = threading.Thread(
            target=_beat,
            args=(beat_with, where, run_id, engine.lock_stale_seconds / 4, done),
            name="moengage-lock-heartbeat",
            daemon=True,
        )
        beat.start()

    def check() -> None:
        owned = engine.one("lock_owned", (*where, run_id))
        if not owned or not int(owned[0] or 0):
            raise LockLost(
                f"model '{cohort.model}': this run ({run_id}) no longer holds the lock of "
                f"cohort '{cohort.cohort_id}': its heartbeat stopped for "
                f"{engine.lock_stale_seconds:g} s (MOENGAGE_LOCK_STALE_SECONDS) and another "
                "run took it over. Stopped before recording; re-run to send the rest"
            )

    try:
        yield HeldLock(check=check if beat_with is not None else lambda: None)
    finally:
        done.set()
        if beat is not None:
            beat.join()
        engine.run("release_lock", (*where, run_id))


def _acquire(
    engine: Engine,
    cohort: CohortSpec,
    where: tuple[str, str, str],
    run_id: str,
    wait_seconds: float,
    stop: threading.Event | None,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    deadline = clock() + wait_seconds
    pause = POLL_SECONDS
    try:
        while True:
            # One atomic statement: take a free or stale row, or leave a live holder's alone.
            engine.run("take_lock", (*where, run_id, engine.lock_stale_seconds))
            holder = engine.one("lock_holder", where)
            if holder is not None and holder[0] == run_id:
                return
            left = deadline - clock()
            if left <= 0:
                since = holder[1] if holder is not None else "?"
                raise LockTimeout(
                    f"model '{cohort.model}': cohort '{cohort.cohort_id}' is being synced by "
                    f"another run ({holder[0] if holder else '?'}, since {since} UTC); waited "
                    f"{wait_seconds:g} s. Let it finish, or raise MOENGAGE_LOCK_WAIT_SECONDS"
                )
            wait = min(pause, left)
            pause = min(pause * 2, MAX_POLL_SECONDS)
            if stop is not None and stop.wait(wait):
                raise Interrupted(f"model '{cohort.model}': interrupted while waiting for its lock")
            if stop is None:
                sleep(wait)
    except BaseException:
        # A row of ours that lost a race (where inserts can both land) goes with us.
        with contextlib.suppress(WarehouseError):
            engine.run("release_lock", (*where, run_id))
        raise


def _beat(
    engine: Engine, where: tuple[str, str, str], run_id: str, every: float, done: threading.Event
) -> None:
    while not done.wait(every):
        try:
            engine.run("heartbeat_lock", (*where, run_id))
        except WarehouseError:
            # A missed beat only risks the lock looking stale; the next one may land.
            continue

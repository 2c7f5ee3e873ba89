"""Runners of one workspace share its quota: a row each in moengage_quota_peers.

MoEngage counts a workspace's requests together, whoever sends them, so two runners that
each pace to the whole quota draw 429s. Orchestrators run one task per model, so runners
of one workspace often send at once. Each runner keeps a row while it sends to a
workspace, beaten every `beat` seconds on the warehouse's clock: its claim (`share`, the
most request starts it may let into any window) and the starts its window holds.

Why the runners' starts in any window stay under the quota:
- a runner's pacer never lets in more than its claim: it lowers its pacer before its
  claim, and writes a higher claim before it reads the others again and raises its pacer;
  of two runners raising at once, the one that reads last sees the other's claim;
- each runner reserves for every other the most that one may hold: its window and its
  claim; for one that ended, its window until its starts age out;
- a runner that cannot beat for `stale` seconds lets no request start until it can, so
  the others may stop counting on its row.
Each runner claims at most its fair share, the quota over the runners sending: a newcomer
gets its share as the others lower theirs and their windows drain. Within its fair share a
runner claims what it uses: a tenth of the quota at first, twice its window after, and
twice its claim as soon as a sender waits at it (the beat comes at once then, not at the
next tick). So a run that sends a few requests holds few of the quota, and one that was
killed holds, until its starts age out, about what it had sent, not the whole quota. A
runner joins before its first request, so a run with nothing to send writes no row.

DuckDB needs none of this: a sync holds the database file, so runners of one file never
overlap (Engine.QUOTA_BEAT_SECONDS is None there).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ProfileError, WarehouseError
from ..pacer import Pacer
from .schema import StateKey

if TYPE_CHECKING:
    from ..warehouse.engine import Engine

log = logging.getLogger(__name__)

# A runner whose row was not beaten for this many beats is taken as gone.
STALE_BEATS = 6
# Rows of runs older than this are deleted when a runner joins.
FORGET_SECONDS = 3600
# A runner's first claim, as a share of the quota; it doubles while senders wait at it.
FIRST_CLAIM = 0.1


@dataclass(frozen=True)
class Peer:
    """Another runner's row, as read at a beat."""

    run_id: str
    share: int
    in_window: int
    # Seconds since its last beat, and since it ended (None while it sends).
    age: float
    ended_age: float | None = None


def allowed(
    limit: int, run_id: str, peers: list[Peer], span: float, stale: float
) -> tuple[int, int]:
    """The most run `run_id` may claim beside `peers`, and how many of them are sending."""
    sending = sorted([p.run_id for p in peers if p.ended_age is None and p.age <= stale] + [run_id])
    # The quota over the runners sending; what does not divide goes to the first run ids.
    fair = {
        rid: limit // len(sending) + (i < limit % len(sending)) for i, rid in enumerate(sending)
    }
    reserved = 0
    for peer in peers:
        if peer.ended_age is not None:
            if peer.ended_age < span:
                reserved += peer.in_window
        elif peer.age <= stale + span:
            reserved += max(peer.in_window, peer.share)
    return max(0, min(fair[run_id], limit - reserved)), len(sending) - 1


class QuotaShare:
    """This run's row for one workspace, and its pacer kept to the share the row claims."""

    def __init__(
        self,
        engine: Engine,
        key: StateKey,
        run_id: str,
        pacer: Pacer,
        beat: float,
        *,
        on_change: Callable[[int, int], None] = lambda others, share: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.key = key
        self.run_id = run_id
        self.pacer = pacer
        self.limit = pacer.limit
        self.beat_seconds = beat
        self.stale = STALE_BEATS * beat
        self.on_change = on_change
        self._clock = clock
        self.claim = 0
        # The most this runner may claim now (its fair share, less what the others hold).
        self.ceiling = 0
        self.others = 0
        self._joined = False
        self._last_beat: float | None = None
        self._done = threading.Event()
        # Set to beat before the next tick: a sender waits at a claim that may be raised.
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the protocol, one beat at a time --------------------------------------------------

    def _since(self) -> dict[str, str]:
        return {"since": self.engine.AGO.format("?")}

    def read(self) -> list[Peer]:
        """The other runners' rows that may still hold starts in a window."""
        horizon = self.stale + self.pacer.span + self.beat_seconds
        params = (*self.key.params, self.run_id, horizon)
        with self.engine.statements:
            cursor = self.engine.execute("peers", params, None, self._since())
            try:
                rows = cursor.fetchall()
            finally:
                cursor.close()
        return [
            Peer(
                str(run_id),
                int(share or 0),
                int(in_window or 0),
                float(age or 0),
                None if ended_age is None else float(ended_age),
            )
            for run_id, share, in_window, age, ended_age in rows
        ]

    def _write(self, claim: int) -> None:
        window = self.pacer.in_window()
        if self._joined:
            self.engine.run("beat_peer", (claim, window, *self.key.params, self.run_id))
        else:
            self.engine.run("join_peers", (*self.key.params, self.run_id, claim, window))
            self._joined = True
        self.claim = claim

    def want(self) -> int:
        """What this runner would use: twice its window, twice its claim when a sender
        waited at it, and at least its first claim."""
        want = max(round(self.limit * FIRST_CLAIM), 2 * self.pacer.in_window(), 1)
        if self.pacer.take_full():
            want = max(want, 2 * self.claim)
        return want

    def beat(self) -> None:
        """Read the others, claim this runner's share and pace to it (WarehouseError if the
        state cannot be reached)."""
        began = self._clock()
        want = self.want()
        ceiling, others = allowed(self.limit, self.run_id, self.read(), self.pacer.span, self.stale)
        share = min(ceiling, want)
        if share > self.pacer.limit:
            # Claimed before it is used; the others' rows read again after the claim.
            self._write(share)
            ceiling, others = allowed(
                self.limit, self.run_id, self.read(), self.pacer.span, self.stale
            )
            share = min(share, ceiling)
            self.pacer.set_limit(share)
            if share < self.claim:
                self._write(share)
        else:
            self.pacer.set_limit(share)
            self._write(share)
        self.ceiling = ceiling
        self._last_beat = began
        if others != self.others:
            self.others = others
            self.on_change(others, ceiling)

    def _full(self) -> None:
        """A sender waits at the pacer's limit: beat now if the claim can rise."""
        if self.claim < self.ceiling:
            self._wake.set()

    # -- the run's part --------------------------------------------------------------------

    def start(self) -> None:
        """Join: take this runner's share now, then beat it in a thread of its own."""
        self.pacer.set_limit(0)
        forget = (*self.key.params, FORGET_SECONDS)
        with self.engine.statements:
            self.engine.execute("forget_peers", forget, None, self._since()).close()
        self.beat()
        self.pacer.on_full = self._full
        self._thread = threading.Thread(target=self._beat, name="moengage-quota", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        failed = False
        while True:
            # After a failed beat the next waits its tick: senders waiting do not hurry it.
            (self._done if failed else self._wake).wait(self.beat_seconds)
            self._wake.clear()
            if self._done.is_set():
                return
            try:
                self.beat()
                failed = False
            except WarehouseError as exc:
                failed = True
                since = self._last_beat
                if since is not None and self._clock() - since > self.stale:
                    # The others stop counting on this row: no start until a beat lands.
                    self.pacer.set_limit(0)
                log.warning(
                    "workspace '%s': this run's share of its quota was not beaten: %s",
                    self.key.workspace_id,
                    exc,
                )

    def stop(self) -> None:
        """Leave: the row keeps this runner's window, so the others wait for it to age out."""
        self._done.set()
        self._wake.set()
        self.pacer.on_full = None
        if self._thread is not None:
            # A beat stuck on a warehouse that stopped answering: its row goes stale.
            self._thread.join(timeout=self.stale)
            if self._thread.is_alive():
                return
        if self._joined:
            with contextlib.suppress(WarehouseError):
                self.engine.run(
                    "leave_peers", (self.pacer.in_window(), *self.key.params, self.run_id)
                )


@contextlib.contextmanager
def sharing_quota(
    engine: Engine,
    key: StateKey,
    run_id: str,
    pacer: Pacer,
    on_change: Callable[[int, int], None],
    on_error: Callable[[str], None],
) -> Iterator[None]:
    """Share the workspace's quota with the other runners sending to it, for the block.

    The run joins before its first request (a run with nothing to send writes no row), and
    leaves at the block's end. Nothing where the engine's runners never overlap (DuckDB).
    Where the share cannot be taken, `on_error` says why and the run paces to the whole
    quota, as it would alone.
    """
    beat = engine.QUOTA_BEAT_SECONDS
    if beat is None:
        yield
        return
    share: QuotaShare | None = None

    def join() -> None:
        nonlocal share
        full = pacer.limit
        joining = None
        try:
            beater = engine.heartbeat() or engine
            joining = QuotaShare(beater, key, run_id, pacer, beat, on_change=on_change)
            joining.start()
        except (WarehouseError, ProfileError) as exc:
            if joining is not None:
                joining.stop()
            pacer.set_limit(full)
            on_error(str(exc))
            return
        share = joining

    pacer.before_first(join)
    try:
        yield
    finally:
        if share is not None:
            share.stop()

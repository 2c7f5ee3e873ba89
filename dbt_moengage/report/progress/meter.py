"""What the renderers measure while a sync runs: each cohort's sending so far (uids, adds,
removes, requests, when it was last reported) and the workspace's request rate over the
last minute. Thread-safe: `sent` comes from the client's recording thread."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..results import CohortResult

DEFAULT_INTERVAL = 10.0
RATE_WINDOW_SECONDS = 60.0
Clock = Callable[[], float]


def planned(result: CohortResult) -> int:
    """Uids a cohort's run plans to send: adds, re-sends and removals."""
    return result.planned_add + result.planned_resend + result.planned_remove


@dataclass
class Sending:
    """What one cohort has sent so far in this run (the result's counts fill in at the end)."""

    total: int
    uids_sent: int = 0
    added: int = 0
    removed: int = 0
    requests: int = 0
    reported_at: float = 0.0

    @property
    def done(self) -> bool:
        """Whether every planned uid was sent."""
        return self.uids_sent >= self.total


class Meter:
    """Each cohort's sending, and the workspace's request rate over the last minute."""

    def __init__(self, clock: Clock, interval: float = DEFAULT_INTERVAL) -> None:
        self.clock = clock
        self.interval = interval
        self._cohorts: dict[int, Sending] = {}
        self._accepted: deque[float] = deque()
        # `sent` comes from the client's recording thread, the rest from the main one.
        self._lock = threading.Lock()

    def start(self, result: CohortResult) -> Sending:
        """Begin measuring the cohort's sending."""
        with self._lock:
            sending = Sending(total=planned(result), reported_at=self.clock())
            self._cohorts[id(result)] = sending
            return sending

    def sent(self, result: CohortResult, action: str, uids: int) -> Sending:
        """Count one request MoEngage accepted for the cohort."""
        with self._lock:
            now = self.clock()
            sending = self._cohorts.get(id(result))
            if sending is None:
                sending = Sending(total=planned(result), reported_at=now)
                self._cohorts[id(result)] = sending
            sending.uids_sent += uids
            sending.requests += 1
            if action == "remove_members":
                sending.removed += uids
            else:
                sending.added += uids
            self._accepted.append(now)
            return sending

    def due(self, sending: Sending) -> bool:
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

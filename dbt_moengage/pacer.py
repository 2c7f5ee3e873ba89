"""A sliding-window pacer: never more than `limit` request starts in any window."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from .errors import Interrupted


class Pacer:
    """Shared by every thread sending to one workspace; `acquire()` before each request."""

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        *,
        margin: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        stop: threading.Event | None = None,
    ) -> None:
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        self.limit = limit
        # The margin absorbs the jitter between our clock and the server's arrival times.
        self.span = window + margin
        self._clock = clock
        self._sleep = sleep
        # Once set, waiting senders give up at once (the run is being interrupted).
        self._stop = stop
        self._starts: deque[float] = deque()
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self.waited = 0.0

    def acquire(self) -> float:
        """Block until a request may start; return the seconds waited.

        Raises Interrupted when the run is stopped while waiting.
        """
        waited = 0.0
        while True:
            if self._stop is not None and self._stop.is_set():
                raise Interrupted("the run was interrupted before this request could start")
            with self._lock:
                now = self._clock()
                # Same expression as the delay below, so float rounding cannot leave a start
                # both in the window and with nothing left to wait (a zero-sleep spin).
                while self._starts and self._starts[0] + self.span <= now:
                    self._starts.popleft()
                if self._paused_until > now:
                    delay = self._paused_until - now
                elif len(self._starts) < self.limit:
                    self._starts.append(now)
                    self.waited += waited
                    return waited
                else:
                    delay = self._starts[0] + self.span - now
            if self._stop is not None:
                self._stop.wait(delay)
            else:
                self._sleep(delay)
            waited += delay

    def pause(self, seconds: float) -> None:
        """Hold every sender for `seconds` (the server asked us to, with Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def in_window(self) -> int:
        """How many request starts the current window holds."""
        with self._lock:
            now = self._clock()
            return sum(1 for t in self._starts if t + self.span > now)

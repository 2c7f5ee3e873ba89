"""A sliding-window pacer: never more than `limit` request starts in any window.

The limit may change while senders wait (`set_limit`): runners of one workspace share its
quota (state/peers.py), so a runner's share falls as others join and rises as they leave.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from .errors import Interrupted

# While the limit can change, a waiting sender looks again this often: a raised limit is
# used within this time, not when the window's oldest start ages out.
SHARED_POLL_SECONDS = 0.25


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
        # Set once the limit is shared (set_limit): waits are cut to SHARED_POLL_SECONDS.
        self._poll: float | None = None
        # Run once, before the first request starts (`before_first`); the others wait for it.
        self._first: Callable[[], None] | None = None
        self._first_lock = threading.Lock()
        # Called (outside the lock) whenever a sender waits because the limit is reached:
        # a shared limit may be raised on demand (state/peers.py).
        self.on_full: Callable[[], None] | None = None
        # Set when a sender waited at the limit, until `take_full()`.
        self._full = False

    def before_first(self, hook: Callable[[], None]) -> None:
        """Run `hook` before the first request starts (a run with nothing to send never
        runs it); requests acquired meanwhile wait for it to return."""
        self._first = hook

    def acquire(self) -> float:
        """Block until a request may start; return the seconds waited.

        Raises Interrupted when the run is stopped while waiting.
        """
        waited = 0.0
        if self._first is not None:
            started = self._clock()
            with self._first_lock:
                hook, self._first = self._first, None
                if hook is not None:
                    hook()
            waited = self._clock() - started
        while True:
            if self._stop is not None and self._stop.is_set():
                raise Interrupted("the run was interrupted before this request could start")
            with self._lock:
                now = self._clock()
                # Same expression as the delay below, so float rounding cannot leave a start
                # both in the window and with nothing left to wait (a zero-sleep spin).
                while self._starts and self._starts[0] + self.span <= now:
                    self._starts.popleft()
                full = False
                if self._paused_until > now:
                    delay = self._paused_until - now
                elif len(self._starts) < self.limit:
                    self._starts.append(now)
                    self.waited += waited
                    return waited
                elif self._starts:
                    # The start that must age out for one more to fit under the limit.
                    delay = self._starts[max(len(self._starts) - self.limit, 0)] + self.span - now
                    full = True
                else:  # a limit of 0: this runner's share is nothing for now
                    delay = self.span
                    full = True
                if full:
                    self._full = True
                if self._poll is not None:
                    delay = min(delay, self._poll)
            if full and self.on_full is not None:
                self.on_full()
            if self._stop is not None:
                self._stop.wait(delay)
            else:
                self._sleep(delay)
            waited += delay

    def set_limit(self, limit: int) -> None:
        """Let at most `limit` starts into any window from now on (0: none for now).

        Lowered, it holds new starts until enough of the window's starts age out; raised,
        waiting senders see it within SHARED_POLL_SECONDS.
        """
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        with self._lock:
            self.limit = limit
            self._poll = SHARED_POLL_SECONDS

    def take_full(self) -> bool:
        """Whether a sender waited at the limit since the last call."""
        with self._lock:
            full, self._full = self._full, False
            return full

    def pause(self, seconds: float) -> None:
        """Hold every sender for `seconds` (the server asked us to, with Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def in_window(self) -> int:
        """How many request starts the current window holds."""
        with self._lock:
            now = self._clock()
            return sum(1 for t in self._starts if t + self.span > now)

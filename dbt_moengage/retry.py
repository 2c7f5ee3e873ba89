"""The runner's one retry policy, used by every HTTP client it has (MoEngage, the
notifications, dbt Cloud), and the one table of what is worth another attempt: an answer's
status (`answer_error`), no whole answer at all (`NO_ANSWER`, typed by `one_attempt` for
the notifications and dbt Cloud, by client/failures.py for MoEngage).

Tenacity, retrying only `TransientError` (429, 5xx, dropped connections, timeouts: the
callers map their failures to it), so retrying is decided by type, never by message text.
A 429's `Retry-After` comes first (capped); otherwise capped exponential backoff with jitter,
so parallel senders do not retry in step. Attempts stop at a count and, optionally, before a
wait that would end past a time budget: one request's own, or a `Budget` that every request
to one destination shares for a run.
"""

from __future__ import annotations

import contextlib
import email.utils
import threading
import time
from collections.abc import Callable, Iterator

import requests
import urllib3.exceptions
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base

from .deadline import within
from .errors import Interrupted, RateLimited, TransientError, is_transient
from .interrupt import when_stopped

# The longest Retry-After honoured: a server asking for a day is waited for 5 minutes.
MAX_RETRY_AFTER = 300.0


class RetryAfterWait:
    """Tenacity wait: a 429's Retry-After (capped) first, else capped exponential + jitter."""

    def __init__(
        self,
        backoff_initial: float,
        backoff_max: float,
        on_retry_after: Callable[[float], None] | None = None,
    ) -> None:
        self.on_retry_after = on_retry_after
        self._fallback = wait_exponential(
            multiplier=backoff_initial, max=backoff_max
        ) + wait_random(0, backoff_initial)

    def __call__(self, state: RetryCallState) -> float:
        """Seconds to wait before the next attempt."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            delay = min(exc.retry_after, MAX_RETRY_AFTER)
            if self.on_retry_after is not None:
                self.on_retry_after(delay)
            return delay
        return float(self._fallback(state))


class Budget:
    """A retry budget that every request to one destination shares in a run.

    Its clock runs while the destination fails and is being sent to: from the start of the
    earliest request that failed since the destination last accepted one (so no request
    outlives it) until the next acceptance, paused while no request is under way (a cohort
    being planned does not spend it). Once spent, it stays spent: the destination is taken
    as down for the rest of the run, and costs one budget, not one per request or cohort.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._failing = False
        # Failing seconds of earlier stretches with requests under way, and the start of
        # the current one (None while no request is under way).
        self._used = 0.0
        self._since: float | None = None
        self._busy = 0
        self._spent = False

    def begin(self) -> float:
        """A request starts: the clock time it started at."""
        with self._lock:
            now = self.clock()
            self._busy += 1
            if self._busy == 1:
                self._since = now
            return now

    def end(self) -> None:
        """A request is over, however it ended."""
        with self._lock:
            self._busy -= 1
            if self._busy == 0:
                if self._failing and self._since is not None:
                    self._used += self.clock() - self._since
                self._since = None

    def failed(self, started: float) -> None:
        """A request that began at `started` (see `begin`) failed transiently."""
        with self._lock:
            if not self._failing:
                self._failing, self._used = True, 0.0
                self._since = started
            elif self._since is not None:
                self._since = min(self._since, started)

    def accepted(self) -> None:
        """The destination accepted a request: it is up, and the clock stops."""
        with self._lock:
            self._failing, self._used = False, 0.0

    def left(self) -> float:
        """Seconds left (all of them while nothing fails); 0 once spent."""
        with self._lock:
            return 0.0 if self._spent else max(0.0, self.seconds - self._failing_for())

    def failing_for(self) -> float:
        """Seconds of the budget used so far; 0 while nothing fails."""
        with self._lock:
            return self._failing_for()

    @property
    def spent(self) -> bool:
        """Whether the destination failed past the budget (or stopped retrying before)."""
        return self.left() <= 0

    def stop(self) -> stop_base:
        """Tenacity stop: before a wait that would end with nothing left (it spends it)."""
        return _StopBeforeSpent(self)

    def _spend(self) -> None:
        with self._lock:
            self._spent = True

    def _failing_for(self) -> float:
        if not self._failing:
            return 0.0
        running = 0.0 if self._since is None else self.clock() - self._since
        return self._used + running


class _StopBeforeSpent(stop_base):
    def __init__(self, budget: Budget) -> None:
        self.budget = budget

    def __call__(self, state: RetryCallState) -> bool:
        if state.upcoming_sleep < self.budget.left():
            return False
        self.budget._spend()
        return True


def policy(
    *,
    max_attempts: int,
    backoff_initial: float,
    backoff_max: float,
    budget_seconds: float | None = None,
    budget: Budget | None = None,
    sleep: Callable[[float], None] = time.sleep,
    before_sleep: Callable[[RetryCallState], None] | None = None,
    on_retry_after: Callable[[float], None] | None = None,
) -> Retrying:
    """The retry policy: iterate it (`for attempt in policy(...): with attempt: ...`).

    `sleep` lets a caller end waits early (a stop event's `wait`); `on_retry_after` is told
    each Retry-After honoured (the MoEngage client pauses its pacer with it); the last error
    is re-raised as it is, so callers catch `TransientError` to say they gave up. With a
    shared `budget`, the caller reports each failure to it (`Budget.failed`) and each
    acceptance (`Budget.accepted`).
    """
    stop: stop_base = stop_after_attempt(max_attempts)
    if budget_seconds is not None:
        # Never start a wait that would end past the budget.
        stop = stop | stop_before_delay(budget_seconds)
    if budget is not None:
        # First, so a budget that runs out is marked spent even on the last attempt.
        stop = budget.stop() | stop
    return Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop,
        wait=RetryAfterWait(backoff_initial, backoff_max, on_retry_after),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


def retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date); None if unusable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


# What a request through `requests` raises when no whole answer came (refused, reset, timed
# out, cut off): every client maps these to TransientError, or to Interrupted when stopped.
NO_ANSWER: tuple[type[Exception], ...] = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
)


@contextlib.contextmanager
def one_attempt(
    seconds: float, stop: threading.Event, *, stopping: str, shown: float | None = None
) -> Iterator[None]:
    """One attempt of the request made in the block, for a client that takes every failure
    to get an answer as transient (the notifications, dbt Cloud's artifacts client).

    The block ends by the wall-clock deadline of `seconds` (deadline.py), and at once when
    `stop` is set. An exception of NO_ANSWER raised in it comes out typed, saying no more of
    it than its type (requests' messages may quote the URL or headers): Interrupted saying
    `stopping` when stopped, a TransientError naming the deadline (`shown` seconds, else
    `seconds`) when it passed, else a TransientError naming the type. The MoEngage client
    reads such an exception further (client/failures.py).
    """
    with within(seconds) as deadline, when_stopped(stop, deadline.expire):
        try:
            yield
        except NO_ANSWER as exc:
            if stop.is_set():
                raise Interrupted(stopping) from None
            if deadline.expired:
                limit = seconds if shown is None else shown
                raise TransientError(f"no complete answer within {limit:g} s") from None
            raise TransientError(type(exc).__name__) from None


def answer_error(
    status: int, problem: str, retry_after_header: str | None, also: tuple[int, ...] = ()
) -> TransientError | None:
    """The error of an HTTP answer worth another attempt, as every client reads it: 429
    (RateLimited, with its Retry-After), 408 and 5xx, and the caller's `also` (dbt Cloud's
    404 before a run's artifacts are published). None for any other status: what those mean
    is the caller's to say."""
    if status == 429:
        return RateLimited(problem, retry_after(retry_after_header))
    if status >= 500 or status == 408 or status in also:
        return TransientError(problem)
    return None


__all__ = [
    "MAX_RETRY_AFTER",
    "NO_ANSWER",
    "Budget",
    "RetryAfterWait",
    "answer_error",
    "one_attempt",
    "policy",
    "retry_after",
]

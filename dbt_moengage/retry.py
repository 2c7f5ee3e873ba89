"""The runner's one retry policy, used by every HTTP client it has (MoEngage, dbt Cloud).

Tenacity, retrying only `TransientError` (429, 5xx, dropped connections, timeouts: the
callers map their failures to it), so retrying is decided by type, never by message text.
A 429's `Retry-After` comes first (capped); otherwise capped exponential backoff with jitter,
so parallel senders do not retry in step. Attempts stop at a count and, optionally, before a
wait that would end past a time budget.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable

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

from .errors import RateLimited, is_transient

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


def policy(
    *,
    max_attempts: int,
    backoff_initial: float,
    backoff_max: float,
    budget_seconds: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    before_sleep: Callable[[RetryCallState], None] | None = None,
    on_retry_after: Callable[[float], None] | None = None,
) -> Retrying:
    """The retry policy: iterate it (`for attempt in policy(...): with attempt: ...`).

    `sleep` lets a caller end waits early (a stop event's `wait`); `on_retry_after` is told
    each Retry-After honoured (the MoEngage client pauses its pacer with it); the last error
    is re-raised as it is, so callers catch `TransientError` to say they gave up.
    """
    stop: stop_base = stop_after_attempt(max_attempts)
    if budget_seconds is not None:
        # Never start a wait that would end past the budget.
        stop = stop | stop_before_delay(budget_seconds)
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


__all__ = ["MAX_RETRY_AFTER", "RetryAfterWait", "policy", "retry_after"]

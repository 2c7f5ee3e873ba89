"""Stage 5: the MoEngage client. All HTTP policy lives here: auth, pacing, retries.

One client per workspace: one `requests.Session`, one pacer shared by every cohort, a few
requests in flight so latency does not waste the quota. The first request goes alone, so a
wrong key costs one request (two at most when the first was retried), never a burst.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import requests
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from . import __version__
from .errors import (
    MoEngageSyncError,
    RateLimited,
    RequestRejected,
    TransientError,
    WorkspaceFatal,
)
from .pacer import Pacer
from .packing import Body
from .settings import MoEngageSettings

MAX_RETRY_AFTER = 300.0
CONNECT_TIMEOUT = 10.0


@dataclass
class Tally:
    """Counters for one stream of requests (one cohort and action); thread safe."""

    requests: int = 0
    retries: int = 0
    accepted: int = 0
    uids_accepted: int = 0
    uids_failed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    stopped: threading.Event = field(default_factory=threading.Event, repr=False)

    def attempt(self, first: bool) -> None:
        """Count one HTTP request."""
        with self._lock:
            self.requests += 1
            if not first:
                self.retries += 1


class MoEngageClient:
    """Sends request bodies to one workspace's Cohort Sync endpoint."""

    def __init__(
        self,
        settings: MoEngageSettings,
        *,
        pacer: Pacer | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.settings = settings
        self.pacer = pacer or Pacer(settings.rate_limit_per_min)
        self.session = session or _new_session(settings)
        self._pool = ThreadPoolExecutor(
            max_workers=settings.max_in_flight, thread_name_prefix="moengage-send"
        )
        self._first_lock = threading.Lock()
        self._verified = False
        self._fatal: WorkspaceFatal | None = None
        # Capped exponential backoff plus jitter, so parallel senders do not retry in step.
        self._wait_fallback = wait_exponential(
            multiplier=settings.backoff_initial, max=settings.backoff_max
        ) + wait_random(0, settings.backoff_initial)

    def close(self) -> None:
        """Stop the worker threads and close connections."""
        self._pool.shutdown(wait=True)
        self.session.close()

    def __enter__(self) -> MoEngageClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, payload: bytes, tally: Tally) -> None:
        """Deliver one body, retrying transient failures; raise when it cannot be delivered."""
        if self._fatal is not None:
            raise self._fatal
        if self._verified:
            self._send_with_retries(payload, tally)
            return
        # Until one request succeeds the credentials are unproven: send one at a time.
        with self._first_lock:
            if self._fatal is not None:
                raise self._fatal
            self._send_with_retries(payload, tally)
            self._verified = True

    def send_all(
        self,
        bodies: Iterable[Body],
        tally: Tally,
        on_accepted: Callable[[Body], None] = lambda body: None,
    ) -> None:
        """Send bodies with a few in flight; `on_accepted` runs once per 200.

        `on_accepted` (the checkpoint) runs in the sending thread right after the 200,
        inside the request's slot: at most `max_in_flight` bodies are ever sent but not
        yet recorded, and recording one overlaps sending the next. On the first failure
        (a request or its checkpoint) no new body is sent, those in flight are awaited,
        then the failure is raised.
        """
        in_flight: dict[Future[None], Body] = {}
        limit = self.settings.max_in_flight + 1
        error: BaseException | None = None

        def collect(done: Iterable[Future[None]]) -> None:
            nonlocal error
            for future in done:
                body = in_flight.pop(future)
                exc = future.exception()
                if exc is None:
                    tally.accepted += 1
                    tally.uids_accepted += len(body.uids)
                else:
                    tally.uids_failed += len(body.uids)
                    if not isinstance(exc, _Stopped):
                        error = error or exc

        try:
            for body in bodies:
                while len(in_flight) >= limit:
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    collect(done)
                if error is not None:
                    break
                in_flight[self._pool.submit(self._deliver, body, tally, on_accepted)] = body
        finally:
            if in_flight:
                done, _ = wait(in_flight)
                collect(done)
        if error is not None:
            raise error

    def _deliver(self, body: Body, tally: Tally, on_accepted: Callable[[Body], None]) -> None:
        """Send one body, then record it; a failed record stops the stream like a failed send."""
        self.send(body.payload, tally)
        try:
            on_accepted(body)
        except BaseException:
            tally.stopped.set()
            raise

    def _send_with_retries(self, payload: bytes, tally: Tally) -> None:
        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self.settings.max_attempts),
            wait=self._wait,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if tally.stopped.is_set():
                        raise _Stopped()
                    tally.attempt(first=attempt.retry_state.attempt_number == 1)
                    self._post(payload)
        except TransientError as exc:
            tally.stopped.set()
            raise TransientError(
                f"gave up after {self.settings.max_attempts} attempts; last error: {exc}"
            ) from None
        except MoEngageSyncError:
            # Set here, not when the main thread collects, so no queued body slips out.
            tally.stopped.set()
            raise

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            delay = min(exc.retry_after, MAX_RETRY_AFTER)
            self.pacer.pause(delay)
            return delay
        return float(self._wait_fallback(state))

    def _post(self, payload: bytes) -> None:
        self.pacer.acquire()
        try:
            response = self.session.post(
                self.settings.endpoint,
                data=payload,
                timeout=(CONNECT_TIMEOUT, self.settings.timeout_seconds),
            )
        except requests.Timeout:
            raise TransientError(
                f"no answer from {self.settings.base_url} within "
                f"{self.settings.timeout_seconds:g} s"
            ) from None
        except requests.ConnectionError as exc:
            raise TransientError(
                f"connection to {self.settings.base_url} failed ({type(exc).__name__})"
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        detail = self._detail(response)
        if status == 429:
            raise RateLimited(f"HTTP 429 rate limited: {detail}", _retry_after(response))
        if status >= 500 or status == 408:
            raise TransientError(f"HTTP {status}: {detail}")
        if status in (401, 403):
            fatal = WorkspaceFatal(
                f"MoEngage answered HTTP {status} for workspace "
                f"'{self.settings.workspace_id}': check MOENGAGE_WORKSPACE_ID and "
                f"MOENGAGE_API_KEY (the Data API key, not the SDK key) and the data center "
                f"({self.settings.base_url}); no further requests were sent to it"
            )
            self._fatal = fatal
            raise fatal
        raise RequestRejected(status, detail)

    def _detail(self, response: requests.Response) -> str:
        text = response.text[:500].strip() or response.reason or ""
        key = self.settings.api_key.reveal()
        return text.replace(key, "***") if key else text


class _Stopped(MoEngageSyncError):
    """A body left unsent because another body of the same stream failed first."""


def _retry_after(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _new_session(settings: MoEngageSettings) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=settings.max_in_flight + 1)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.auth = (settings.workspace_id, settings.api_key.reveal())
    session.headers.update(
        {
            "MOE-APPKEY": settings.workspace_id,
            "Content-Type": "application/json",
            "User-Agent": f"dbt-moengage/{__version__}",
        }
    )
    return session


__all__ = ["MoEngageClient", "MoEngageSyncError", "Tally"]

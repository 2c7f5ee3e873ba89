"""MoEngageClient: one workspace's Cohort Sync endpoint, sent to under the runner's policy.

One client per workspace: one `requests.Session`, one pacer shared by every cohort, a few
requests in flight so latency does not waste the quota. The first request goes alone, so a
wrong key costs one request (two at most when the first was retried), never a burst.
Retries follow the runner's one policy (retry.py) under one retry budget per destination
per run; each request, its answer included, ends by its wall-clock deadline (deadline.py).
Redirects are never followed. What an answer means is answer.py's to say, what a request
that got none means failures.py's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import requests
from tenacity import RetryCallState

from .. import __version__, retry
from ..deadline import DeadlineAdapter, within
from ..errors import (
    Interrupted,
    MoEngageSyncError,
    StreamStopped,
    TransientError,
    WorkspaceFatal,
)
from ..pacer import Pacer
from ..packing import Body
from ..settings import MoEngageSettings
from .answer import BODY_READ, Answer, check_answer, read_start
from .failures import CONNECT_TIMEOUT, host_of, request_error

# A wait between attempts at least this long is announced (a progress/JSON event).
ANNOUNCED_WAIT_SECONDS = 5.0
# Called with (seconds, why) before such a wait.
WaitHook = Callable[[float, str], None]
# No whole answer (retry.NO_ANSWER), or a header requests cannot decode.
_NO_ANSWER: tuple[type[Exception], ...] = (*retry.NO_ANSWER, UnicodeError)


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
        stop: threading.Event | None = None,
        on_wait: WaitHook | None = None,
    ) -> None:
        self.settings = settings
        # Set when the run is interrupted: nothing new starts, waits end early.
        self.stop = stop or threading.Event()
        self.on_wait = on_wait
        self.announce_after = ANNOUNCED_WAIT_SECONDS
        self.pacer = pacer or Pacer(settings.rate_limit_per_min, stop=self.stop)
        self.session = session or _new_session(settings)
        self._pool = ThreadPoolExecutor(
            max_workers=settings.max_in_flight, thread_name_prefix="moengage-send"
        )
        self._first_lock = threading.Lock()
        self._verified = False
        self._fatal: WorkspaceFatal | None = None
        # One retry budget for every request of the run: a destination that is down costs
        # one budget, then every later send fails at once (`down`), without a request.
        self.budget = retry.Budget(settings.retry_budget_seconds)
        self._down: TransientError | None = None
        self._down_lock = threading.Lock()
        self._last_failure = ""

    def close(self) -> None:
        """Stop the worker threads and close connections."""
        self._pool.shutdown(wait=True)
        self.session.close()

    def __enter__(self) -> MoEngageClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def down(self) -> TransientError | None:
        """Why the destination is taken as down for the rest of the run (it failed past its
        retry budget), or None: once set, every send fails at once, without a request."""
        return self._down

    def send(self, payload: bytes, tally: Tally) -> None:
        """Deliver one body, retrying transient failures; raise when it cannot be delivered."""
        self._check_up()
        if self._verified:
            self._send_with_retries(payload, tally)
            return
        # Until one request succeeds the credentials are unproven: send one at a time.
        with self._first_lock:
            self._check_up()
            self._send_with_retries(payload, tally)
            self._verified = True

    def _check_up(self) -> None:
        """Raise at once if the destination failed for good, or past its retry budget."""
        if self._fatal is not None:
            raise self._fatal
        down = self._taken_down()
        if down is not None:
            raise down

    def _taken_down(self) -> TransientError | None:
        """`down`, set the first time the retry budget is found spent."""
        with self._down_lock:
            if self._down is None and self.budget.spent:
                self._down = TransientError(
                    f"{host_of(self.settings.base_url)} has failed for "
                    f"{self.budget.failing_for():.0f} s, spending the retry budget a "
                    f"destination has in a run ({self.budget.seconds:g} s, "
                    f"MOENGAGE_RETRY_BUDGET_SECONDS): it is taken as down and sent nothing "
                    f"more until the next run; last error: {self._last_failure}"
                )
            return self._down

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
        then the failure is raised. When the run is stopped, likewise: no new body, those in
        flight finish (each within its deadline), then Interrupted is raised.
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
                    # The body that spent the budget says how; the others only that it is.
                    if not isinstance(exc, StreamStopped) and (
                        error is None or error is self._down
                    ):
                        error = exc

        try:
            for body in bodies:
                while len(in_flight) >= limit:
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    collect(done)
                if error is not None:
                    break
                if self.stop.is_set():
                    error = Interrupted("the run was interrupted; bodies not sent yet stay unsent")
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
        """Attempts until one is accepted, the attempts or the destination's retry budget
        run out, or the run is stopped; no wait or attempt is begun that would end past the
        budget."""
        settings = self.settings
        retrying = retry.policy(
            max_attempts=settings.max_attempts,
            budget=self.budget,
            backoff_initial=settings.backoff_initial,
            backoff_max=settings.backoff_max,
            sleep=self._sleep,
            before_sleep=self._announce,
            # Every sender of the workspace waits out a 429's Retry-After, not just this one.
            on_retry_after=self.pacer.pause,
        )
        started = self.budget.begin()
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    self._check_up()
                    if tally.stopped.is_set():
                        raise StreamStopped()
                    if self.stop.is_set():
                        raise Interrupted("the run was interrupted before this request was sent")
                    self.pacer.acquire()
                    # The budget may have run out while the pacer held this request.
                    self._check_up()
                    attempts += 1
                    tally.attempt(first=attempt.retry_state.attempt_number == 1)
                    try:
                        self._post(payload)
                    except TransientError as exc:
                        self._last_failure = str(exc)
                        self.budget.failed(started)
                        raise
            self.budget.accepted()
        except TransientError as exc:
            tally.stopped.set()
            if exc is self._down:  # down before this attempt began: it sent nothing
                raise
            spent = self.budget.clock() - started
            down = self._taken_down()
            if down is not None:
                raise TransientError(
                    f"gave up after {attempts} attempts in {spent:.0f} s: {down}"
                ) from None
            raise TransientError(
                f"gave up after {attempts} attempts in {spent:.0f} s (at most "
                f"{settings.max_attempts} attempts and {settings.retry_budget_seconds:g} s: "
                f"MOENGAGE_MAX_ATTEMPTS, MOENGAGE_RETRY_BUDGET_SECONDS); last error: {exc}"
            ) from None
        except WorkspaceFatal as exc:
            # Every later send to this destination fails at once, without a request.
            self._fatal = self._fatal or exc
            tally.stopped.set()
            raise
        except MoEngageSyncError:
            # Set here, not when the main thread collects, so no queued body slips out.
            tally.stopped.set()
            raise
        finally:
            self.budget.end()

    def _sleep(self, seconds: float) -> None:
        """Wait between attempts, ending at once when the run is stopped."""
        self.stop.wait(seconds)

    def _announce(self, state: RetryCallState) -> None:
        """Tell the watcher about a long wait before the next attempt, and why."""
        seconds = state.next_action.sleep if state.next_action else 0.0
        if self.on_wait is None or seconds < self.announce_after:
            return
        exc = state.outcome.exception() if state.outcome else None
        self.on_wait(seconds, str(exc) if exc else "retrying")

    def _post(self, payload: bytes) -> None:
        """One attempt: the POST and the start of its answer within the request's deadline,
        then the answer checked; the typed error when it is not an acceptance."""
        seconds = self.settings.request_deadline_seconds
        setting = "MOENGAGE_REQUEST_DEADLINE_SECONDS"
        left = self.budget.left()
        if left < seconds:
            # The retry budget is a bound: an attempt gets no more than what is left of it.
            seconds, setting = left, "what was left of MOENGAGE_RETRY_BUDGET_SECONDS"
        with within(seconds) as deadline:
            try:
                with self.session.post(
                    self.settings.endpoint,
                    data=payload,
                    timeout=(CONNECT_TIMEOUT, self.settings.timeout_seconds),
                    # A redirect would carry the body and MOE-APPKEY to a host nobody chose.
                    allow_redirects=False,
                    stream=True,
                ) as response:
                    # Read under the deadline: a body that trickles is cut off with the rest.
                    body, more = read_start(response, BODY_READ)
            except _NO_ANSWER as exc:
                if deadline.expired:
                    raise TransientError(
                        f"no complete answer from {host_of(self.settings.base_url)} within "
                        f"{round(seconds, 2):g} s ({setting})"
                    ) from None
                raise request_error(exc, self.settings) from None
        check_answer(Answer(response, body, more), self.settings, len(payload))


def _new_session(settings: MoEngageSettings) -> requests.Session:
    session = requests.Session()
    # Its connections can be shut when a request's wall-clock deadline passes.
    adapter = DeadlineAdapter(pool_connections=1, pool_maxsize=settings.max_in_flight + 1)
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

"""Stage 5: the MoEngage client. All HTTP policy lives here: auth, pacing, retries.

One client per workspace: one `requests.Session`, one pacer shared by every cohort, a few
requests in flight so latency does not waste the quota. The first request goes alone, so a
wrong key costs one request (two at most when the first was retried), never a burst.

The HTTP edge is exact: redirects are never followed, only a 2xx carrying MoEngage's
`{"status": "success"}` counts as accepted, and every exception requests can raise is mapped
to a typed error in one place (`request_error`), so retrying is decided by type. The retry
policy itself is `retry.py`, which the dbt Cloud artifacts client shares. Of an answer only
the first BODY_READ bytes are ever read (`read_start`), and what an error quotes of it goes
through `redact_secret`, which masks the key in any form a server may echo it.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3.exceptions
from requests import exceptions as rex
from tenacity import RetryCallState

from . import __version__, retry
from .deadline import DeadlineAdapter, within
from .errors import (
    DestinationError,
    Interrupted,
    MoEngageSyncError,
    RequestRejected,
    StreamStopped,
    TransientError,
    WorkspaceFatal,
)
from .pacer import Pacer
from .packing import Body
from .settings import DOCUMENTED_DATA_CENTERS, MoEngageSettings
from .warehouse.redact import redact_secret

CONNECT_TIMEOUT = 10.0
# A wait between attempts at least this long is announced (a progress/JSON event).
ANNOUNCED_WAIT_SECONDS = 5.0
# Called with (seconds, why) before such a wait.
WaitHook = Callable[[float, str], None]
# How much of an unexpected answer's body and of a redirect target an error message shows.
BODY_SHOWN = 200
LOCATION_SHOWN = 120
# At most this much of an answer's body is read: MoEngage answers in a few hundred bytes,
# and an error page of gigabytes must not fill the memory (the rest is never read).
BODY_READ = 64 * 1024
# No whole answer (retry.NO_ANSWER), or a header requests cannot decode.
_NO_ANSWER: tuple[type[Exception], ...] = (*retry.NO_ANSWER, UnicodeError)
_FIX_URL = "fix MOENGAGE_BASE_URL or MOENGAGE_DATA_CENTER"
_STOPPED = "no further requests were sent to it"


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
                    f"{_host(self.settings.base_url)} has failed for "
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
                        f"no complete answer from {_host(self.settings.base_url)} within "
                        f"{round(seconds, 2):g} s ({setting})"
                    ) from None
                raise request_error(exc, self.settings) from None
        self._check(Answer(response, body, more), len(payload))

    def _check(self, answer: Answer, size: int = 0) -> None:
        """Return if MoEngage accepted the request; raise the typed error otherwise."""
        response = answer.response
        status = response.status_code
        if 200 <= status < 300:
            doc = None if answer.more else _json_object(answer.body)
            if doc is not None and doc.get("status") == "success":
                return
            raise RequestRejected(status, self._unexpected(answer, doc is not None))
        if 300 <= status < 400:
            location = self._shown(_without_query(response.headers.get("Location", "")))
            target = f"to {location!r}" if location else "without a Location header"
            raise DestinationError(
                f"{_host(self.settings.base_url)} answered HTTP {status}, a redirect {target}, "
                f"which is never followed (the credentials would go along): {_FIX_URL} to "
                f"name the API host itself; {_STOPPED}"
            )
        detail = self._detail(answer)
        problem = (
            f"HTTP 429 rate limited: {detail}" if status == 429 else f"HTTP {status}: {detail}"
        )
        error = retry.answer_error(status, problem, response.headers.get("Retry-After"))
        if error is not None:
            raise error
        if status in (401, 403):
            raise WorkspaceFatal(
                f"MoEngage answered HTTP {status} for workspace "
                f"'{self.settings.workspace_id}': check MOENGAGE_WORKSPACE_ID and "
                f"MOENGAGE_API_KEY (the Data API key, not the SDK key) and the data center "
                f"({self.settings.base_url}); {_STOPPED}"
            )
        if status == 413:
            detail += (
                f"; this body was {size:,} bytes: lower MOENGAGE_MAX_BODY_BYTES (now "
                f"{self.settings.max_body_bytes:,}) below the limit MoEngage applies"
            )
        raise RequestRejected(status, detail)

    def _detail(self, answer: Answer, limit: int = 500) -> str:
        """The body of an answer, fit for a message: secrets masked, on one line, cut short."""
        if answer.more:
            # Within `limit` too: a message has the same room whatever the body's size.
            note = f" (a body over {BODY_READ // 1024} KB: only its start was read)"
            return self._shown(answer.text, max(limit - len(note), 20)) + note
        return self._shown(answer.text, limit) or answer.response.reason or ""

    def _unexpected(self, answer: Answer, is_json: bool) -> str:
        """What came back instead of MoEngage's success JSON (a proxy's page, nothing, a fail)."""
        kind = self._shown(answer.response.headers.get("Content-Type", ""), 80) or "none"
        body = self._detail(answer, BODY_SHOWN) if answer.body else "empty"
        # A JSON answer is MoEngage's own word; anything else is likely another host's page.
        hint = "" if is_json else f"; if this is not MoEngage, {_FIX_URL}"
        return (
            f'the answer is not the API\'s acceptance {{"status": "success"}}: Content-Type '
            f"{kind!r}, body {body!r}{hint}"
        )

    def _shown(self, text: str, limit: int = LOCATION_SHOWN) -> str:
        """`text` fit for a message: secrets masked first, then on one line and cut short."""
        key, workspace = self.settings.api_key.reveal(), self.settings.workspace_id
        text = " ".join(redact_secret(text, key, workspace).split())
        return text if len(text) <= limit else text[: limit - 3] + "..."


def request_error(exc: Exception, settings: MoEngageSettings) -> MoEngageSyncError:
    """The typed error for an exception from sending a request: the one place that maps them.

    Transient (retried): timeouts, refused or reset connections (also mid-handshake), a body
    cut short or not decodable, and anything unknown. Destination-fatal (no retry, every later
    send stops): what no retry can fix, a host that does not resolve, a TLS or certificate
    failure, a redirect loop, a bad URL or header. Messages show the host, never the URL's
    credentials or the key.
    """
    host = _host(settings.base_url)
    # Timeout first: ConnectTimeout is a ConnectionError too.
    if isinstance(exc, rex.ConnectTimeout):
        return TransientError(f"could not connect to {host} within {CONNECT_TIMEOUT:g} s")
    if isinstance(exc, rex.Timeout):
        return TransientError(f"no answer from {host} within {settings.timeout_seconds:g} s")
    # SSLError before ConnectionError, of which it is a subclass. A hang-up mid-handshake is
    # a dropped connection; any other TLS failure (certificate, protocol) recurs every time.
    if isinstance(exc, rex.SSLError) and _wraps(exc, _TLS_HANG_UPS):
        return TransientError(f"{host} hung up during the TLS handshake")
    if isinstance(exc, rex.SSLError):
        return DestinationError(
            f"TLS with {host} failed ({_tls_reason(exc)}): the host is not the MoEngage API, "
            f"or a proxy intercepts TLS (give its CA in REQUESTS_CA_BUNDLE); {_FIX_URL}; "
            f"{_STOPPED}"
        )
    # A proxy's own failure (including its name not resolving) is not the destination's.
    if isinstance(exc, rex.ProxyError):
        return TransientError(f"the proxy to {host} failed ({_cause_name(exc)})")
    if isinstance(exc, rex.ConnectionError) and _wraps(exc, _DNS_ERRORS):
        return DestinationError(
            f"host {host} does not resolve (DNS): check MOENGAGE_DATA_CENTER (documented: "
            f"{', '.join(DOCUMENTED_DATA_CENTERS)}) or MOENGAGE_BASE_URL; {_STOPPED}"
        )
    if isinstance(exc, rex.TooManyRedirects):
        return DestinationError(f"{host} redirected too many times: {_FIX_URL}; {_STOPPED}")
    if isinstance(exc, rex.InvalidProxyURL):
        return DestinationError(
            f"the proxy URL for {host} (HTTPS_PROXY or ALL_PROXY) is not valid; {_STOPPED}"
        )
    if isinstance(exc, (rex.InvalidURL, rex.InvalidSchema, rex.MissingSchema)):
        return DestinationError(
            f"the endpoint {_without_query(settings.endpoint)!r} is not an http(s) URL "
            f"requests can send to ({type(exc).__name__}): {_FIX_URL}; {_STOPPED}"
        )
    # Not echoed: requests quotes the offending header value.
    if isinstance(exc, (rex.InvalidHeader, UnicodeError)):
        return DestinationError(
            f"a request header for {host} holds characters HTTP cannot carry "
            f"({type(exc).__name__}): check MOENGAGE_WORKSPACE_ID and MOENGAGE_API_KEY; "
            f"{_STOPPED}"
        )
    if isinstance(exc, rex.ChunkedEncodingError):
        return TransientError(f"the answer from {host} was cut off mid-body")
    if isinstance(exc, rex.ContentDecodingError):
        # The request may have been applied; sending it again only repeats uids, harmlessly.
        return TransientError(
            f"the answer from {host} could not be decoded (its Content-Encoding does not match)"
        )
    if isinstance(exc, rex.ConnectionError):
        return TransientError(f"connection to {host} failed ({_cause_name(exc)})")
    return TransientError(f"request to {host} failed ({type(exc).__name__})")


# What urllib3 and the socket module raise for a name that does not resolve.
_DNS_ERRORS = (urllib3.exceptions.NameResolutionError, socket.gaierror)
# What ssl raises when the peer closes the connection before TLS is set up.
_TLS_HANG_UPS = (ssl.SSLEOFError, ssl.SSLZeroReturnError)


def _wrapped(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and all it wraps: causes, contexts, urllib3's `reason`, requests' first arg."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for inner in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(inner, BaseException):
                stack.append(inner)
        stack.extend(arg for arg in current.args[:1] if isinstance(arg, BaseException))


def _wraps(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    return any(isinstance(inner, types) for inner in _wrapped(exc))


def _cause_name(exc: BaseException) -> str:
    """The innermost wrapped error's type: ConnectionRefusedError says more than MaxRetryError."""
    names = [type(inner).__name__ for inner in _wrapped(exc)]
    return names[-1]


def _tls_reason(exc: BaseException) -> str:
    """What TLS disliked, e.g. 'self-signed certificate', from the ssl error inside."""
    # getattr: ssl sets these attributes only on the errors it raises itself.
    for inner in _wrapped(exc):
        verify = getattr(inner, "verify_message", None)
        if isinstance(inner, ssl.SSLCertVerificationError) and verify:
            return f"certificate verify failed: {verify}"
        reason = getattr(inner, "reason", None)
        if isinstance(inner, ssl.SSLError) and reason:
            return str(reason)
    return type(exc).__name__


def _host(url: str) -> str:
    """host[:port] of a URL, without any user:password@ before it."""
    authority = url.partition("://")[2] if "://" in url else url
    for end in "/?#":
        authority = authority.split(end, 1)[0]
    return authority.rpartition("@")[2] or "(no host)"


def _without_query(url: str) -> str:
    """`url` less its query string, fragment and user:password@, which may carry secrets."""
    url = url.split("?", 1)[0].split("#", 1)[0]
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


def read_start(response: requests.Response, limit: int) -> tuple[bytes, bool]:
    """The first `limit` bytes of the (decoded) body, and whether there was more. The rest
    is never read: closing the response then drops the connection instead of draining it."""
    start = bytearray()
    for chunk in response.iter_content(min(limit, 16 * 1024)):
        start += chunk
        if len(start) > limit:
            return bytes(start[:limit]), True
    return bytes(start), False


@dataclass(frozen=True)
class Answer:
    """An answer as read: its status and headers, and the start of its body."""

    response: requests.Response
    body: bytes
    # The body went on past what was read.
    more: bool = False

    @property
    def text(self) -> str:
        """The body as text; decoded by hand, as guessing a charset is slow on a large page."""
        try:
            return self.body.decode(self.response.encoding or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return self.body.decode("utf-8", errors="replace")


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is anything else."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting too deep to parse
        return None
    return doc if isinstance(doc, dict) else None


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


__all__ = ["MoEngageClient", "MoEngageSyncError", "Tally", "request_error"]

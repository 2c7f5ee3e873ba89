"""The post: where notifications go (NotifySettings) and `post`, one JSON POST to them.

A post that fails is a warning, never a failed sync; its retries follow the runner's one
policy (retry.py) on a small budget, which is also the post's wall-clock deadline
(deadline.py): a receiver that trickles its answer cannot hold the run past it, and a stop
(SIGINT, SIGTERM) cuts the post off at once. What no answer and an answer's status mean is
retry.py's shared table (`no_answer_error`, `answer_error`).

The URL carries the receiver's secret (a Slack webhook's path is its credential): it is
held as a `Secret`, checked by the one rule of every URL setting (urls.py), and shown as
scheme://host only.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from urllib3.util import parse_url

from .. import __version__, retry
from ..client import read_start
from ..deadline import DeadlineAdapter
from ..errors import Interrupted, NotificationFailed, TransientError
from ..settings import Secret
from ..urls import check_url, origin
from ..warehouse.redact import redact_secret, stored_error

NOTIFY_URL = "MOENGAGE_NOTIFY_URL"
# A notification holds up no one: a few quick attempts, then the next run posts it again.
ATTEMPTS = 3
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 2.0
# The whole post's wall-clock deadline, attempts and waits included.
BUDGET_SECONDS = 10.0
CONNECT_TIMEOUT = 3.05
READ_TIMEOUT = 5.0
# What a refusal's message quotes of the receiver's answer.
ANSWER_CHARS = 200


@dataclass(frozen=True)
class NotifySettings:
    """Where notifications go, and how hard a post is tried."""

    url: Secret
    attempts: int = ATTEMPTS
    backoff_initial: float = BACKOFF_INITIAL
    backoff_max: float = BACKOFF_MAX
    budget_seconds: float = BUDGET_SECONDS
    connect_timeout: float = CONNECT_TIMEOUT
    read_timeout: float = READ_TIMEOUT

    def __post_init__(self) -> None:
        # However built, a URL is checked before anything can be posted to it.
        check_notify_url(self.url.reveal())

    @property
    def receiver(self) -> str:
        """The receiver as messages show it: scheme://host[:port] as requests reads it, never
        path or query."""
        return origin(self.url.reveal())

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> NotifySettings | None:
        """MOENGAGE_NOTIFY_URL checked, or None when unset; SettingsError (never echoing
        the URL) when it cannot be used."""
        url = environ.get(NOTIFY_URL, "").strip()
        if not url:
            return None
        return cls(url=Secret(url))


def check_notify_url(url: str) -> None:
    """Refuse a URL that is not http(s) with a host, or would send its secret in clear (the
    one rule of every URL setting, urls.py); never quoting it, as its path is the secret."""
    check_url(
        url,
        NOTIFY_URL,
        carries="the receiver's secret (the URL's path)",
        example="https://hooks.slack.com/services/... (a Slack incoming webhook's)",
        fix="set the URL exactly as the receiver gave it",
        shown=False,
    )


def post(
    settings: NotifySettings, body: dict[str, Any], stop: threading.Event | None = None
) -> int:
    """POST the message under the shared retry policy; the attempts it took.

    The post ends within `budget_seconds` however the receiver answers: each attempt gets
    what is left of it as its wall-clock deadline. Setting `stop` ends it at once.
    NotificationFailed when the receiver refused it, stayed out of reach or too slow, or
    the run was stopped; its message names the receiver as scheme://host only.
    """
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    stop = stop or threading.Event()
    attempts = 0
    started = time.monotonic()
    with requests.Session() as session:
        # Its connections can be shut when the deadline passes, or the run is stopped.
        session.mount("http://", DeadlineAdapter())
        session.mount("https://", DeadlineAdapter())
        session.headers.update(
            {
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": f"dbt-moengage/{__version__}",
            }
        )
        policy = retry.policy(
            max_attempts=settings.attempts,
            backoff_initial=settings.backoff_initial,
            backoff_max=settings.backoff_max,
            budget_seconds=settings.budget_seconds,
            sleep=lambda seconds: _wait(stop, seconds),
        )
        try:
            for attempt in policy:
                with attempt:
                    if stop.is_set():
                        raise Interrupted("the run was interrupted")
                    attempts += 1
                    left = settings.budget_seconds - (time.monotonic() - started)
                    _post_once(session, settings, data, left, stop)
        except Interrupted:
            raise NotificationFailed(
                f"notification to {settings.receiver} not sent: the run was interrupted; "
                "the next run posts it again"
            ) from None
        except TransientError as exc:
            tries = f"{attempts} attempt{'' if attempts == 1 else 's'}"
            raise NotificationFailed(
                f"notification to {settings.receiver} not sent ({exc}, {tries}); the next "
                f"run posts it again. Check that the receiver is up and {NOTIFY_URL} is right"
            ) from None
    return attempts


def _wait(stop: threading.Event, seconds: float) -> None:
    """Wait between attempts, ending at once when the run is stopped."""
    stop.wait(seconds)


def _post_once(
    session: requests.Session,
    settings: NotifySettings,
    data: bytes,
    seconds: float,
    stop: threading.Event,
) -> None:
    """One POST, ended by `seconds` on the wall clock or by `stop`; the typed error for
    anything but a 2xx."""
    url = settings.url.reveal()
    stopping = "the run was interrupted"
    # requests' messages quote the URL: only its type is shown of a failure (one_attempt).
    with (
        retry.one_attempt(seconds, stop, stopping=stopping, shown=settings.budget_seconds),
        # Not followed: a redirected POST turns into a GET, and may carry the secret away.
        session.post(
            url,
            data=data,
            timeout=(settings.connect_timeout, settings.read_timeout),
            allow_redirects=False,
            stream=True,
        ) as response,
    ):
        status = response.status_code
        retry_after = response.headers.get("Retry-After")
        # Only the start of a refusal is read, to be shown; of an acceptance, nothing.
        refused = not 200 <= status < 300
        start = read_start(response, ANSWER_CHARS * 4)[0] if refused else b""
    if 200 <= status < 300:
        return
    problem = f"HTTP {status}"
    error = retry.answer_error(status, problem, retry_after)
    if error is not None:
        raise error
    said = _answer(start.decode("utf-8", "replace"), url)
    raise NotificationFailed(
        f"the notification receiver {settings.receiver} answered {problem}"
        + (f" ({said})" if said else "")
        + f": not sent; check {NOTIFY_URL} (a revoked or mistyped webhook URL is refused); "
        "the next run posts it again"
    )


def _answer(text: str, url: str) -> str:
    """The receiver's answer, short, with nothing of its URL past the host, in any form."""
    parts = parse_url(url)
    for part in sorted({url, parts.path or "", parts.query or ""}, key=len, reverse=True):
        if len(part) > 1:
            text = redact_secret(text, part)
    return stored_error(" ".join(text.split()), ANSWER_CHARS) or ""

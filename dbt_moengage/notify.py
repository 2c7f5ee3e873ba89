"""Notifications on a change: after a sync, one post to MOENGAGE_NOTIFY_URL when cohorts
changed state.

Each cohort's outcome (synced, failed, guarded) is compared with the status the last
notification announced for it (moengage_notifications, in the state). A failure is news
once (the first after a success, or a first run failing), as are a guard tripping and a
recovery; a run that changes nothing posts nothing, so two failed runs in a row post once.
A cohort that did not sync is a failure whatever stopped it: its model failed in dbt, its
config is invalid (announced under the cohort_id it would sync, see `invalid_cohorts`), its
destination was down. Each change says how the cohort's previous run ended (`previous`,
from moengage_sync_runs). Besides changes of status, a cohort that synced with its model's
size moved by more than its `alert_change_fraction` since its last successful run is news
(`size_changed`), every time it happens; it is not recorded, so a post of it that failed
is not made again.
A run's changes go out in one post: Slack incoming-webhook JSON (`text`), with the same
facts as fields for other receivers (`cohorts`). The announced statuses are recorded only
once the receiver accepted the post, so a post that failed is made again by the next run.
A post that fails is a warning, never a failed sync; its retries follow the runner's one
policy (retry.py) on a small budget, which is also the post's wall-clock deadline
(deadline.py): a receiver that trickles its answer cannot hold the run past it, and a stop
(SIGINT, SIGTERM) cuts the post off at once. Dry runs never notify (the pipeline does not call
this).

The URL carries the receiver's secret (a Slack webhook's path is its credential): it is
held as a `Secret`, and shown as scheme://host only.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from dataclasses import replace as with_fields
from typing import Any

import requests
from urllib3.util import parse_url

from . import __version__, retry
from .client import read_start
from .cohorts import DEFAULT_ALERT_CHANGE_FRACTION
from .deadline import DeadlineAdapter, within
from .errors import (
    Interrupted,
    NotificationFailed,
    SettingsError,
    TransientError,
    WarehouseError,
)
from .interrupt import when_stopped
from .manifest import ModelNode
from .report import FAILED, GUARDED, INVALID, SKIPPED, SYNCED, CohortResult, RunReport
from .report.progress import Progress
from .settings import Secret
from .state import StateKey, StateStore
from .state.history import RunRecord, StateHistory
from .urls import check_url, origin
from .warehouse.redact import redact_secret, stored_error

NOTIFY_URL = "MOENGAGE_NOTIFY_URL"
# A notification holds up no one: a few quick attempts, then the next run posts it again.
ATTEMPTS = 3
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 2.0
# The whole post's wall-clock deadline, attempts and waits included.
BUDGET_SECONDS = 10.0
CONNECT_TIMEOUT = 3.05
READ_TIMEOUT = 5.0
# An error quoted in a message: the cause fits; the run's report has it whole.
ERROR_CHARS = 500
ANSWER_CHARS = 200
# What a change is called in a message; the status recorded after a recovery is SYNCED.
RECOVERED = "recovered"
# A cohort that synced while its model's size moved past its alert_change_fraction.
SIZE_CHANGED = "size_changed"
WHAT_TO_DO = {
    FAILED: (
        "fix what the error names, then run the sync again: whatever MoEngage has not "
        "accepted is sent by the next run, nothing is lost"
    ),
    GUARDED: (
        "nothing was sent; check the model: if it is right, re-run with "
        "--allow-large-removal (or raise meta.moengage.max_remove_fraction); if not, "
        "fix the model first"
    ),
    RECOVERED: "nothing: the cohort syncs again",
    SIZE_CHANGED: (
        "check the model before a campaign uses the audience: if the change is right, nothing "
        "(raise meta.moengage.alert_change_fraction to be told less); if not, fix the model "
        "(in add mode the members it added stay in the segment: a mirror run removes them)"
    ),
}
# How the headline counts each event.
_VERBS = {SIZE_CHANGED: "changed size"}


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


# -- what changed --------------------------------------------------------------------------


def health(result: CohortResult) -> str | None:
    """What a cohort's outcome says of it: synced, failed or guarded; None when it says
    nothing (a dry run, an interrupted run, a model left out of the dbt invocation)."""
    if result.status in (SYNCED, GUARDED, FAILED):
        return result.status
    if result.status == INVALID or (result.status == SKIPPED and not result.unselected):
        # Refused or not sent (its model did not build, its destination failed): the
        # audience in MoEngage is not kept up to date, as when it fails.
        return FAILED
    return None


def announce(previous: str | None, current: str) -> bool:
    """Whether going from the status last announced to `current` is news.

    A failure or a guard is news once (a first run failing included); a success only after
    a failure or a guard (a recovery): with nothing announced before, there is nothing to
    say.
    """
    if current == previous:
        return False
    if current == SYNCED:
        return previous is not None
    return True


@dataclass(frozen=True)
class Past:
    """How a cohort stood before this run, from its run rows."""

    # How its previous run ended.
    status: str | None = None
    # Its model's distinct valid uids at its last successful run (RunRecord.model_uids).
    uids: int | None = None

    @classmethod
    def of(cls, last: RunRecord | None, synced: RunRecord | None) -> Past:
        """From the cohort's latest run and latest successful run before this one."""
        return cls(
            status=None if last is None else last.status,
            uids=None if synced is None else synced.model_uids,
        )


@dataclass(frozen=True)
class CohortChange:
    """One cohort whose status changed since the last notification, or whose model's size
    moved past its alert_change_fraction."""

    key: StateKey
    model: str
    cohort_id: str
    cohort_name: str | None
    status: str
    previous: str | None
    error: str | None
    # A size change: the model's distinct uids at the last success and now, and the share
    # that alerts.
    uids_before: int | None = None
    uids_now: int | None = None
    fraction: float | None = None

    @property
    def event(self) -> str:
        """failed, guarded, recovered or size_changed."""
        if self.uids_now is not None:
            return SIZE_CHANGED
        return RECOVERED if self.status == SYNCED else self.status

    @property
    def detail(self) -> str | None:
        """What the message says after the cohort: the error, or the size change."""
        if self.uids_now is None or self.uids_before is None:
            return self.error
        before, now = self.uids_before, self.uids_now
        moved = f"{(now - before) / before:+.0%}" if before else "from none"
        return (
            f"the model's distinct uids went from {before:,} to {now:,} ({moved}) since its "
            f"last successful run, more than alert_change_fraction = {self.fraction:g}"
        )

    @property
    def what_to_do(self) -> str:
        """The next step for whoever reads the message."""
        return WHAT_TO_DO[self.event]

    def fields(self) -> dict[str, Any]:
        """The change as the message's structured fields give it."""
        return {
            "model": self.model,
            "cohort_id": self.cohort_id,
            "cohort_name": self.cohort_name,
            "workspace_id": self.key.workspace_id,
            "event": self.event,
            "status": self.status,
            "previous": self.previous,
            "error": self.error,
            "uids_before": self.uids_before,
            "uids_now": self.uids_now,
            "what_to_do": self.what_to_do,
        }


def changes(
    results: list[tuple[CohortResult, StateKey]],
    announced: Mapping[StateKey, Mapping[str, str]],
    past: Mapping[tuple[StateKey, str], Past] | None = None,
    fractions: Mapping[str, float] | None = None,
) -> list[CohortChange]:
    """The cohorts whose status is news, given what was last announced per state key; and
    those that synced with their model's size moved past their fraction (by model, default
    DEFAULT_ALERT_CHANGE_FRACTION) since their last successful run (`past`, per key and
    cohort id). `previous` is how the cohort's previous run ended; the status last
    announced when there is no such row, or when that row synced but a failure was
    announced since (a failure that writes no row: an invalid config)."""
    found = []
    for result, key in results:
        current = health(result)
        if current is None or result.cohort_id is None:
            continue
        was = (past or {}).get((key, result.cohort_id), Past())
        last_announced = announced.get(key, {}).get(result.cohort_id)
        previous = was.status
        if previous in (None, SYNCED) and last_announced not in (None, SYNCED):
            # A failure that wrote no run row (an invalid config, a destination down)
            # came after the last row: the failure announced is the truer account.
            previous = last_announced
        change = CohortChange(
            key=key,
            model=result.model,
            cohort_id=result.cohort_id,
            cohort_name=result.cohort_name,
            status=current,
            previous=previous,
            error=None if current == SYNCED else stored_error(result.error, ERROR_CHARS),
        )
        if announce(last_announced, current):
            found.append(change)
        fraction = (fractions or {}).get(result.model, DEFAULT_ALERT_CHANGE_FRACTION)
        if current == SYNCED and was.uids is not None:
            now = result.uids_total
            if abs(now - was.uids) > fraction * was.uids:
                found.append(
                    with_fields(change, uids_before=was.uids, uids_now=now, fraction=fraction)
                )
    return found


def invalid_cohorts(
    results: Iterable[CohortResult],
    nodes: Mapping[str, ModelNode],
    key_of: Callable[[str | None], StateKey | None],
    history: StateHistory,
    taken: Collection[tuple[StateKey, str]],
) -> dict[str, tuple[StateKey, str]]:
    """model -> (state key, cohort_id) under which an invalid config's failure is announced.

    An invalid config has no cohort_id of its own: it is the one its meta names, if a
    non-blank string; else the cohort_id the model last ran as in the state (a misspelt
    `cohort_id` key); else the model's name (the default). The key is that of the meta's
    destination (a valid name with its settings set), else the default destination's. A
    cohort_id a valid cohort of this run syncs, that another model last ran as, or that two
    invalid configs would take, is not announced: its segment is someone else's, or nobody
    can say whose.
    """
    claims: dict[str, tuple[StateKey, str]] = {}
    latest: dict[StateKey, dict[str, RunRecord]] = {}
    for result in results:
        node = nodes.get(result.model)
        if result.status != INVALID or result.cohort_id is not None or node is None:
            continue
        meta: Mapping[str, Any] = node.meta if isinstance(node.meta, dict) else {}
        destination = meta.get("destination")
        key = key_of(destination.lower() if isinstance(destination, str) else None)
        key = key or key_of(None)
        if key is None:
            continue
        if key not in latest:
            latest[key] = history.last_runs(key)
        runs = latest[key]
        named = meta.get("cohort_id")
        if isinstance(named, str) and named.strip():
            cohort_id = named
        else:
            mine = [run for run in runs.values() if run.model == result.model]
            last = max(mine, key=lambda run: (run.started_at, run.run_id), default=None)
            cohort_id = result.model if last is None else last.cohort_id
        other = runs.get(cohort_id)
        if (key, cohort_id) in taken or (other is not None and other.model != result.model):
            continue
        claims[result.model] = (key, cohort_id)
    counts = Counter(claims.values())
    return {model: claim for model, claim in claims.items() if counts[claim] == 1}


def headline(found: list[CohortChange]) -> str:
    """`2 cohorts failed, 1 recovered`: the changes counted by what happened."""
    counts = Counter(change.event for change in found)
    parts: list[str] = []
    for event in (FAILED, GUARDED, RECOVERED, SIZE_CHANGED):
        if counts[event]:
            noun = "cohort" if counts[event] == 1 else "cohorts"
            verb = _VERBS.get(event, event)
            parts.append(
                f"{counts[event]} {noun} {verb}" if not parts else f"{counts[event]} {verb}"
            )
    return ", ".join(parts)


def message(found: list[CohortChange], run_id: str) -> dict[str, Any]:
    """The post's body: Slack's `text`, and `cohorts` for receivers that read fields."""
    lines = [f"*dbt-moengage*: {_slack(headline(found))} (run {_slack(run_id)})"]
    for change in found:
        was = f" (was {change.previous})" if change.previous else ""
        name = f" ({change.cohort_name})" if change.cohort_name else ""
        line = f"• {change.event}: model `{change.model}` -> cohort `{change.cohort_id}`{name}{was}"
        if change.detail:
            line += f": {change.detail}"
        lines.append(_slack(line))
        lines.append(_slack(f"    what to do: {change.what_to_do}"))
    return {
        "text": "\n".join(lines),
        "source": "dbt-moengage",
        "run_id": run_id,
        "cohorts": [change.fields() for change in found],
    }


def _slack(text: str) -> str:
    """Outside text as Slack shows it literally: `<`, `>` and `&` are its markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- the post ------------------------------------------------------------------------------


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
    with within(seconds) as deadline, when_stopped(stop, deadline.expire):
        try:
            # Not followed: a redirected POST turns into a GET, and may carry the secret away.
            with session.post(
                url,
                data=data,
                timeout=(settings.connect_timeout, settings.read_timeout),
                allow_redirects=False,
                stream=True,
            ) as response:
                status = response.status_code
                retry_after = response.headers.get("Retry-After")
                # Only the start of a refusal is read, to be shown; of an acceptance, nothing.
                refused = not 200 <= status < 300
                start = read_start(response, ANSWER_CHARS * 4)[0] if refused else b""
        except retry.NO_ANSWER as exc:
            if stop.is_set():
                raise Interrupted("the run was interrupted") from None
            if deadline.expired:
                raise TransientError(
                    f"no complete answer within {settings.budget_seconds:g} s"
                ) from None
            # requests' messages quote the URL: only the type is shown.
            raise TransientError(type(exc).__name__) from None
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


# -- after a sync --------------------------------------------------------------------------


def notify_changes(
    state: StateStore,
    report: RunReport,
    keys: Mapping[str, StateKey],
    settings: NotifySettings,
    progress: Progress,
    invalid: Mapping[str, tuple[StateKey, str]] | None = None,
    fractions: Mapping[str, float] | None = None,
    stop: threading.Event | None = None,
) -> list[CohortChange]:
    """Post the run's changes, then record them as announced; the changes announced.

    `keys` gives the state key of each model that was to sync, `invalid` the key and
    cohort_id of each invalid config (see `invalid_cohorts`); other results (a model
    refused before its destination was known) have no key and are not announced.
    `fractions` gives each model's alert_change_fraction; setting `stop` ends the post.
    """
    if report.dry_run:
        return []
    results: list[tuple[CohortResult, StateKey]] = []
    for r in report.results:
        if r.model in keys:
            results.append((r, keys[r.model]))
        elif r.cohort_id is None and r.model in (invalid or {}):
            key, cohort_id = (invalid or {})[r.model]
            results.append((with_fields(r, cohort_id=cohort_id), key))
    try:
        announced = {key: state.notified(key) for key in dict.fromkeys(k for _, k in results)}
        past = _past(state, report.run_id, [k for _, k in results])
    except WarehouseError as exc:
        _warn(
            report,
            progress,
            f"notifications: cannot read what was last announced ({exc}); nothing posted, "
            "the next run tries again",
        )
        return []
    found = changes(results, announced, past, fractions)
    if not found:
        return []
    try:
        post(settings, message(found, report.run_id), stop)
    except NotificationFailed as exc:
        _warn(report, progress, str(exc))
        return []
    progress.message(f"notified {settings.receiver}: {headline(found)}")
    try:
        for change in found:
            if change.event == SIZE_CHANGED:
                continue
            state.save_notified(
                change.key, change.cohort_id, change.model, change.status, report.run_id
            )
    except WarehouseError as exc:
        _warn(
            report,
            progress,
            f"notifications: posted, but recording them in the state failed ({exc}); the "
            "next run may announce the same change again",
        )
    return found


def _past(
    state: StateStore, run_id: str, keys: Iterable[StateKey]
) -> dict[tuple[StateKey, str], Past]:
    """(key, cohort_id) -> how the cohort stood before run `run_id`, from its run rows."""
    history = StateHistory(state.engine)
    found: dict[tuple[StateKey, str], Past] = {}
    for key in dict.fromkeys(keys):
        last, synced = history.before(key, run_id)
        for cohort_id in {*last, *synced}:
            found[(key, cohort_id)] = Past.of(last.get(cohort_id), synced.get(cohort_id))
    return found


def _warn(report: RunReport, progress: Progress, text: str) -> None:
    """Show a warning and keep it in the run's report (moengage_sync_results.json)."""
    report.warnings.append(text)
    progress.warning(text)


def notify_after_sync(
    state: StateStore,
    report: RunReport,
    keys: Mapping[str, StateKey],
    environ: Mapping[str, str],
    progress: Progress,
    invalid: Mapping[str, tuple[StateKey, str]] | None = None,
    fractions: Mapping[str, float] | None = None,
    stop: threading.Event | None = None,
) -> list[CohortChange]:
    """Notify when MOENGAGE_NOTIFY_URL is set; a URL that cannot be used is a warning."""
    try:
        settings = NotifySettings.from_env(environ)
    except SettingsError as exc:
        _warn(report, progress, f"{exc}; no notification sent")
        return []
    if settings is None:
        return []
    return notify_changes(state, report, keys, settings, progress, invalid, fractions, stop)


__all__ = [
    "NOTIFY_URL",
    "CohortChange",
    "NotifySettings",
    "Past",
    "announce",
    "changes",
    "health",
    "invalid_cohorts",
    "message",
    "notify_after_sync",
    "notify_changes",
    "post",
]

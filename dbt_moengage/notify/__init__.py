"""Notifications on a change: after a sync, one post to MOENGAGE_NOTIFY_URL when cohorts
changed state.

A cohort failing, a guard tripping, a recovery, and a model's size moving past the cohort's
`alert_change_fraction` are news, compared with what the last notification announced
(news.py); two failed runs in a row post once. A run's news goes out in one post, Slack
incoming-webhook JSON with the same facts as fields (body.py), under the runner's one retry
policy on a small budget that is also the post's wall-clock deadline (posting.py). What was
announced is recorded only once the receiver accepted the post, so a post that failed is
made again by the next run (after_sync.py). A post that fails is a warning, never a failed
sync; dry runs never notify. The URL carries the receiver's secret (a Slack webhook's path is
its credential): it is held as a `Secret`, and shown as scheme://host only.

    news.py         what is news: each cohort's outcome against what was last announced
    body.py         the post's body: Slack's `text`, and the changes as fields
    posting.py      NotifySettings (MOENGAGE_NOTIFY_URL checked) and the post itself
    after_sync.py   after a sync: the changes posted, then recorded as announced
"""

from __future__ import annotations

from .after_sync import notify_after_sync, notify_changes
from .body import headline, message
from .news import (
    RECOVERED,
    SIZE_CHANGED,
    WHAT_TO_DO,
    CohortChange,
    Past,
    announce,
    changes,
    health,
    invalid_cohorts,
)
from .posting import (
    ATTEMPTS,
    BACKOFF_INITIAL,
    BACKOFF_MAX,
    BUDGET_SECONDS,
    CONNECT_TIMEOUT,
    NOTIFY_URL,
    READ_TIMEOUT,
    NotifySettings,
    check_notify_url,
    post,
)

__all__ = [
    "ATTEMPTS",
    "BACKOFF_INITIAL",
    "BACKOFF_MAX",
    "BUDGET_SECONDS",
    "CONNECT_TIMEOUT",
    "NOTIFY_URL",
    "READ_TIMEOUT",
    "RECOVERED",
    "SIZE_CHANGED",
    "WHAT_TO_DO",
    "CohortChange",
    "NotifySettings",
    "Past",
    "announce",
    "changes",
    "check_notify_url",
    "headline",
    "health",
    "invalid_cohorts",
    "message",
    "notify_after_sync",
    "notify_changes",
    "post",
]

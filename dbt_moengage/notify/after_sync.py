"""After a sync: the run's changes posted in one message, then recorded as announced.

The announced statuses are recorded (moengage_notifications, in the state) only once the
receiver accepted the post, so a post that failed is made again by the next run; a size
change is not recorded, so a post of it that failed is not made again. Dry runs never
notify (the pipeline does not call this).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace as with_fields

from ..errors import NotificationFailed, SettingsError, WarehouseError
from ..report import CohortResult, RunReport
from ..report.progress import Progress
from ..state import StateKey, StateStore
from ..state.history import StateHistory
from .body import headline, message
from .news import SIZE_CHANGED, CohortChange, Past, changes
from .posting import NotifySettings, post


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

"""What is news: each cohort's outcome against what the last notification announced.

A failure is news once (the first after a success, or a first run failing), as are a guard
tripping and a recovery; a run that changes nothing posts nothing, so two failed runs in a
row post once. A cohort that did not sync is a failure whatever stopped it: its model failed
in dbt, its config is invalid (announced under the cohort_id it would sync, see
`invalid_cohorts`), its destination was down. Each change says how the cohort's previous run
ended (`previous`, from moengage_sync_runs). Besides changes of status, a cohort that synced
with its model's size moved by more than its `alert_change_fraction` since its last
successful run is news (`size_changed`), every time it happens.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from dataclasses import replace as with_fields
from typing import Any

from ..cohorts import DEFAULT_ALERT_CHANGE_FRACTION
from ..manifest import ModelNode
from ..report import FAILED, GUARDED, INVALID, SKIPPED, SYNCED, CohortResult
from ..state import StateKey
from ..state.history import RunRecord, StateHistory
from ..warehouse.redact import stored_error

# An error quoted in a message: the cause fits; the run's report has it whole.
ERROR_CHARS = 500
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

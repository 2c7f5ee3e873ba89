"""Every status the runner writes to moengage_sync_runs, for the e2e tests that then build the
dbt package's views and run its tests over that state, one engine each (DuckDB in
e2e/test_state.py, Postgres in e2e/test_postgres_package.py, fakesnow in
e2e/test_snowflake_package.py): the package must accept every row the runner can leave."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from dbt_moengage.report import RUN_STATUSES, RUNNING, SYNCED
from dbt_moengage.state import RunRow, StateKey, StateStore
from dbt_moengage.warehouse.engine import Engine

KEY = StateKey("https://api-01.moengage.com", "WS_RUN_STATUSES")
STARTED = datetime(2026, 1, 5, 9, 0, 0)
# The package's tests that read the statuses (models/moengage/moengage.yml).
STATUS_TESTS = (
    "moengage_sync_history_status_is_a_run_status",
    "moengage_cohort_status_last_run_status_is_a_run_status",
)
# The package's models and tests alone: integration_tests' own tests expect other state.
DBT_BUILD = [
    "build",
    "--select",
    "package:moengage",
    "--exclude",
    "package:moengage_integration_tests",
]


def write_every_run_status(engine: Engine) -> None:
    """Through the runner's StateStore (its DDL, its save_run): one run row per status it
    writes, each the latest run of a cohort of its own, so both views show every status."""
    store = StateStore(engine)
    assert store.prepare(create=True).ready
    for status in RUN_STATUSES:
        done = status != RUNNING
        row = RunRow(
            run_id="run-statuses",
            endpoint=KEY.endpoint,
            workspace_id=KEY.workspace_id,
            cohort_id=f"cohort_{status}",
            model=f"model_{status}",
            mode="add",
            full_refresh=False,
            started_at=STARTED,
            finished_at=STARTED + timedelta(seconds=30) if done else None,
            status=status,
            error=None if status in (RUNNING, SYNCED) else f"the run ended {status}",
        )
        store.save_run(row)


def check_package_results(results: list[dict[str, Any]]) -> None:
    """dbt's run_results: each of the package's views built and each of its tests passed, the
    status tests included; none warned (the package's tests warn rather than fail)."""
    package = {r["unique_id"]: r for r in results if r["unique_id"].split(".")[1] == "moengage"}
    tests = {uid.split(".")[2] for uid in package if uid.startswith("test.")}
    assert set(STATUS_TESTS) <= tests, sorted(tests)
    not_passed = {
        uid: (r["status"], r["message"])
        for uid, r in package.items()
        if r["status"] not in ("success", "pass")
    }
    assert not not_passed, not_passed


def statuses_shown(
    query: Callable[[str], list[tuple[Any, ...]]], schema: str
) -> dict[str, set[str]]:
    """The statuses each view shows for KEY's workspace: every one of RUN_STATUSES."""
    columns = {"moengage_sync_history": "status", "moengage_cohort_status": "last_run_status"}
    return {
        view: {
            str(status)
            for (status,) in query(
                f"select {column} from {schema}.{view} where workspace_id = '{KEY.workspace_id}'"
            )
        }
        for view, column in columns.items()
    }


EVERY_STATUS = {
    "moengage_sync_history": set(RUN_STATUSES),
    "moengage_cohort_status": set(RUN_STATUSES),
}

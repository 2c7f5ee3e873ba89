"""A destination's cohorts in one run (pipeline.sync_destination), against servers on 127.0.0.1:
a destination that is down (trickling its answers, or answering 503) spends one retry budget
for the whole run, its other cohorts are not attempted, and another destination still syncs."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from dbt_moengage.cohorts import CohortSpec
from dbt_moengage.pipeline import SyncOptions, sync_destination
from dbt_moengage.report import FAILED, SKIPPED, SYNCED, CohortResult, RunReport
from dbt_moengage.report.progress import Progress
from dbt_moengage.settings import MoEngageSettings, Secret
from dbt_moengage.state import StateStore
from dbt_moengage.testing.emulator import Emulator, EmulatorConfig
from dbt_moengage.warehouse.duckdb import DuckDBWarehouse

from ..slow_server import RawServer, answer

WORKSPACE = "WS_DOWN"
KEY = "sk-down-test-key"
BUDGET, DEADLINE = 3.0, 1.0
DOWN_COHORTS = [f"down_{n}" for n in range(1, 6)]
# Planning a cohort on DuckDB and the threads starting: small next to the budget.
SLACK = 1.5


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[DuckDBWarehouse]:
    path = tmp_path / "audiences.duckdb"
    with duckdb.connect(str(path)) as conn:
        for table in [*DOWN_COHORTS, "healthy"]:
            conn.execute(f"create table main.{table} as select 'u-' || range as uid from range(30)")
    engine = DuckDBWarehouse(str(path))
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    config = EmulatorConfig(workspace_id=WORKSPACE, api_key=KEY, rate_limit_per_min=None)
    with Emulator(config) as server:
        yield server


def spec(warehouse: DuckDBWarehouse, table: str, destination: str | None) -> CohortSpec:
    return CohortSpec(
        model=table,
        unique_id=f"model.unit.{table}",
        relation_name=f'"{Path(warehouse.path).stem}"."main"."{table}"',
        cohort_name=table.replace("_", " ").title(),
        cohort_id=table,
        description="destination test",
        uid_column="uid",
        destination=destination,
    )


def settings(base_url: str) -> MoEngageSettings:
    return MoEngageSettings(
        workspace_id=WORKSPACE,
        api_key=Secret(KEY),
        base_url=base_url,
        # Attempts never run out first: the budget is what ends the retries.
        max_attempts=1_000,
        backoff_initial=0.05,
        backoff_max=0.2,
        timeout_seconds=30.0,
        request_deadline_seconds=DEADLINE,
        retry_budget_seconds=BUDGET,
        lock_wait_seconds=5.0,
    )


def sync_both(
    warehouse: DuckDBWarehouse, down_url: str, healthy_url: str
) -> tuple[list[CohortResult], float, list[CohortResult]]:
    """Both destinations side by side, as run_sync has them: (results, seconds) of the one
    that is down, and the healthy one's results."""
    state = StateStore(warehouse)
    assert state.prepare(create=True).ready
    options = SyncOptions()
    run_id, stop = uuid.uuid4().hex, threading.Event()

    def down() -> tuple[list[CohortResult], float]:
        specs = [spec(warehouse, table, None) for table in DOWN_COHORTS]
        started = time.monotonic()
        results = sync_destination(
            specs, settings(down_url), warehouse, state, options, run_id, Progress(), stop
        )
        return results, time.monotonic() - started

    def healthy() -> list[CohortResult]:
        specs = [spec(warehouse, "healthy", "other")]
        return sync_destination(
            specs, settings(healthy_url), warehouse, state, options, run_id, Progress(), stop
        )

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.submit(down), pool.submit(healthy)
        results, seconds = first.result(timeout=120)
        return results, seconds, second.result(timeout=120)


def sent_cohorts(server: RawServer) -> set[str]:
    """The cohort_id of every request the server got."""
    found = set()
    for request in server.received():
        for cohort_id in DOWN_COHORTS:
            if f'"cohort_id":"{cohort_id}"'.encode() in request.replace(b" ", b""):
                found.add(cohort_id)
    return found


def down_server(kind: str) -> RawServer:
    """A server that trickles its answers (a byte every 0.3 s), or answers 503 at once."""
    if kind == "trickling":
        return RawServer(answer("200 OK"), gap=0.3)
    return RawServer(answer("503 Service Unavailable", b'{"status": "fail"}'))


@pytest.mark.parametrize("kind", ["trickling", "503"])
def test_a_destination_that_is_down_fails_once_not_once_per_cohort(
    warehouse: DuckDBWarehouse, emulator: Emulator, kind: str
) -> None:
    with down_server(kind) as server:
        results, seconds, healthy = sync_both(warehouse, server.url, emulator.url)
    # One budget and at most one deadline for the whole destination, not one per cohort.
    assert seconds < BUDGET + DEADLINE + SLACK
    assert [r.model for r in results] == DOWN_COHORTS
    first, rest = results[0], results[1:]
    assert first.status == FAILED and first.requests >= 2
    assert "MOENGAGE_RETRY_BUDGET_SECONDS" in (first.error or "")
    for result in rest:
        assert result.status == SKIPPED and result.requests == 0
        error = result.error or ""
        assert error.startswith("not attempted: 127.0.0.1:")
        assert "retry budget" in error and "MOENGAGE_RETRY_BUDGET_SECONDS" in error
        last = "no complete answer" if server.gap else "HTTP 503"
        assert f"last error: {last}" in error
    # The summary an orchestrator logs names each cohort not attempted, and why.
    report = RunReport(run_id="r", started_at="", dry_run=False, results=[*results, *healthy])
    assert report.exit_code == 1
    lines = report.failure_summary().splitlines()
    assert [line.split(": ")[:3] for line in lines[1:]] == [
        [model, "skipped", "not attempted"] for model in DOWN_COHORTS[1:]
    ]
    # Nothing was sent for cohorts 2..5.
    assert sent_cohorts(server) == {"down_1"}
    assert len(server.received()) == first.requests
    # The other destination has its own client, and synced.
    assert [r.status for r in healthy] == [SYNCED]
    assert emulator.members("healthy") == {f"u-{i}" for i in range(30)}


def test_attempts_running_out_within_the_budget_fail_that_cohort_only(
    warehouse: DuckDBWarehouse,
) -> None:
    with RawServer(answer("503 Service Unavailable", b"{}")) as failing:
        state = StateStore(warehouse)
        assert state.prepare(create=True).ready
        specs = [spec(warehouse, table, None) for table in DOWN_COHORTS[:2]]
        few = replace(settings(failing.url), max_attempts=2, retry_budget_seconds=60.0)
        results = sync_destination(
            specs, few, warehouse, state, SyncOptions(), "run", Progress(), threading.Event()
        )
    # Each cohort failed on its own attempts; the destination was not taken as down.
    assert [r.status for r in results] == [FAILED, FAILED]
    assert [r.requests for r in results] == [2, 2]
    assert all("gave up after 2 attempts" in (r.error or "") for r in results)

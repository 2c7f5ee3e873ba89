"""Faults beyond the emulator's dice: a quota tighter than configured, budgets running out,
the warehouse connection dropping mid-stream. Each ends exact, or reported unsynced."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import duckdb
import pytest

from dbt_moengage.errors import WarehouseError
from dbt_moengage.pipeline import SyncOptions, run_sync
from dbt_moengage.testing.emulator import Emulator, EmulatorConfig, Faults
from dbt_moengage.warehouse.duckdb import DuckDBWarehouse

from ..conftest import API_KEY, COHORTS, WORKSPACE, BuiltProject, run_cli, sync_args, sync_env


def report(project: BuiltProject) -> dict[str, dict[str, Any]]:
    data = json.loads((project.target_dir / "moengage_sync_results.json").read_text())
    return {c["cohort_id"]: c for c in data["cohorts"]}


def assert_exact(project: BuiltProject, emulator: Emulator) -> None:
    for cohort_id in COHORTS:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id), cohort_id


@pytest.fixture
def tight_emulator() -> Iterator[Emulator]:
    """6 requests per 2-second window: far below the 300/min the client is told."""
    config = EmulatorConfig(
        workspace_id=WORKSPACE, api_key=API_KEY, rate_limit_per_min=6, window_seconds=2.0
    )
    with Emulator(config) as server:
        yield server


@pytest.mark.parametrize("retry_after", [True, False], ids=["retry-after", "bare-429"])
def test_quota_tighter_than_told(
    project: BuiltProject, tight_emulator: Emulator, retry_after: bool
) -> None:
    tight_emulator.set_faults(Faults(retry_after=retry_after))
    env = sync_env(
        project,
        tight_emulator,
        MOENGAGE_MAX_BODY_BYTES="8000",
        MOENGAGE_MAX_ATTEMPTS="30",
        MOENGAGE_RETRY_MAX_SECONDS="1",
    )
    done = run_cli(sync_args(project), env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_exact(project, tight_emulator)
    statuses = [r.status for r in tight_emulator.requests()]
    assert statuses.count(429) > 0
    assert sum(int(r["retries"]) for r in report(project).values()) == statuses.count(429)


def test_retry_budget_runs_out_and_nothing_is_lost(
    project: BuiltProject, emulator: Emulator
) -> None:
    emulator.set_faults(Faults(error_before_rate=1.0))
    env = sync_env(project, emulator, MOENGAGE_MAX_ATTEMPTS="3")
    done = run_cli(sync_args(project), env)
    assert done.returncode == 1
    assert "gave up after 3 attempts" in done.stdout
    for cohort_id, row in report(project).items():
        assert row["status"] == "failed"
        # Every uid is accounted for: none was accepted, all are reported unsynced.
        assert row["uids_unsynced"] == len(project.expected_members(cohort_id))
    emulator.set_faults(Faults())
    again = run_cli(sync_args(project), sync_env(project, emulator))
    assert again.returncode == 0
    assert_exact(project, emulator)


def test_warehouse_connection_lost_mid_stream(
    project: BuiltProject, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = sync_env(project, emulator, MOENGAGE_MAX_BODY_BYTES="2000")
    original = DuckDBWarehouse.stream

    def dropping(
        self: DuckDBWarehouse,
        name: str,
        params: Any,
        cohort: Any,
        extra: Mapping[str, str] = {},
        batch_rows: int = 0,
    ) -> Iterator[list[str]]:
        """The delta's first two pages, then the connection is gone."""
        for page, batch in enumerate(original(self, name, params, cohort, extra, 100)):
            if page == 2:
                raise WarehouseError("reading uids failed: Connection Error: connection was closed")
            yield batch

    monkeypatch.setattr(DuckDBWarehouse, "stream", dropping)
    options = SyncOptions(
        project_dir=project.project_dir, profiles_dir=project.project_dir, environ=env
    )
    broken = run_sync(options)
    assert broken.exit_code == 1
    failed = [r for r in broken.results if r.status == "failed"]
    assert failed and all("connection was closed" in (r.error or "") for r in failed)
    partial = {r.cohort_id: r.added for r in broken.results}
    # What MoEngage accepted before the loss was checkpointed...
    with duckdb.connect(str(project.database), read_only=True) as conn:
        for cohort_id, added in partial.items():
            (count,) = conn.execute(
                "select count(*) from main.moengage_cohort_members where cohort_id = ?",
                [cohort_id],
            ).fetchone() or (0,)
            assert count == added, cohort_id
    monkeypatch.undo()

    # ...so the re-run sends only the rest, and ends exact.
    before = sum(emulator.delivered(c) for c in COHORTS)
    done = run_cli(sync_args(project), env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_exact(project, emulator)
    total = sum(len(project.expected_members(c)) for c in COHORTS)
    assert sum(emulator.delivered(c) for c in COHORTS) - before == total - sum(partial.values())

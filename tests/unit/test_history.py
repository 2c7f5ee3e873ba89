"""state/history: the sync state read back (members, last runs, run history) on DuckDB,
read only, and the members over time, worked back where older runs kept no count."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import fakesnow
import pytest
import snowflake.connector

from dbt_moengage.cohorts import CohortSpec
from dbt_moengage.state import RunRow, utcnow
from dbt_moengage.state.history import RunRecord, StateHistory, members_over_time
from dbt_moengage.state.schema import MEMBERS, RUNS, StateKey
from dbt_moengage.warehouse.duckdb import DuckDBWarehouse
from dbt_moengage.warehouse.engine import Engine
from dbt_moengage.warehouse.snowflake import SnowflakeWarehouse

from ..state_helpers import store

KEY = StateKey("http://127.0.0.1:8765", "WS_HISTORY")
OTHER = StateKey("https://api-01.moengage.com", "WS_HISTORY")
T0 = datetime(2026, 11, 1, 6, 0)


def record(
    n: int,
    added: int = 0,
    removed: int = 0,
    members_after: int | None = None,
    full_refresh: bool = False,
    status: str = "synced",
) -> RunRecord:
    return RunRecord(
        run_id=f"run-{n}",
        cohort_id="aud",
        model="aud",
        mode="mirror",
        full_refresh=full_refresh,
        started_at=T0 + timedelta(days=n),
        finished_at=T0 + timedelta(days=n, minutes=1),
        status=status,
        added=added,
        removed=removed,
        resent=0,
        requests=1,
        retries=0,
        error=None,
        members_after=members_after,
    )


def counts(points: list) -> list[tuple[int | None, bool]]:
    return [(p.members, p.estimated) for p in points]


def test_recorded_counts_are_used_as_they_are() -> None:
    runs = [record(1, 10, 0, 10), record(2, 5, 2, 13), record(3, 0, 0, 13)]
    assert counts(members_over_time(runs, 13)) == [(10, False), (13, False), (13, False)]


def test_runs_before_the_upgrade_are_worked_back_from_adds_and_removes() -> None:
    # Runs 1-3 from before members_after; run 4 recorded 20 after adding 6 and removing 1.
    runs = [record(1, 10), record(2, 8, 3), record(3, 0, 0), record(4, 6, 1, 20)]
    assert counts(members_over_time(runs, 20)) == [
        (10, True),
        (15, True),
        (15, True),
        (20, False),
    ]


def test_no_count_recorded_at_all_ends_at_the_current_members() -> None:
    runs = [record(1, 7), record(2, 3, 1, status="failed"), record(3, 2)]
    assert counts(members_over_time(runs, 11)) == [(7, True), (9, True), (11, False)]


def test_a_full_refresh_hides_what_came_before_it() -> None:
    runs = [record(1, 50), record(2, 30, 0, full_refresh=True), record(3, 2)]
    assert counts(members_over_time(runs, 32)) == [(None, False), (30, True), (32, False)]
    # ... unless a run before it recorded its count.
    runs[0] = record(1, 50, 0, 50)
    assert counts(members_over_time(runs, 32))[0] == (50, False)


# -- reading the state: DuckDB, and Snowflake (fakesnow) --------------------------------


def run_row(
    run_id: str, cohort_id: str, started: datetime, status: str, key: StateKey = KEY, **more: object
) -> RunRow:
    row = RunRow(
        run_id=run_id,
        endpoint=key.endpoint,
        workspace_id=key.workspace_id,
        cohort_id=cohort_id,
        model=cohort_id,
        mode="add",
        full_refresh=False,
        started_at=started,
        finished_at=started + timedelta(seconds=5),
        status=status,
    )
    for name, value in more.items():
        setattr(row, name, value)
    return row


def cohort(cohort_id: str) -> CohortSpec:
    return CohortSpec(
        model=cohort_id,
        unique_id=f"model.unit.{cohort_id}",
        relation_name=f"main.{cohort_id}",
        cohort_name=cohort_id.title(),
        cohort_id=cohort_id,
        description="",
        uid_column="uid",
    )


def seed(engine: Engine) -> None:
    """Two cohorts under KEY (one last failed), one under another endpoint."""
    state = store(engine)
    assert state.prepare(create=True).ready
    state.record_added(cohort("aud"), KEY, ["a", "b", "c"], "r1")
    state.record_added(cohort("other"), KEY, ["x"], "r1")
    state.record_added(cohort("aud"), OTHER, [f"p{i}" for i in range(9)], "p1")
    start = utcnow() - timedelta(hours=3)
    for row in (
        run_row("r1", "aud", start, "synced", added=3, members_after=3),
        run_row("r2", "aud", start + timedelta(hours=1), "synced", members_after=3),
        run_row("r3", "aud", start + timedelta(hours=2), "failed", error="HTTP 413"),
        run_row("r1", "other", start, "synced", added=1, members_after=1),
        run_row("p1", "aud", start, "synced", key=OTHER, added=9, members_after=9),
    ):
        state.save_run(row)


def check_seeded(history: StateHistory) -> None:
    assert history.exists and history.keeps_members_after
    assert history.member_count(KEY, "aud") == 3
    assert history.member_count(OTHER, "aud") == 9
    assert history.member_count(KEY, "nobody") == 0
    last = history.last_runs(KEY)
    assert {cid: r.run_id for cid, r in last.items()} == {"aud": "r3", "other": "r1"}
    assert last["aud"].status == "failed" and last["aud"].error == "HTTP 413"
    assert last["aud"].members_after is None
    assert last["other"].added == 1 and last["other"].members_after == 1
    successes = history.last_successes(KEY)
    assert set(successes) == {"aud", "other"}
    assert successes["aud"] < last["aud"].started_at
    runs = history.runs(KEY, limit=2)
    assert [r.run_id for r in runs["aud"]] == ["r2", "r3"]  # the latest two, oldest first
    assert [r.members_after for r in history.runs(KEY, limit=10)["aud"]] == [3, 3, None]
    # How things stood before a run (for its notification): that run left out.
    last, synced = history.before(KEY, "r3")
    assert (last["aud"].run_id, synced["aud"].run_id) == ("r2", "r2")
    last, synced = history.before(KEY, "r2")
    assert (last["aud"].run_id, synced["aud"].run_id) == ("r3", "r1")
    assert synced["aud"].model_uids == 3 and last["aud"].model_uids is None
    assert history.keys() == {KEY: 2, OTHER: 1}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "state.duckdb"
    duckdb.connect(str(path)).close()
    return path


def test_reads_members_last_runs_and_history_per_key(db: Path) -> None:
    with DuckDBWarehouse(str(db)) as warehouse:
        seed(warehouse)
    with DuckDBWarehouse(str(db), read_only=True) as warehouse:
        check_seeded(StateHistory(warehouse))


def test_reads_the_same_on_snowflake() -> None:
    with fakesnow.patch():

        def session() -> Any:
            return snowflake.connector.connect(
                database="DB", schema="ANALYTICS", paramstyle="qmark"
            )

        with SnowflakeWarehouse(session(), "DB", "moengage_state", opener=session) as warehouse:
            seed(warehouse)
            check_seeded(StateHistory(warehouse))


def test_state_before_members_after_reads_it_as_null(db: Path) -> None:
    with DuckDBWarehouse(str(db)) as warehouse:
        seed(warehouse)
    with duckdb.connect(str(db)) as conn:
        conn.execute(f"alter table main.{RUNS} drop column members_after")
    with DuckDBWarehouse(str(db), read_only=True) as warehouse:
        history = StateHistory(warehouse)
        assert history.exists and not history.keeps_members_after
        assert history.last_runs(KEY)["other"].members_after is None
        assert all(r.members_after is None for r in history.runs(KEY, 10)["aud"])


def test_missing_state_reads_as_nothing_synced_and_creates_nothing(db: Path) -> None:
    with DuckDBWarehouse(str(db), read_only=True) as warehouse:
        history = StateHistory(warehouse)
        assert not history.exists
        assert history.member_count(KEY, "aud") == 0
        assert history.last_runs(KEY) == {}
        assert history.last_successes(KEY) == {}
        assert history.runs(KEY, 10) == {}
    with duckdb.connect(str(db), read_only=True) as conn:
        tables = conn.execute("select table_name from information_schema.tables").fetchall()
    assert (MEMBERS,) not in tables
    assert tables == []


def test_a_synced_runs_model_size_is_its_members_after_less_those_kept_in_add_mode() -> None:
    mirror = record(1, added=5, members_after=40)
    assert mirror.model_uids == 40
    kept = replace(mirror, mode="add", left_but_kept=15)
    assert kept.model_uids == 25
    assert record(2, members_after=None).model_uids is None  # state before version 3
    assert record(3, members_after=40, status="failed").model_uids is None


def test_members_still_count_when_the_runs_table_is_gone(db: Path) -> None:
    with DuckDBWarehouse(str(db)) as warehouse:
        seed(warehouse)
    with duckdb.connect(str(db)) as conn:
        conn.execute(f"drop table main.{RUNS}")
    with DuckDBWarehouse(str(db), read_only=True) as warehouse:
        history = StateHistory(warehouse)
        assert history.has_members and not history.has_runs and not history.exists
        assert history.member_count(KEY, "aud") == 3
        assert history.last_runs(KEY) == {} and history.last_successes(KEY) == {}
        assert history.keys() == {} and history.before(KEY, "r3") == ({}, {})

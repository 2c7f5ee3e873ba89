"""End to end: the sync state in the warehouse (deltas, mirror, full refresh, dry run, runs,
checkpoints, locks, state schema), with the runner as a subprocess against the emulator."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dbt_moengage.state import schema
from dbt_moengage.state.schema import LOCKS, MEMBERS, NOTIFICATIONS, RUNS, VERSION
from dbt_moengage.testing.emulator import Emulator, EmulatorConfig, Faults, RequestRecord
from dbt_moengage.warehouse.duckdb import DuckDBWarehouse

from ..conftest import (
    COHORTS,
    INTEGRATION,
    ROOT,
    WORKSPACE,
    BuiltProject,
    dbt,
    ok,
    results,
    run_cli,
    sync,
    sync_args,
    sync_env,
)
from ..run_status_rows import (
    DBT_BUILD,
    EVERY_STATUS,
    check_package_results,
    statuses_shown,
    write_every_run_status,
)

STATE_TABLES = set(schema.STATE_TABLES)

OTHER_WORKSPACE = "WS_E2E_OTHER"
OTHER_API_KEY = "sk-e2e-other-0a1b2c3d4e5f-do-not-print"


# -- helpers -------------------------------------------------------------------------------


def query(project: BuiltProject, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run SQL on the per-test database; the connection is closed before returning."""
    with duckdb.connect(str(project.database)) as conn:
        return conn.execute(sql, list(params)).fetchall()


def state_uids(
    project: BuiltProject, cohort_id: str, workspace: str = WORKSPACE, schema: str = "main"
) -> list[str]:
    """The uids the state says MoEngage holds, one per row (duplicates kept)."""
    rows = query(
        project,
        f'select uid from "{schema}".{MEMBERS} where workspace_id = ? and cohort_id = ?',
        (workspace, cohort_id),
    )
    return sorted(uid for (uid,) in rows)


def table_names(project: BuiltProject, schema: str) -> set[str]:
    """Tables (lower case) in one schema of the per-test database."""
    rows = query(
        project,
        "select lower(table_name) from information_schema.tables where table_schema = ?",
        (schema,),
    )
    return {name for (name,) in rows}


def count_rows(project: BuiltProject, table: str) -> int:
    """Rows in a state table of schema main."""
    return int(query(project, f"select count(*) from main.{table}")[0][0])


def run_rows(project: BuiltProject) -> list[dict[str, Any]]:
    """moengage_sync_runs as dicts, oldest first."""
    with duckdb.connect(str(project.database)) as conn:
        cursor = conn.execute(f"select * from main.{RUNS} order by started_at, cohort_id")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def remove_rows(project: BuiltProject, cohort_id: str, count: int) -> set[str]:
    """Delete the rows of `count` distinct uids from the cohort's model; return those uids."""
    table, column = COHORTS[cohort_id]
    text = f'cast("{column}" as varchar)'
    rows = query(
        project,
        f'select distinct {text} from main.{table} where "{column}" is not null '
        f"order by 1 limit {count}",
    )
    uids = {uid for (uid,) in rows}
    assert len(uids) == count
    query(
        project,
        f"delete from main.{table} where {text} in (select unnest(?::varchar[]))",
        (sorted(uids),),
    )
    return uids


def add_rows(project: BuiltProject, cohort_id: str, uids: Sequence[str | int]) -> None:
    """Insert rows holding only a uid into the cohort's model."""
    table, column = COHORTS[cohort_id]
    with duckdb.connect(str(project.database)) as conn:
        conn.executemany(f'insert into main.{table} ("{column}") values (?)', [[u] for u in uids])


def set_mode(project: BuiltProject, model: str, mode: str) -> None:
    """Change a model's meta.moengage.mode in the copied manifest, as a user's config would."""
    path = project.target_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    node = manifest["nodes"][f"model.moengage_integration_tests.{model}"]
    for meta in (node["config"].get("meta") or {}, node.get("meta") or {}):
        if "moengage" in meta:
            meta["moengage"]["mode"] = mode
    path.write_text(json.dumps(manifest))


def sent(records: Sequence[RequestRecord], action: str, cohort_id: str | None = None) -> int:
    """Uids carried by accepted requests of one action (and cohort)."""
    return sum(
        r.members
        for r in records
        if r.status == 200 and r.action == action and cohort_id in (None, r.cohort_id)
    )


def fault_after(emulator: Emulator, count: int, faults: Faults) -> threading.Thread:
    """Set `faults` once the emulator has seen `count` requests."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while len(emulator.requests()) < count and time.monotonic() < deadline:
            time.sleep(0.002)
        emulator.set_faults(faults)

    thread = threading.Thread(target=watch, name="fault-after", daemon=True)
    thread.start()
    return thread


HIGH = "high_value_users"
ENTERPRISE = "enterprise_accounts"
ACTIVE = "recently_active_30d"


# -- 1, 2: deltas --------------------------------------------------------------------------


def test_unchanged_rerun_sends_nothing(project: BuiltProject, emulator: Emulator) -> None:
    first = sync(project, emulator)
    assert first.returncode == 0, ok(first)
    before = len(emulator.requests())
    assert before >= len(COHORTS)

    again = sync(project, emulator)
    assert again.returncode == 0, ok(again)
    assert len(emulator.requests()) == before
    report = results(project)
    assert set(report) == set(COHORTS)
    for cohort_id, row in report.items():
        assert row["status"] == "synced", row
        assert row["added"] == 0 and row["removed"] == 0
        assert row["requests"] == 0 and row["uids_sent"] == 0
        assert row["uids_total"] == len(project.expected_members(cohort_id))
        assert row["unchanged"] == row["uids_total"]
        assert emulator.members(cohort_id) == project.expected_members(cohort_id)


def test_new_rows_send_only_the_new_uids(project: BuiltProject, emulator: Emulator) -> None:
    select = ("--select", "high_value_users enterprise_accounts")
    first = sync(project, emulator, *select)
    assert first.returncode == 0, ok(first)
    before = len(emulator.requests())

    new_high = [f"e2e-new-{i:04d}" for i in range(7)]
    new_enterprise = [900_000_001, 900_000_002, 900_000_003]
    add_rows(project, HIGH, new_high)
    add_rows(project, ENTERPRISE, new_enterprise)
    done = sync(project, emulator, *select)
    assert done.returncode == 0, ok(done)

    new = emulator.requests()[before:]
    assert all(r.status == 200 and r.action == "add_members" for r in new)
    assert sent(new, "add_members", HIGH) == len(new_high)
    assert sent(new, "add_members", ENTERPRISE) == len(new_enterprise)
    report = results(project)
    assert report[HIGH]["added"] == len(new_high)
    assert report[ENTERPRISE]["added"] == len(new_enterprise)
    for cohort_id in (HIGH, ENTERPRISE):
        expected = project.expected_members(cohort_id)
        assert report[cohort_id]["unchanged"] == len(expected) - report[cohort_id]["added"]
        assert emulator.members(cohort_id) == expected
        assert state_uids(project, cohort_id) == sorted(expected)
    assert {str(u) for u in new_enterprise} <= emulator.members(ENTERPRISE)


# -- 3, 4: rows that leave the model -------------------------------------------------------


def test_mirror_removes_rows_that_left(project: BuiltProject, emulator: Emulator) -> None:
    set_mode(project, HIGH, "mirror")
    set_mode(project, ENTERPRISE, "mirror")
    select = ("--select", "high_value_users enterprise_accounts")
    first = sync(project, emulator, *select)
    assert first.returncode == 0, ok(first)
    before = len(emulator.requests())

    gone = {HIGH: remove_rows(project, HIGH, 9), ENTERPRISE: remove_rows(project, ENTERPRISE, 4)}
    done = sync(project, emulator, *select)
    assert done.returncode == 0, ok(done)

    new = emulator.requests()[before:]
    assert all(r.status == 200 and r.action == "remove_members" for r in new)
    report = results(project)
    for cohort_id, uids in gone.items():
        assert sent(new, "remove_members", cohort_id) == len(uids)
        expected = project.expected_members(cohort_id)
        assert not uids & expected
        assert emulator.members(cohort_id) == expected
        row = report[cohort_id]
        assert row["status"] == "synced" and row["mode"] == "mirror"
        assert row["removed"] == len(uids) and row["added"] == 0
        assert row["left_but_kept"] == 0
        state = state_uids(project, cohort_id)
        assert not uids & set(state)
        assert state == sorted(expected)


def test_add_mode_keeps_rows_that_left(project: BuiltProject, emulator: Emulator) -> None:
    first = sync(project, emulator, "--select", HIGH)
    assert first.returncode == 0, ok(first)
    gone = remove_rows(project, HIGH, 6)

    for _ in range(2):  # the second run still counts them and still sends nothing
        done = sync(project, emulator, "--select", HIGH)
        assert done.returncode == 0, ok(done)
        row = results(project)[HIGH]
        assert row["left_but_kept"] == len(gone)
        assert row["removed"] == 0 and row["added"] == 0 and row["requests"] == 0
    assert all(r.action != "remove_members" for r in emulator.requests())
    assert emulator.members(HIGH) == project.expected_members(HIGH) | gone


# -- 5: another workspace ------------------------------------------------------------------


def test_other_workspace_gets_everything(project: BuiltProject, emulator: Emulator) -> None:
    select = ("--select", "high_value_users enterprise_accounts")
    first = sync(project, emulator, *select)
    assert first.returncode == 0, ok(first)
    before = len(emulator.requests())

    config = EmulatorConfig(
        workspace_id=OTHER_WORKSPACE, api_key=OTHER_API_KEY, rate_limit_per_min=None
    )
    with Emulator(config) as other:
        env = sync_env(
            project,
            other,
            MOENGAGE_WORKSPACE_ID=OTHER_WORKSPACE,
            MOENGAGE_API_KEY=OTHER_API_KEY,
        )
        done = run_cli(sync_args(project, *select), env)
        assert done.returncode == 0, ok(done)
        report = results(project)
        for cohort_id in (HIGH, ENTERPRISE):
            expected = project.expected_members(cohort_id)
            assert other.members(cohort_id) == expected
            assert report[cohort_id]["added"] == len(expected)
            assert report[cohort_id]["unchanged"] == 0
            for workspace in (WORKSPACE, OTHER_WORKSPACE):
                assert state_uids(project, cohort_id, workspace) == sorted(expected)
    assert len(emulator.requests()) == before
    workspaces = query(project, f"select distinct workspace_id from main.{RUNS} order by 1")
    assert [w for (w,) in workspaces] == sorted([WORKSPACE, OTHER_WORKSPACE])


# -- 6: full refresh -----------------------------------------------------------------------


def test_full_refresh_resends_and_rebuilds_state(project: BuiltProject, emulator: Emulator) -> None:
    set_mode(project, HIGH, "mirror")
    select = ("--select", "high_value_users enterprise_accounts")
    first = sync(project, emulator, *select)
    assert first.returncode == 0, ok(first)
    delivered = {c: emulator.delivered(c) for c in (HIGH, ENTERPRISE)}
    gone = remove_rows(project, HIGH, 5)

    done = sync(project, emulator, *select, "--full-refresh")
    assert done.returncode == 0, ok(done)

    report = results(project)
    enterprise = project.expected_members(ENTERPRISE)
    assert emulator.delivered(ENTERPRISE) == 2 * delivered[ENTERPRISE] == 2 * len(enterprise)
    assert report[ENTERPRISE]["added"] == len(enterprise)
    assert report[ENTERPRISE]["unchanged"] == 0

    high = project.expected_members(HIGH)
    assert emulator.delivered(HIGH) == delivered[HIGH] + len(high)
    assert emulator.members(HIGH) == high
    assert report[HIGH]["added"] == len(high)
    assert report[HIGH]["removed"] == len(gone)
    assert emulator.delivered("messy_signups") == 0  # not selected

    for cohort_id, expected in ((HIGH, high), (ENTERPRISE, enterprise)):
        assert state_uids(project, cohort_id) == sorted(expected)
    runs = run_rows(project)
    assert [r["full_refresh"] for r in runs] == [False, False, True, True]


def test_add_mode_full_refresh_keeps_what_moengage_still_holds(
    project: BuiltProject, emulator: Emulator
) -> None:
    select = ("--select", HIGH)
    assert sync(project, emulator, *select).returncode == 0
    gone = remove_rows(project, HIGH, 3)

    dry = sync(project, emulator, *select, "--full-refresh", "--dry-run")
    assert dry.returncode == 0, ok(dry)
    high = project.expected_members(HIGH)
    assert results(project)[HIGH]["planned_add"] == len(high)

    done = sync(project, emulator, *select, "--full-refresh")
    assert done.returncode == 0, ok(done)
    report = results(project)[HIGH]
    assert report["added"] == len(high) and report["removed"] == 0
    assert report["left_but_kept"] == len(gone)
    # Add mode never removed them, so MoEngage holds them and so does the state.
    assert emulator.members(HIGH) == high | gone
    assert state_uids(project, HIGH) == sorted(high | gone)
    assert sent(emulator.requests(), "remove_members") == 0


# -- 7: dry run ----------------------------------------------------------------------------


def test_dry_run_plans_and_writes_nothing(project: BuiltProject, emulator: Emulator) -> None:
    set_mode(project, HIGH, "mirror")
    select = ("--select", "high_value_users enterprise_accounts")
    first = sync(project, emulator, *select)
    assert first.returncode == 0, ok(first)
    before = len(emulator.requests())
    add_rows(project, HIGH, ["e2e-dry-1", "e2e-dry-2", "e2e-dry-3"])
    add_rows(project, ENTERPRISE, [900_000_101, 900_000_102])
    gone_high = remove_rows(project, HIGH, 4)
    gone_enterprise = remove_rows(project, ENTERPRISE, 2)
    counts = {t: count_rows(project, t) for t in (MEMBERS, RUNS)}
    members_before = state_uids(project, HIGH)

    done = sync(project, emulator, *select, "--dry-run")
    assert done.returncode == 0, ok(done)

    assert len(emulator.requests()) == before
    assert {t: count_rows(project, t) for t in (MEMBERS, RUNS)} == counts
    assert state_uids(project, HIGH) == members_before
    report = results(project)
    high, enterprise = report[HIGH], report[ENTERPRISE]
    assert high["status"] == enterprise["status"] == "dry_run"
    assert high["planned_add"] == 3 and high["planned_remove"] == len(gone_high)
    assert high["left_but_kept"] == 0
    assert high["planned_requests"] == 2  # one add and one remove request
    assert enterprise["planned_add"] == 2 and enterprise["planned_remove"] == 0
    assert enterprise["left_but_kept"] == len(gone_enterprise)
    assert enterprise["planned_requests"] == 1
    for row in (high, enterprise):
        assert row["added"] == row["removed"] == row["requests"] == 0
        assert row["unchanged"] == row["uids_total"] - row["planned_add"]


def test_dry_run_on_fresh_database_creates_no_state(
    project: BuiltProject, emulator: Emulator
) -> None:
    # `dbt build` (with the dbt package's views) created no state table: the database is
    # as the runner first finds it.
    assert not table_names(project, "main") & STATE_TABLES

    for extra in ((), ("--state-schema", "fresh_state")):
        done = sync(project, emulator, "--dry-run", *extra)
        assert done.returncode == 0, ok(done)
        assert emulator.requests() == []
        assert not table_names(project, "main") & STATE_TABLES
        schemas = query(project, "select schema_name from information_schema.schemata")
        assert "fresh_state" not in {name for (name,) in schemas}
        for cohort_id, row in results(project).items():
            assert row["status"] == "dry_run"
            assert row["planned_add"] == len(project.expected_members(cohort_id))
            assert row["planned_remove"] == row["unchanged"] == 0


# -- 8: run history ------------------------------------------------------------------------


def test_run_rows_record_each_cohort(project: BuiltProject, emulator: Emulator) -> None:
    set_mode(project, HIGH, "mirror")
    select = ("--select", "high_value_users enterprise_accounts")
    first = sync(project, emulator, *select)
    assert first.returncode == 0, ok(first)
    gone = remove_rows(project, HIGH, 3)
    second = sync(project, emulator, *select)
    assert second.returncode == 0, ok(second)

    runs = run_rows(project)
    assert len(runs) == 4
    assert len({r["run_id"] for r in runs}) == 2
    assert all(r["workspace_id"] == WORKSPACE for r in runs)
    by_run: dict[str, dict[str, dict[str, Any]]] = {}
    for row in runs:
        by_run.setdefault(row["run_id"], {})[row["cohort_id"]] = row
    (one, two) = sorted(
        by_run.values(), key=lambda rows: min(r["started_at"] for r in rows.values())
    )
    for row in runs:
        assert row["status"] == "synced" and row["error"] is None
        assert row["finished_at"] is not None and row["finished_at"] >= row["started_at"]
    assert set(one) == set(two) == {HIGH, ENTERPRISE}
    assert one[HIGH]["requests"] == one[ENTERPRISE]["requests"] == 1
    assert one[HIGH]["added"] == len(project.expected_members(HIGH)) + len(gone)
    assert one[HIGH]["mode"] == "mirror" and one[ENTERPRISE]["mode"] == "add"
    assert one[ENTERPRISE]["added"] == len(project.expected_members(ENTERPRISE))
    assert (two[HIGH]["added"], two[HIGH]["removed"], two[HIGH]["requests"]) == (0, 3, 1)
    assert (two[ENTERPRISE]["added"], two[ENTERPRISE]["requests"]) == (0, 0)
    report = results(project)
    for cohort_id in (HIGH, ENTERPRISE):
        for key in ("added", "removed", "unchanged", "requests", "retries"):
            assert two[cohort_id][key] == report[cohort_id][key], (cohort_id, key)


def test_failed_cohort_gets_a_failed_row(project: BuiltProject, emulator: Emulator) -> None:
    # The whole of recently_active fits one request over the server's limit: a 413.
    emulator.config.max_body_bytes = 10_000
    done = sync(project, emulator, "--select", "recently_active enterprise_accounts")
    assert done.returncode == 1, ok(done)

    report = results(project)
    assert report[ACTIVE]["status"] == "failed"
    assert "413" in str(report[ACTIVE]["error"])
    assert report[ACTIVE]["uids_unsynced"] == len(project.expected_members(ACTIVE))
    assert report[ENTERPRISE]["status"] == "synced"
    rows = {r["cohort_id"]: r for r in run_rows(project)}
    assert set(rows) == {ACTIVE, ENTERPRISE}
    failed = rows[ACTIVE]
    assert failed["status"] == "failed"
    assert failed["error"] is not None and "413" in failed["error"]
    assert failed["finished_at"] is not None
    assert failed["requests"] == 1 and failed["added"] == 0
    assert rows[ENTERPRISE]["status"] == "synced" and rows[ENTERPRISE]["error"] is None
    # What was accepted before the failure (nothing here) is what the state holds.
    assert state_uids(project, ACTIVE) == sorted(emulator.members(ACTIVE))
    assert state_uids(project, ENTERPRISE) == sorted(project.expected_members(ENTERPRISE))


# -- 9: checkpoints ------------------------------------------------------------------------


def test_checkpoints_then_resume(project: BuiltProject, emulator: Emulator) -> None:
    # Slow answers keep the run going while the watcher turns every later request into a 503.
    emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=0.03))
    watcher = fault_after(emulator, 10, Faults(error_before_rate=1.0))
    env = {
        "MOENGAGE_MAX_BODY_BYTES": "1500",
        "MOENGAGE_MAX_ATTEMPTS": "2",
    }
    failed = sync(project, emulator, "--select", HIGH, **env)
    watcher.join(timeout=5)
    assert failed.returncode == 1, ok(failed)
    expected = project.expected_members(HIGH)
    first = emulator.requests()
    assert len(first) >= 10 and any(r.status == 503 for r in first)

    accepted = emulator.members(HIGH)
    assert 0 < len(accepted) < len(expected)
    assert len(accepted) == sent(first, "add_members", HIGH)
    state = state_uids(project, HIGH)
    assert state == sorted(accepted)
    row = results(project)[HIGH]
    assert row["status"] == "failed" and row["added"] == len(accepted)
    assert row["uids_unsynced"] == len(expected) - len(accepted)
    run = run_rows(project)[0]
    assert run["status"] == "failed" and run["added"] == len(accepted)
    assert run["error"] is not None and "503" in run["error"]

    emulator.set_faults(Faults())
    resumed = sync(project, emulator, "--select", HIGH, **env)
    assert resumed.returncode == 0, ok(resumed)
    new = emulator.requests()[len(first) :]
    assert all(r.status == 200 for r in new)
    assert sent(new, "add_members", HIGH) == len(expected) - len(accepted)
    assert emulator.delivered(HIGH) == len(expected)  # nothing sent twice
    assert emulator.members(HIGH) == expected
    assert state_uids(project, HIGH) == sorted(expected)
    assert results(project)[HIGH]["unchanged"] == len(accepted)


# -- 10: the database held by another process ----------------------------------------------


def test_waits_for_a_held_database(project: BuiltProject, emulator: Emulator) -> None:
    holder = duckdb.connect(str(project.database))
    try:
        started = time.monotonic()
        # Another process: DuckDB's file lock is between processes.
        env = sync_env(project, emulator, MOENGAGE_LOCK_WAIT_SECONDS="1")
        done = run_cli(sync_args(project, "--select", HIGH), env, process=True)
        elapsed = time.monotonic() - started
    finally:
        holder.close()
    assert done.returncode == 1, ok(done)
    assert elapsed >= 1.0
    assert "held by another process" in done.stdout
    assert "MOENGAGE_LOCK_WAIT_SECONDS" in done.stdout
    assert emulator.requests() == []
    row = results(project)[HIGH]
    assert row["status"] == "failed" and "lock" in str(row["error"]).lower()

    done = sync(project, emulator, "--select", HIGH, MOENGAGE_LOCK_WAIT_SECONDS="1")
    assert done.returncode == 0, ok(done)
    assert emulator.members(HIGH) == project.expected_members(HIGH)
    assert count_rows(project, LOCKS) == 0


# -- 11: state schema ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["flag", "env"])
def test_state_schema(project: BuiltProject, emulator: Emulator, how: str) -> None:
    schema = "moengage_state"
    args: tuple[str, ...] = ("--select", HIGH)
    env: dict[str, str] = {}
    if how == "flag":
        args = (*args, "--state-schema", schema)
    else:
        env["MOENGAGE_STATE_SCHEMA"] = schema
    first = sync(project, emulator, *args, **env)
    assert first.returncode == 0, ok(first)

    assert table_names(project, schema) == STATE_TABLES
    assert not table_names(project, "main") & STATE_TABLES
    expected = project.expected_members(HIGH)
    assert state_uids(project, HIGH, schema=schema) == sorted(expected)

    before = len(emulator.requests())
    again = sync(project, emulator, *args, **env)
    assert again.returncode == 0, ok(again)
    assert len(emulator.requests()) == before
    assert results(project)[HIGH]["unchanged"] == len(expected)


# -- the dbt package's views over the state ------------------------------------------------

VIEWS = ("moengage_current_members", "moengage_sync_history", "moengage_cohort_status")


def view_columns(project: BuiltProject) -> list[tuple[str, str, int, str, str]]:
    """The package's views' columns in main, as information_schema reports them."""
    rows = query(
        project,
        "select table_name, column_name, ordinal_position, data_type, is_nullable"
        " from information_schema.columns where table_schema = 'main'"
        " and table_name in (select unnest(?::varchar[]))",
        (list(VIEWS),),
    )
    return sorted((t, c, int(p), d, n) for t, c, p, d, n in rows)


def view_contract() -> list[tuple[str, str, int, str, str]]:
    """integration_tests/seeds/state/expected_state_view_columns.csv."""
    with (INTEGRATION / "seeds" / "state" / "expected_state_view_columns.csv").open() as file:
        rows = list(csv.DictReader(file))
    return sorted(
        (
            r["table_name"],
            r["column_name"],
            int(r["ordinal_position"]),
            r["data_type"],
            r["is_nullable"],
        )
        for r in rows
    )


def view_counts(project: BuiltProject) -> dict[str, int]:
    return {view: count_rows(project, view) for view in VIEWS}


def test_the_package_before_any_sync_creates_no_table(project: BuiltProject) -> None:
    """integration_tests after `dbt build`: the package's views and not one moengage_* table."""
    relations = query(
        project,
        "select table_schema, table_name, table_type from information_schema.tables"
        " where table_name like 'moengage%' order by table_name",
    )
    assert relations == [("main", view, "VIEW") for view in sorted(VIEWS)]
    # Each view is empty, with the columns and types it has once the state exists.
    assert view_counts(project) == dict.fromkeys(VIEWS, 0)
    assert view_columns(project) == view_contract()
    results = json.loads((project.target_dir / "run_results.json").read_text())["results"]
    statuses = {r["unique_id"].split(".")[2]: r["status"] for r in results}
    for test in (
        "assert_no_state_table",
        "assert_state_views_empty",
        "state_view_columns_match_the_contract",
    ):
        assert statuses[test] == "pass", test


def test_dbt_views_read_the_state_the_run_operation_made(project: BuiltProject) -> None:
    made = dbt(["run-operation", "moengage_create_state_tables"], project.env)
    assert made.returncode == 0, ok(made)
    assert table_names(project, "main") >= STATE_TABLES
    for table in STATE_TABLES:
        assert f'created "{project.database.stem}"."main"."{table}"' in made.stdout
    # The views built before the state existed stay empty until dbt builds them again.
    assert view_counts(project) == dict.fromkeys(VIEWS, 0)

    # it_state_exists: the hooks run moengage_create_state_tables again (a no-op) and load
    # a few rows; the tests compare the views with seeds/state/expected_*.csv.
    args = ["build", "--select", "package:moengage", "state", "--vars", "{it_state_exists: true}"]
    built = dbt(args, project.env)
    assert built.returncode == 0, ok(built)
    assert "already exists" in built.stdout
    assert view_counts(project) == {
        "moengage_current_members": 4,
        "moengage_sync_history": 5,
        "moengage_cohort_status": 3,
    }
    assert view_columns(project) == view_contract()
    results = json.loads((project.target_dir / "run_results.json").read_text())["results"]
    passed = {r["unique_id"].split(".")[2] for r in results if r["status"] == "pass"}
    for view in VIEWS:
        assert f"{view}_shows_the_state" in passed
    assert "state_columns_run_operation_matches_the_contract" in passed


def test_the_package_accepts_every_status_the_runner_writes(project: BuiltProject) -> None:
    """A run row of each status the runner writes (an interrupted one: one Ctrl-C), then the
    package's views and tests: `dbt build` stays green, and not one of its tests warns."""
    with DuckDBWarehouse(str(project.database)) as engine:
        write_every_run_status(engine)
    built = dbt(DBT_BUILD, project.env)
    assert built.returncode == 0, ok(built)
    check_package_results(
        json.loads((project.target_dir / "run_results.json").read_text())["results"]
    )
    assert statuses_shown(lambda sql: query(project, sql), "main") == EVERY_STATUS


def test_dbt_views_show_sync_history(project: BuiltProject, emulator: Emulator) -> None:
    assert sync(project, emulator).returncode == 0
    remove_rows(project, HIGH, 2)
    assert sync(project, emulator).returncode == 0
    # Built by `dbt build` before the runner made the state: empty until built again.
    assert view_counts(project) == dict.fromkeys(VIEWS, 0)
    built = dbt(["run", "--select", "package:moengage"], project.env)
    assert built.returncode == 0, built.stdout[-3000:]
    assert view_columns(project) == view_contract()

    status = {
        row[0]: row[1:]
        for row in query(
            project,
            "select cohort_id, member_count, last_run_status, last_run_added "
            "from main.moengage_cohort_status",
        )
    }
    for cohort_id in COHORTS:
        held = len(emulator.members(cohort_id))
        assert status[cohort_id] == (held, "synced", 0), cohort_id
    history = query(
        project,
        "select count(*), count(distinct run_id), min(duration_seconds) "
        "from main.moengage_sync_history",
    )
    assert history[0][:2] == (2 * len(COHORTS), 2)
    assert history[0][2] >= 0


def test_dbt_views_read_state_an_older_runner_wrote(
    project: BuiltProject, emulator: Emulator
) -> None:
    """State version 2 (no members_after): the views build, the column reads as null."""
    assert sync(project, emulator).returncode == 0
    with duckdb.connect(str(project.database)) as conn:  # as version 2 left it
        conn.execute(f"alter table main.{RUNS} drop column members_after")
        conn.execute(f"drop table main.{NOTIFICATIONS}")
        conn.execute(f"update main.{VERSION} set version = 2")
    built = dbt(["run", "--select", "package:moengage"], project.env)
    assert built.returncode == 0, built.stdout[-3000:]
    assert view_columns(project) == view_contract()
    history = query(
        project, "select count(*), count(members_after) from main.moengage_sync_history"
    )
    assert history == [(len(COHORTS), 0)]

    # The runner's next sync upgrades the state; the views, built again, read the counts.
    assert sync(project, emulator).returncode == 0
    assert dbt(["run", "--select", "package:moengage"], project.env).returncode == 0
    history = query(
        project, "select count(*), count(members_after) from main.moengage_sync_history"
    )
    assert history == [(2 * len(COHORTS), len(COHORTS))]


def test_a_project_that_installs_the_package_gets_views_only(tmp_path: Path) -> None:
    """The package alone, in a project of its own: `dbt build` creates no table; the
    moengage_state_models var switches the views off, moengage_state_schema points them at
    the state elsewhere."""
    project_dir = tmp_path / "analytics"
    project_dir.mkdir()
    database = tmp_path / "analytics.duckdb"
    (project_dir / "dbt_project.yml").write_text(
        "name: analytics\nversion: '1.0.0'\nconfig-version: 2\nprofile: analytics\n"
    )
    (project_dir / "packages.yml").write_text(f"packages:\n  - local: {ROOT}\n")
    (project_dir / "profiles.yml").write_text(
        "analytics:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        f"      path: {database}\n      schema: main\n      threads: 1\n"
    )
    env = {
        **os.environ,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_PROFILES_DIR": str(project_dir),
        "DBT_TARGET_PATH": str(tmp_path / "target"),
        "DBT_LOG_PATH": str(tmp_path / "logs"),
    }
    exe = Path(sys.executable).with_name("dbt")

    def run(*args: str) -> dict[tuple[str, str], tuple[str, str | None]]:
        """dbt in the project; then each relation in its database: kind and view SQL."""
        done = subprocess.run(
            [str(exe), *args], cwd=project_dir, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, ok(done)
        if not database.exists():
            return {}
        with duckdb.connect(str(database), read_only=True) as conn:
            rows = conn.execute(
                "select t.table_schema, t.table_name, t.table_type, v.sql"
                " from information_schema.tables t left join duckdb_views() v"
                " on v.schema_name = t.table_schema and v.view_name = t.table_name"
            ).fetchall()
        return {(schema_name, name): (kind, sql) for schema_name, name, kind, sql in rows}

    in_state_schema = "{moengage_state_schema: moengage_state}"
    run("deps")
    assert run("build", "--vars", "{moengage_state_models: false}") == {}
    before = run("build", "--vars", in_state_schema)
    assert {key: kind for key, (kind, _) in before.items()} == {
        ("main", view): "VIEW" for view in VIEWS
    }
    for _, sql in before.values():
        assert "moengage_state" not in str(sql).lower()  # typed nulls, no table read

    run("run-operation", "moengage_create_state_tables", "--vars", in_state_schema)
    after = run("build", "--vars", in_state_schema)
    assert {key for key, (kind, _) in after.items() if kind == "BASE TABLE"} == {
        ("moengage_state", table) for table in STATE_TABLES
    }
    members = str(after[("main", "moengage_current_members")][1]).replace('"', "")
    assert "from moengage_state.moengage_cohort_members" in members.lower()

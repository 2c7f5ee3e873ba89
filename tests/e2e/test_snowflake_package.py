"""The dbt package's snowflake__ macros, run by real dbt-snowflake on fakesnow.

dbt itself runs with fakesnow patched into it (tests/snowflake/fakesnow_dbt.py), on two fake
accounts. On the first, the package installed before any sync: `dbt build --select uid_rule
package:moengage state` creates no table, the views over the state are empty with their
columns, and the moengage_uid test goes down every failure path while moengage_uid_trim
takes every whitespace character. On the second, after one: the state DDL as an admin runs
it (`dbt run-operation moengage_create_state_tables`, twice), checked against the tables the
runner creates for itself, then the views built over it (`--vars '{it_state_exists: true,
moengage_state_schema: moengage_state}'`) show its rows.

What fakesnow cannot run stays out, and is said here: the collated-column model (Snowflake's
`collate 'en-ci'` is not DuckDB's), and the column contracts of models/state (the seeds name
DuckDB's and Postgres's types; here the views' columns are compared with the tables').
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fakesnow
import pytest
import snowflake.connector

from dbt_moengage import uids
from dbt_moengage.state import StateStore
from dbt_moengage.state.schema import SCHEMA_VERSION, STATE_TABLES
from dbt_moengage.warehouse.snowflake import SnowflakeWarehouse

from ..conftest import INTEGRATION, BuiltProject
from ..run_status_rows import (
    DBT_BUILD,
    EVERY_STATUS,
    check_package_results,
    statuses_shown,
    write_every_run_status,
)
from ..uid_rule_fixtures import check_fixtures

HERE = Path(__file__).resolve().parents[1] / "snowflake"
DATABASE, SCHEMA = "MOENGAGE_IT", "ANALYTICS"
ADMIN_SCHEMA, RUNNER_SCHEMA = "MOENGAGE_STATE", "RUNNER_STATE"
VIEWS = ("moengage_current_members", "moengage_sync_history", "moengage_cohort_status")


@dataclass(frozen=True)
class SnowflakePackage:
    """Two fake Snowflake accounts: the package built before any sync, and after one."""

    fresh_path: Path
    db_path: Path
    target_dir: Path
    after_dir: Path
    operations: list[subprocess.CompletedProcess[str]]

    def session(self) -> Any:
        return snowflake.connector.connect(database=DATABASE, schema=SCHEMA, paramstyle="qmark")

    def query(
        self, sql: str, params: tuple[Any, ...] = (), *, fresh: bool = False
    ) -> list[tuple[Any, ...]]:
        """Rows of one query on the account after the sync, or on the fresh one."""
        with fakesnow.patch(db_path=str(self.fresh_path if fresh else self.db_path)):
            conn = self.session()
            try:
                cursor = conn.cursor()
                cursor.execute(sql, params)
                return list(cursor.fetchall())
            finally:
                conn.close()

    def results(self, target_dir: Path | None = None) -> dict[str, dict[str, Any]]:
        path = (target_dir or self.target_dir) / "run_results.json"
        data = json.loads(path.read_text())
        return {r["unique_id"]: r for r in data["results"]}

    def result(self, unique_id_start: str, target_dir: Path | None = None) -> dict[str, Any]:
        """The one run_results.json entry whose unique_id starts with unique_id_start."""
        found = [r for u, r in self.results(target_dir).items() if u.startswith(unique_id_start)]
        assert len(found) == 1, f"{unique_id_start}: {found}"
        return found[0]


def fake_dbt(db_path: Path, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DBT_TARGET_PATH": str(work / "target"),
        "DBT_LOG_PATH": str(work / "logs"),
        "SNOWFLAKE_PASSWORD": "sf-fake-password",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    return subprocess.run(
        [
            sys.executable,
            str(HERE / "fakesnow_dbt.py"),
            str(db_path),
            *args,
            "--profiles-dir",
            str(HERE),
        ],
        cwd=INTEGRATION,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def tail(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def package(
    built_project: BuiltProject, tmp_path_factory: pytest.TempPathFactory
) -> SnowflakePackage:
    """Run after built_project, which installed integration_tests' packages (`dbt deps`)."""
    work = tmp_path_factory.mktemp("sf_package")
    fresh_path, db_path = work / "fresh", work / "fakesnow"
    fresh_path.mkdir()
    db_path.mkdir()
    select = ("--select", "package:moengage", "state")
    before = fake_dbt(fresh_path, work / "before", "build", "--select", "uid_rule", *select[1:])
    assert before.returncode == 0, tail(before)
    args = ("run-operation", "moengage_create_state_tables", "--args", "{schema: moengage_state}")
    operations = [fake_dbt(db_path, work / "ops", *args) for _ in "12"]
    for done in operations:
        assert done.returncode == 0, tail(done)
    state_vars = "{it_state_exists: true, moengage_state_schema: moengage_state}"
    after = fake_dbt(db_path, work / "after", "build", *select, "--vars", state_vars)
    assert after.returncode == 0, tail(after)
    return SnowflakePackage(
        fresh_path, db_path, work / "before" / "target", work / "after" / "target", operations
    )


def state_columns(
    package: SnowflakePackage, schema: str, *, fresh: bool = False
) -> list[tuple[Any, ...]]:
    return package.query(
        "select table_name, column_name, ordinal_position, data_type, is_nullable"
        f" from {DATABASE}.information_schema.columns where table_schema = ?"
        " order by table_name, ordinal_position",
        (schema,),
        fresh=fresh,
    )


def view_columns(package: SnowflakePackage, *, fresh: bool) -> dict[str, list[tuple[str, str]]]:
    """The package's views' columns in the analytics schema: view -> [(column, type)]."""
    columns: dict[str, list[tuple[str, str]]] = {}
    for table, column, _, data_type, _ in state_columns(package, SCHEMA, fresh=fresh):
        if table.lower() in VIEWS:
            columns.setdefault(table.lower(), []).append((column.lower(), data_type))
    return columns


def view_counts(package: SnowflakePackage, *, fresh: bool) -> dict[str, int]:
    return {
        view: package.query(f"select count(*) from {SCHEMA}.{view}", fresh=fresh)[0][0]
        for view in VIEWS
    }


def test_the_package_before_any_sync_creates_no_table(package: SnowflakePackage) -> None:
    tables = package.query(
        f"select table_schema, table_name from {DATABASE}.information_schema.tables"
        " where table_name ilike 'moengage%'",
        fresh=True,
    )
    assert tables == []
    views = package.query(
        f"select table_schema, table_name from {DATABASE}.information_schema.views"
        " where table_name ilike 'moengage%'",
        fresh=True,
    )
    assert sorted(views) == [(SCHEMA, view.upper()) for view in sorted(VIEWS)]
    assert view_counts(package, fresh=True) == dict.fromkeys(VIEWS, 0)
    for test in ("assert_no_state_table", "assert_state_views_empty"):
        result = package.result(f"test.moengage_integration_tests.{test}")
        assert result["status"] == "pass", result["message"]


def test_views_read_the_state_once_it_exists(package: SnowflakePackage) -> None:
    for view in VIEWS:
        result = package.result(
            f"test.moengage_integration_tests.{view}_shows_the_state", package.after_dir
        )
        assert result["status"] == "pass", result["message"]
    assert view_counts(package, fresh=False) == {
        "moengage_current_members": 4,
        "moengage_sync_history": 5,
        "moengage_cohort_status": 3,
    }
    # The same columns and types before the state existed and after.
    before, after = view_columns(package, fresh=True), view_columns(package, fresh=False)
    assert set(before) == set(VIEWS)
    assert before == after
    # Each column read from a state table has that table's type.
    tables = {
        (table.lower(), column.lower()): data_type
        for table, column, _, data_type, _ in state_columns(package, ADMIN_SCHEMA)
    }
    for view, table in (
        ("moengage_current_members", "moengage_cohort_members"),
        ("moengage_sync_history", "moengage_sync_runs"),
    ):
        for column, data_type in after[view]:
            if column != "duration_seconds":
                assert data_type == tables[(table, column)], (view, column)


def test_run_operation_creates_the_tables_once(package: SnowflakePackage) -> None:
    first, second = (done.stdout for done in package.operations)
    for table in STATE_TABLES:
        assert f"created {DATABASE}.moengage_state.{table}" in first
        assert f"{DATABASE}.moengage_state.{table} already exists" in second
    assert "created" not in second


def test_the_admins_tables_are_the_runners_own(package: SnowflakePackage) -> None:
    """What the run-operation creates is what the runner would create, and it finds it ready."""
    with fakesnow.patch(db_path=str(package.db_path)):
        for schema, create in ((RUNNER_SCHEMA, True), (ADMIN_SCHEMA, False)):
            conn = package.session()
            engine = SnowflakeWarehouse(conn, DATABASE, schema, opener=package.session)
            try:
                status = StateStore(engine).prepare(create=create)
            finally:
                engine.close()
            assert status.ready, schema
            assert status.upgraded_from is None
    admin = state_columns(package, ADMIN_SCHEMA)
    runner = state_columns(package, RUNNER_SCHEMA)
    assert {t for t, *_ in admin} == {t.upper() for t in STATE_TABLES}
    assert admin == runner
    # The package's DDL records no version: the tables' shape is the current one, and the
    # runner's first sync writes the row, as it did in its own schema.
    version = f"select version from {DATABASE}.{{}}.moengage_state_version"
    assert package.query(version.format(ADMIN_SCHEMA)) == []
    assert package.query(version.format(RUNNER_SCHEMA)) == [(SCHEMA_VERSION,)]


def test_the_package_accepts_every_status_the_runner_writes(
    built_project: BuiltProject, tmp_path: Path
) -> None:
    """A run row of each status the runner writes, through its own Snowflake engine, on an
    account of its own; then the package's views and tests over them: all green, no warning."""
    db_path = tmp_path / "fakesnow"
    db_path.mkdir()
    package = SnowflakePackage(db_path, db_path, tmp_path / "target", tmp_path / "target", [])
    with fakesnow.patch(db_path=str(db_path)):
        engine = SnowflakeWarehouse(
            package.session(), DATABASE, ADMIN_SCHEMA, opener=package.session
        )
        try:
            write_every_run_status(engine)
        finally:
            engine.close()
    built = fake_dbt(
        db_path, tmp_path, *DBT_BUILD, "--vars", "{moengage_state_schema: moengage_state}"
    )
    assert built.returncode == 0, tail(built)
    check_package_results(list(package.results().values()))
    assert statuses_shown(package.query, SCHEMA) == EVERY_STATUS


def test_moengage_uid_fails_every_path(package: SnowflakePackage) -> None:
    # error_if and warn_if "!= N" on each fixture: passes only when the test fails exactly
    # its N bad rows; and its query on every fixture, built as a model, equals the seed of
    # expected failures.
    failures = package.query(
        f"select fixture, failure_reason, sum(row_count) from {SCHEMA}.uid_rule_failures"
        " group by fixture, failure_reason",
        fresh=True,
    )
    check_fixtures(package.result, failures)
    assert "model.moengage_integration_tests.uid_rule_collated" not in package.results()


def test_uid_trim_takes_every_whitespace_character(package: SnowflakePackage) -> None:
    rows = package.query(
        f"select position, padded_trimmed, blank_trimmed from {SCHEMA}.uid_rule_whitespace"
        " order by position",
        fresh=True,
    )
    assert [position for position, _, _ in rows] == list(range(1, len(uids.WHITESPACE) + 1))
    assert {(padded, blank) for _, padded, blank in rows} == {("x", "")}

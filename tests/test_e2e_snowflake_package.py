"""The dbt package's snowflake__ macros, run by real dbt-snowflake on fakesnow.

dbt itself runs with fakesnow patched into it (tests/snowflake/fakesnow_dbt.py): the state
DDL as an admin runs it (`dbt run-operation moengage_create_state_tables`, twice), checked
against the tables the runner creates for itself, and the uid rule's models and tests
(`dbt build --select uid_rule`): the moengage_uid test down every failure path and
moengage_uid_trim on every whitespace character.

What fakesnow cannot run stays out, and is said here: the collated-column model (Snowflake's
`collate 'en-ci'` is not DuckDB's), and dbt's relation cache across two builds in one
invocation (fakesnow folds no identifiers, so dbt-snowflake finds the second run's tables
only "approximately"); integration_tests skips its on-run-start DDL hooks under
`--vars '{it_state_hooks: false}'` for that reason, and the run-operation covers them.
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

from .conftest import INTEGRATION, BuiltProject

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent / "snowflake"
DATABASE, SCHEMA = "MOENGAGE_IT", "ANALYTICS"
ADMIN_SCHEMA, RUNNER_SCHEMA = "MOENGAGE_STATE", "RUNNER_STATE"


@dataclass(frozen=True)
class SnowflakePackage:
    """A fake Snowflake account after the package's run-operation and the uid rule build."""

    db_path: Path
    target_dir: Path
    operations: list[subprocess.CompletedProcess[str]]

    def session(self) -> Any:
        return snowflake.connector.connect(database=DATABASE, schema=SCHEMA, paramstyle="qmark")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with fakesnow.patch(db_path=str(self.db_path)):
            conn = self.session()
            try:
                cursor = conn.cursor()
                cursor.execute(sql, params)
                return list(cursor.fetchall())
            finally:
                conn.close()

    def results(self) -> dict[str, dict[str, Any]]:
        data = json.loads((self.target_dir / "run_results.json").read_text())
        return {r["unique_id"]: r for r in data["results"]}

    def result(self, unique_id_start: str) -> dict[str, Any]:
        """The one run_results.json entry whose unique_id starts with unique_id_start."""
        found = [r for u, r in self.results().items() if u.startswith(unique_id_start)]
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
    db_path = work / "fakesnow"
    db_path.mkdir()
    args = ("run-operation", "moengage_create_state_tables", "--args", "{schema: moengage_state}")
    operations = [fake_dbt(db_path, work, *args) for _ in "12"]
    for done in operations:
        assert done.returncode == 0, tail(done)
    build = fake_dbt(
        db_path, work, "build", "--select", "uid_rule", "--vars", "{it_state_hooks: false}"
    )
    assert build.returncode == 0, tail(build)
    return SnowflakePackage(db_path, work / "target", operations)


def state_columns(package: SnowflakePackage, schema: str) -> list[tuple[Any, ...]]:
    return package.query(
        "select table_name, column_name, ordinal_position, data_type, is_nullable"
        f" from {DATABASE}.information_schema.columns where table_schema = ?"
        " order by table_name, ordinal_position",
        (schema,),
    )


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


def test_moengage_uid_fails_every_path(package: SnowflakePackage) -> None:
    # error_if and warn_if "!= 16": passes only when it fails exactly the 16 bad rows; and
    # its query, built as a model, equals the expected reasons row for row.
    for test in ("moengage_moengage_uid_uid_rule_cases", "equal_rowset_uid_rule_failures"):
        result = package.result(f"test.moengage_integration_tests.{test}")
        assert result["status"] == "pass", result["message"]
    failures = package.query(f"select uid_value, failure_reason from {SCHEMA}.uid_rule_failures")
    assert len(failures) == 16
    assert {reason for _, reason in failures} == {
        "null",
        "empty",
        "whitespace",
        "duplicate",
        "longer than 10",
    }
    assert "model.moengage_integration_tests.uid_rule_collated" not in package.results()


def test_uid_trim_takes_every_whitespace_character(package: SnowflakePackage) -> None:
    rows = package.query(
        f"select position, padded_trimmed, blank_trimmed from {SCHEMA}.uid_rule_whitespace"
        " order by position"
    )
    assert [position for position, _, _ in rows] == list(range(1, len(uids.WHITESPACE) + 1))
    assert {(padded, blank) for _, padded, blank in rows} == {("x", "")}

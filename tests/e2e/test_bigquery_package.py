"""The dbt package on BigQuery: integration_tests built with `--target bigquery`.

Real dbt-bigquery on the BigQuery emulator (tests/bigquery_emulator.py), one build per
module, in one dataset: the package installed before any sync (no table created, the views
empty with their columns), then the state made by the run-operation in a state dataset of
its own, checked against the runner's contract (STATE_COLUMNS in BigQuery's types, the
runner's own engine finding it ready), then the views built again over it and showing its
rows (that build's hooks run the run-operation's macro twice more: it changes nothing).
Beside it, the moengage_uid test down every failure path, the uid rule's whitespace
trimmed, and the package's views and tests over a run row of every status the runner's
BigQuery engine writes.

What the emulator cannot show is said here. It has no collations (it refuses `collate
'und:ci'` in DDL), so no column can be case-insensitive there: that uids compare as exact
bytes is checked on the SQL the bigquery__ variant of moengage_uid_text compiles to. And
its region-wide INFORMATION_SCHEMA, which assert_no_state_table reads on BigQuery, lists
nothing: the tables the build created are listed here through the API instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dbt_moengage import uids
from dbt_moengage.state import StateStore
from dbt_moengage.state.schema import STATE_COLUMNS, STATE_TABLES
from dbt_moengage.warehouse.bigquery import BigQueryWarehouse, Jobs

from ..bigquery_emulator import BigQueryEmulator
from ..conftest import dbt
from ..run_status_rows import (
    DBT_BUILD,
    EVERY_STATUS,
    check_package_results,
    statuses_shown,
    write_every_run_status,
)
from ..uid_rule_fixtures import check_fixtures

TARGET = ["--target", "bigquery"]
DATASET = "package_it"
STATE = "package_it_state"
STATE_VARS = f"{{moengage_state_schema: {STATE}}}"
VIEWS = ("moengage_current_members", "moengage_sync_history", "moengage_cohort_status")
# The state columns' types on BigQuery: the runner's BigQuery engine creates the same.
TYPES = {"string": "STRING", "timestamp": "TIMESTAMP", "bigint": "INT64", "boolean": "BOOL"}

Relation = tuple[str, str, str]
Column = tuple[str, str, int, str, str]


@dataclass(frozen=True)
class Phase:
    """What one dbt invocation left: its target folder and what it printed."""

    target_dir: Path
    done: subprocess.CompletedProcess[str]

    def results(self) -> dict[str, dict[str, Any]]:
        data = json.loads((self.target_dir / "run_results.json").read_text())
        return {r["unique_id"]: r for r in data["results"]}

    def result(self, unique_id_start: str) -> dict[str, Any]:
        """The one run_results.json entry whose unique_id starts with unique_id_start."""
        found = [r for u, r in self.results().items() if u.startswith(unique_id_start)]
        assert len(found) == 1, f"{unique_id_start}: {found}"
        return found[0]


@dataclass(frozen=True)
class BigQueryPackage:
    """integration_tests on the emulator, as each phase left it: built before any sync, the
    state made by the run-operation, the package's views built again over it (whose hooks
    run the run-operation's macro twice more)."""

    emulator: BigQueryEmulator
    before: Phase
    operation: Phase
    after: Phase
    created_before: list[Relation]
    counts_before: dict[str, int]
    counts_after_operation: dict[str, int]
    view_columns_before: list[Column]

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return self.emulator.query(sql)


def dbt_env(emulator: BigQueryEmulator, dataset: str, work: Path) -> dict[str, str]:
    """dbt's environment for the bigquery target, its target/ and logs/ kept in `work`."""
    return {
        **os.environ,
        **emulator.profile_env(dataset),
        "DBT_TARGET_PATH": str(work / "target"),
        "DBT_LOG_PATH": str(work / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def run(
    emulator: BigQueryEmulator, dataset: str, work: Path, *args: str, parsed: Path | None = None
) -> Phase:
    """One dbt invocation, which must succeed. `parsed`: the target folder of an earlier one
    with the same vars, whose parse this one reuses (a full parse takes seconds)."""
    if parsed is not None:
        (work / "target").mkdir(parents=True)
        shutil.copy(parsed / "partial_parse.msgpack", work / "target")
    done = dbt(list(args), dbt_env(emulator, dataset, work))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return Phase(work / "target", done)


def moengage_relations(emulator: BigQueryEmulator) -> set[Relation]:
    """Every relation named moengage* in the emulator's project: dataset, name, type."""
    client = emulator.client()
    return {
        (dataset.dataset_id, table.table_id, table.table_type)
        for dataset in client.list_datasets()
        for table in client.list_tables(dataset.dataset_id)
        if table.table_id.startswith("moengage")
    }


def columns(emulator: BigQueryEmulator, dataset: str, tables: tuple[str, ...]) -> list[Column]:
    """The columns of `tables` in `dataset`, as INFORMATION_SCHEMA.COLUMNS reports them."""
    names = ", ".join(f"'{table}'" for table in tables)
    rows = emulator.query(
        "select table_name, column_name, ordinal_position, data_type, is_nullable"
        f" from `{emulator.project}`.`{dataset}`.INFORMATION_SCHEMA.COLUMNS"
        f" where table_name in ({names})"
    )
    return sorted((t, c, int(p), d, n) for t, c, p, d, n in rows)


def contract() -> list[Column]:
    """The state tables' columns as the runner's contract has them, in BigQuery's types."""
    return sorted(
        (table, name, position, TYPES[kind], "NO" if not_null else "YES")
        for table, table_columns in STATE_COLUMNS.items()
        for position, (name, kind, not_null) in enumerate(table_columns, 1)
    )


def view_counts(emulator: BigQueryEmulator) -> dict[str, int]:
    return {view: emulator.query(f"select count(*) from {DATASET}.{view}")[0][0] for view in VIEWS}


def engine(emulator: BigQueryEmulator, state_dataset: str) -> BigQueryWarehouse:
    """The runner's BigQuery engine on the emulator, its state in `state_dataset`."""
    return BigQueryWarehouse(
        Jobs(emulator.client(), location="US"), emulator.project, state_dataset, "US"
    )


@pytest.fixture(scope="module")
def package(
    bigquery_emulator: BigQueryEmulator, tmp_path_factory: pytest.TempPathFactory
) -> BigQueryPackage:
    """The three phases, in order, on one dataset (the state in another, by its var)."""
    emulator = bigquery_emulator
    emulator.new_dataset(DATASET)
    work = tmp_path_factory.mktemp("bq_package")
    run(emulator, DATASET, work / "deps", "deps")
    existing = moengage_relations(emulator)
    before = run(emulator, DATASET, work / "before", "build", *TARGET, "--vars", STATE_VARS)
    created_before = sorted(moengage_relations(emulator) - existing)
    counts_before = view_counts(emulator)
    view_columns_before = columns(emulator, DATASET, VIEWS)
    operation = run(
        emulator,
        DATASET,
        work / "operation",
        "run-operation",
        "moengage_create_state_tables",
        *TARGET,
        "--vars",
        STATE_VARS,
        parsed=before.target_dir,
    )
    counts_after_operation = view_counts(emulator)
    # it_state_exists: the hooks run moengage_create_state_tables twice more (no-ops) and
    # load a few rows; the tests compare the views with seeds/state/expected_*.csv.
    after_vars = f"{{moengage_state_schema: {STATE}, it_state_exists: true}}"
    select = ["--select", "package:moengage", "state"]
    after = run(emulator, DATASET, work / "after", "build", *TARGET, *select, "--vars", after_vars)
    return BigQueryPackage(
        emulator,
        before,
        operation,
        after,
        created_before,
        counts_before,
        counts_after_operation,
        view_columns_before,
    )


def test_dbt_build_passes_on_bigquery(package: BigQueryPackage) -> None:
    statuses = {uid: r["status"] for uid, r in package.before.results().items()}
    assert statuses, "dbt build ran nothing"
    assert set(statuses.values()) <= {"success", "pass"}, statuses
    manifest = json.loads((package.before.target_dir / "manifest.json").read_text())
    assert manifest["metadata"]["adapter_type"] == "bigquery"
    for model in ("high_value_users", "recently_active", "enterprise_accounts", "messy_signups"):
        assert statuses[f"model.moengage_integration_tests.{model}"] == "success"
    # The DuckDB- and Postgres-only models stay off, and so do those of the state after a
    # sync (var it_state_exists).
    for model in (
        "uid_rule_collated",
        "uid_rule_collated_postgres",
        "state_view_columns",
        "state_columns_default_ddl",
        "state_columns_run_operation",
    ):
        assert f"model.moengage_integration_tests.{model}" not in statuses


def test_the_package_before_any_sync_creates_no_table(package: BigQueryPackage) -> None:
    """`dbt build` of a project that installs the package: its views, and not one table."""
    assert package.created_before == [(DATASET, view, "VIEW") for view in sorted(VIEWS)]
    assert package.counts_before == dict.fromkeys(VIEWS, 0)
    for test in ("assert_no_state_table", "assert_state_views_empty"):
        result = package.before.result(f"test.moengage_integration_tests.{test}")
        assert result["status"] == "pass", result["message"]


def test_run_operation_creates_the_tables_once(package: BigQueryPackage) -> None:
    """The run-operation creates each table; run again (twice, by the next build's hooks),
    it finds each there and creates nothing."""
    first, again = package.operation.done.stdout, package.after.done.stdout
    project = package.emulator.project
    for table in STATE_TABLES:
        assert f"created `{project}`.`{STATE}`.`{table}`" in first
        assert again.count(f"`{project}`.`{STATE}`.`{table}` already exists") == 2
    assert "moengage_create_state_tables: created" not in again
    # The state dataset, not the models': the views' own dataset holds no state table.
    assert columns(package.emulator, DATASET, STATE_TABLES) == []
    # Built before the state existed, the views stay empty until dbt builds them again.
    assert package.counts_after_operation == dict.fromkeys(VIEWS, 0)


def test_the_state_ddl_is_the_runners_contract(package: BigQueryPackage) -> None:
    """Names, order, BigQuery's types and not-null of every state column; the runner's
    engine names the same types, and finds the tables ready as they are."""
    assert columns(package.emulator, STATE, STATE_TABLES) == contract()
    assert BigQueryWarehouse.STATE_TYPES == TYPES
    runner = engine(package.emulator, STATE)
    try:
        status = StateStore(runner).prepare(create=False)
    finally:
        runner.close()
    assert status.ready
    assert status.upgraded_from is None


def test_views_read_the_state_once_it_exists(package: BigQueryPackage) -> None:
    for view in VIEWS:
        result = package.after.result(f"test.moengage_integration_tests.{view}_shows_the_state")
        assert result["status"] == "pass", result["message"]
    assert view_counts(package.emulator) == {
        "moengage_current_members": 4,
        "moengage_sync_history": 5,
        "moengage_cohort_status": 3,
    }
    assert package.query(
        f"select cohort_id, member_count, last_run_status from {DATASET}.moengage_cohort_status"
        " order by cohort_id"
    ) == [
        ("enterprise_accounts", 0, "running"),
        ("high_value_users", 3, "synced"),
        ("recently_active_30d", 1, "failed"),
    ]
    # The same columns and types before the state existed and after; each read from a state
    # table typed as the contract types it.
    after = columns(package.emulator, DATASET, VIEWS)
    assert {view for view, *_ in after} == set(VIEWS)
    assert after == package.view_columns_before
    kinds = {
        (table, name): TYPES[kind]
        for table, table_columns in STATE_COLUMNS.items()
        for name, kind, _ in table_columns
    }
    tables = {
        "moengage_current_members": "moengage_cohort_members",
        "moengage_sync_history": "moengage_sync_runs",
    }
    types = {(view, column): data_type for view, column, _, data_type, _ in after}
    for (view, column), data_type in types.items():
        if view in tables and column != "duration_seconds":
            assert data_type == kinds[(tables[view], column)], (view, column)
    assert types[("moengage_sync_history", "duration_seconds")] == "INT64"
    assert types[("moengage_cohort_status", "member_count")] == "INT64"


def test_the_package_accepts_every_status_the_runner_writes(
    bigquery_emulator: BigQueryEmulator, bigquery_dataset: str, tmp_path: Path
) -> None:
    """A run row of each status the runner writes, through its own BigQuery engine, then the
    package's views and tests over them: all green, not one warning."""
    state = f"{bigquery_dataset}_state"
    runner = engine(bigquery_emulator, state)
    try:
        write_every_run_status(runner)
    finally:
        runner.close()
    # The runner's own tables are the contract too.
    assert columns(bigquery_emulator, state, STATE_TABLES) == contract()
    build = run(
        bigquery_emulator,
        bigquery_dataset,
        tmp_path,
        *DBT_BUILD,
        *TARGET,
        "--vars",
        f"{{moengage_state_schema: {state}}}",
    )
    check_package_results(list(build.results().values()))
    assert statuses_shown(bigquery_emulator.query, bigquery_dataset) == EVERY_STATUS


def test_moengage_uid_fails_every_path(package: BigQueryPackage) -> None:
    # The generic test on each fixture of models/uid_rule/: error_if and warn_if "!= N"
    # (uid_rule.yml), so it passes only when it fails exactly the fixture's N bad rows; and
    # its query on every fixture, built as a model, equals the seed of expected failures.
    failures = package.query(
        f"select fixture, failure_reason, sum(row_count) from {DATASET}.uid_rule_failures"
        " group by fixture, failure_reason"
    )
    expected = check_fixtures(package.before.result, failures)
    assert len({fixture for fixture, _ in expected}) == 7
    result = package.before.result(
        "test.moengage_integration_tests.moengage_moengage_uid_uid_rule_valid_"
    )
    assert result["status"] == "pass", result["message"]


def test_uids_are_read_as_exact_bytes(package: BigQueryPackage) -> None:
    """The emulator has no collation to test against: the compiled test removes any."""
    compiled = package.before.target_dir / "compiled" / "moengage_integration_tests" / "models"
    [test_sql] = (compiled / "uid_rule" / "uid_rule.yml").glob(
        "moengage_moengage_uid_uid_rule_cases_uid*.sql"
    )
    assert "select collate(cast(uid as string), '') as uid_value" in test_sql.read_text()


def test_uid_trim_takes_every_whitespace_character(package: BigQueryPackage) -> None:
    rows = package.query(
        f"select position, padded_trimmed, blank_trimmed from {DATASET}.uid_rule_whitespace"
        " order by position"
    )
    assert [position for position, _, _ in rows] == list(range(1, len(uids.WHITESPACE) + 1))
    assert {(padded, blank) for _, padded, blank in rows} == {("x", "")}


def test_messy_signups_keep_their_refs(package: BigQueryPackage) -> None:
    """The seed's empty strings survive the load (agate reads "" as null; a post-hook restores)."""
    counts = dict(
        package.query(
            f"select quality_note, count(*) from {DATASET}.app_signups"
            " where (quality_note = 'null_ref' and user_ref is null)"
            " or (quality_note = 'empty_ref' and user_ref = '')"
            " group by quality_note"
        )
    )
    assert counts == {"null_ref": 12, "empty_ref": 8}

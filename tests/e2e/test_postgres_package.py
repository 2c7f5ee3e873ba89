"""The dbt package on PostgreSQL: integration_tests built with `--target postgres`.

A real server (tests/postgres_server.py), real dbt-postgres: the package installed before
any sync (no table created, the views empty with their columns) and after one (the state
made by the run-operation, the views showing it), the state DDL against the contract, the
moengage_uid test down every failure path, exact-byte uids in a column with a
non-deterministic ICU collation, and the uid rule's whitespace trimmed, multi-byte
characters included. Built twice: on a database whose default collation is C (byte order)
and on one whose default is ICU's en-US, as on most managed servers.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dbt_moengage import uids
from dbt_moengage.warehouse.postgres import PostgresWarehouse

from ..conftest import INTEGRATION, dbt
from ..postgres_server import PostgresServer
from ..run_status_rows import (
    DBT_BUILD,
    EVERY_STATUS,
    check_package_results,
    statuses_shown,
    write_every_run_status,
)
from ..uid_rule_fixtures import check_fixtures

TARGET = ["--target", "postgres"]
SCHEMA = "main"
STATE_TABLES = (
    "moengage_cohort_members",
    "moengage_sync_runs",
    "moengage_sync_locks",
    "moengage_cohorts",
    "moengage_state_version",
    "moengage_notifications",
    "moengage_webhook_runs",
    "moengage_quota_peers",
)
VIEWS = ("moengage_current_members", "moengage_sync_history", "moengage_cohort_status")
CONTRACT = INTEGRATION / "seeds" / "state" / "expected_state_columns_postgres.csv"
VIEW_CONTRACT = INTEGRATION / "seeds" / "state" / "expected_state_view_columns_postgres.csv"


@dataclass(frozen=True)
class PostgresBuild:
    """integration_tests after `dbt build --target postgres` into one database."""

    server: PostgresServer
    database: str
    target_dir: Path
    env: dict[str, str]

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one query on the built database."""
        conn = self.server.connect(self.database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        finally:
            conn.close()

    def result(self, unique_id_start: str) -> dict[str, Any]:
        """The one run_results.json entry whose unique_id starts with unique_id_start."""
        results = json.loads((self.target_dir / "run_results.json").read_text())["results"]
        found = [r for r in results if r["unique_id"].startswith(unique_id_start)]
        assert len(found) == 1, f"{unique_id_start}: {[r['unique_id'] for r in found]}"
        return found[0]


def dbt_env(server: PostgresServer, database: str, work: Path) -> dict[str, str]:
    """dbt's environment for the postgres target, its target/ and logs/ kept in `work`."""
    return {
        **os.environ,
        **server.profile_env(database),
        "DBT_TARGET_PATH": str(work / "target"),
        "DBT_LOG_PATH": str(work / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def output(done: subprocess.CompletedProcess[str]) -> str:
    """The tail of dbt's output, for an assertion's message."""
    return done.stdout[-4000:] + done.stderr[-4000:]


@pytest.fixture(scope="module", params=[None, "en-US"], ids=["c_collation", "icu_en_us"])
def postgres_build(
    postgres_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> PostgresBuild:
    """`dbt deps` and `dbt build --target postgres` of integration_tests, per database kind."""
    icu_locale: str | None = request.param
    database = postgres_server.new_database(
        "it_icu" if icu_locale else "it_c", icu_locale=icu_locale
    )
    work = tmp_path_factory.mktemp("pg_dbt")
    env = dbt_env(postgres_server, database, work)
    for args in (["deps"], ["build", *TARGET]):
        done = dbt(args, env)
        assert done.returncode == 0, output(done)
    return PostgresBuild(postgres_server, database, work / "target", env)


def contract(path: Path = CONTRACT) -> list[tuple[str, str, int, str, str]]:
    """seeds/state/expected_state_columns_postgres.csv (the state tables' columns on
    Postgres), or another seed of that shape."""
    with path.open(newline="") as file:
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


def state_columns(
    build: PostgresBuild, schema: str, tables: tuple[str, ...] = STATE_TABLES
) -> list[tuple[str, str, int, str, str]]:
    """The columns of `tables` (the state tables) in `schema`, as information_schema
    reports them."""
    rows = build.query(
        "select table_name, column_name, ordinal_position, data_type, is_nullable"
        " from information_schema.columns"
        " where table_catalog = current_database() and table_schema = %s"
        " and table_name = any(%s)",
        (schema, list(tables)),
    )
    return sorted((t, c, int(p), d, n) for t, c, p, d, n in rows)


def moengage_relations(build: PostgresBuild) -> list[tuple[str, str, str]]:
    """Every relation named moengage* in the database: schema, name, type."""
    return sorted(
        build.query(
            "select table_schema, table_name, table_type from information_schema.tables"
            " where table_catalog = current_database() and table_name like 'moengage%%'"
        )
    )


def view_counts(build: PostgresBuild) -> dict[str, int]:
    return {view: build.query(f"select count(*) from {SCHEMA}.{view}")[0][0] for view in VIEWS}


def test_dbt_build_passes_on_postgres(postgres_build: PostgresBuild) -> None:
    results = json.loads((postgres_build.target_dir / "run_results.json").read_text())
    statuses = {r["unique_id"]: r["status"] for r in results["results"]}
    assert statuses, "dbt build ran nothing"
    assert set(statuses.values()) <= {"success", "pass"}, statuses
    manifest = json.loads((postgres_build.target_dir / "manifest.json").read_text())
    assert manifest["metadata"]["adapter_type"] == "postgres"
    # Every model the target enables was built, the cohorts included.
    for model in ("high_value_users", "recently_active", "enterprise_accounts", "messy_signups"):
        assert statuses[f"model.moengage_integration_tests.{model}"] == "success"
    # The DuckDB-only models stay off, their Postgres counterparts on; and so do the models
    # of the state after a sync (var it_state_exists).
    for model in ("uid_rule_collated", "state_columns_default_ddl", "state_columns_run_operation"):
        assert f"model.moengage_integration_tests.{model}" not in statuses
    assert statuses["model.moengage_integration_tests.uid_rule_collated_postgres"] == "success"


def test_the_package_before_any_sync_creates_no_table(postgres_build: PostgresBuild) -> None:
    """`dbt build` of a project that installs the package: its views, and not one table."""
    assert moengage_relations(postgres_build) == [(SCHEMA, view, "VIEW") for view in sorted(VIEWS)]
    # Each view is empty, typed as it is once the state exists.
    assert view_counts(postgres_build) == dict.fromkeys(VIEWS, 0)
    assert state_columns(postgres_build, SCHEMA, VIEWS) == contract(VIEW_CONTRACT)
    for test in (
        "assert_no_state_table",
        "assert_state_views_empty",
        "state_view_columns_match_the_contract",
    ):
        result = postgres_build.result(f"test.moengage_integration_tests.{test}")
        assert result["status"] == "pass", result["message"]


def test_views_read_the_state_once_it_exists(
    postgres_build: PostgresBuild, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """Before the state, then the run-operation, then the views over it: in a state schema of
    its own (var moengage_state_schema), as the docs allow."""
    database = postgres_server.new_database(f"{postgres_build.database}_after")
    env = dbt_env(postgres_server, database, tmp_path)
    build = PostgresBuild(postgres_server, database, tmp_path / "target", env)
    state_vars = "{moengage_state_schema: it_state}"
    select = ["--select", "package:moengage", "state"]

    before = dbt(["build", *TARGET, *select, "--vars", state_vars], env)
    assert before.returncode == 0, output(before)
    assert moengage_relations(build) == [(SCHEMA, view, "VIEW") for view in sorted(VIEWS)]
    assert view_counts(build) == dict.fromkeys(VIEWS, 0)

    made = dbt(
        ["run-operation", "moengage_create_state_tables", *TARGET, "--vars", state_vars], env
    )
    assert made.returncode == 0, output(made)
    assert state_columns(build, "it_state") == contract()
    assert state_columns(build, SCHEMA) == []
    # Built before the state existed, the views stay empty until dbt builds them again.
    assert view_counts(build) == dict.fromkeys(VIEWS, 0)

    # it_state_exists: the hooks run moengage_create_state_tables again (a no-op) and load a
    # few rows; the tests compare the views with seeds/state/expected_*.csv.
    after_vars = "{moengage_state_schema: it_state, it_state_exists: true}"
    after = dbt(["build", *TARGET, *select, "--vars", after_vars], env)
    assert after.returncode == 0, output(after)
    assert view_counts(build) == {
        "moengage_current_members": 4,
        "moengage_sync_history": 5,
        "moengage_cohort_status": 3,
    }
    assert state_columns(build, SCHEMA, VIEWS) == contract(VIEW_CONTRACT)
    assert build.query(
        f"select cohort_id, member_count, last_run_status from {SCHEMA}.moengage_cohort_status"
        " order by cohort_id"
    ) == [
        ("enterprise_accounts", 0, "running"),
        ("high_value_users", 3, "synced"),
        ("recently_active_30d", 1, "failed"),
    ]
    for test in (
        "state_columns_run_operation_matches_the_contract",
        "state_view_columns_match_the_contract",
        *(f"{view}_shows_the_state" for view in VIEWS),
    ):
        result = build.result(f"test.moengage_integration_tests.{test}")
        assert result["status"] == "pass", result["message"]


def test_the_package_accepts_every_status_the_runner_writes(
    postgres_build: PostgresBuild, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """A run row of each status the runner writes, through its own Postgres engine, then the
    package's views and tests over them: all green, not one warning."""
    database = postgres_server.new_database(f"{postgres_build.database}_statuses")
    engine = PostgresWarehouse(
        postgres_server.connect(database),
        "moengage_state",
        lambda: postgres_server.connect(database),
    )
    try:
        write_every_run_status(engine)
    finally:
        engine.close()
    env = dbt_env(postgres_server, database, tmp_path)
    built = dbt([*DBT_BUILD, *TARGET, "--vars", "{moengage_state_schema: moengage_state}"], env)
    assert built.returncode == 0, output(built)
    build = PostgresBuild(postgres_server, database, tmp_path / "target", env)
    check_package_results(
        json.loads((build.target_dir / "run_results.json").read_text())["results"]
    )
    assert statuses_shown(build.query, SCHEMA) == EVERY_STATUS


def test_create_state_tables_run_operation_twice(
    postgres_build: PostgresBuild, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """What an admin runs before the first sync: the tables appear once, then nothing changes."""
    database = postgres_server.new_database(f"{postgres_build.database}_ops")
    env = dbt_env(postgres_server, database, tmp_path)
    runs = [dbt(["run-operation", "moengage_create_state_tables", *TARGET], env) for _ in "12"]
    for done in runs:
        assert done.returncode == 0, output(done)
    first, second = (done.stdout for done in runs)
    for table in STATE_TABLES:
        assert f'created "{database}"."{SCHEMA}"."{table}"' in first
        assert f'"{database}"."{SCHEMA}"."{table}" already exists' in second
    assert "created" not in second
    build = PostgresBuild(postgres_server, database, tmp_path / "target", env)
    assert state_columns(build, SCHEMA) == contract()
    # Timestamps hold UTC without a zone, whatever the session's time zone.
    assert build.query(
        "select data_type from information_schema.columns"
        " where table_schema = %s and table_name = 'moengage_cohort_members'"
        " and column_name = 'synced_at'",
        (SCHEMA,),
    ) == [("timestamp without time zone",)]


def test_moengage_uid_fails_every_path(postgres_build: PostgresBuild) -> None:
    # The generic test on each fixture of models/uid_rule/: error_if and warn_if "!= N"
    # (uid_rule.yml), so it passes only when it fails exactly the fixture's N bad rows.
    failures = postgres_build.query(
        f"select fixture, failure_reason, sum(row_count) from {SCHEMA}.uid_rule_failures"
        " group by fixture, failure_reason"
    )
    expected = check_fixtures(postgres_build.result, failures)
    assert len({fixture for fixture, _ in expected}) == 7
    assert {reason for _, reason in expected} == {
        "null",
        "empty",
        "whitespace",
        "duplicate",
        "longer than 10",
    }
    for model in ("uid_rule_valid", "uid_rule_collated_postgres"):
        result = postgres_build.result(
            f"test.moengage_integration_tests.moengage_moengage_uid_{model}_"
        )
        assert result["status"] == "pass", result["message"]


def test_collated_column_is_read_as_exact_bytes(postgres_build: PostgresBuild) -> None:
    """Under the column's own collation the three uids are one; the package sees three."""
    [(schema, collation)] = postgres_build.query(
        "select collation_schema, collation_name from information_schema.columns"
        " where table_schema = %s and table_name = 'uid_rule_collated_postgres'"
        " and column_name = 'uid'",
        (SCHEMA,),
    )
    assert (schema, collation) == (SCHEMA, "case_insensitive")
    [(as_collated, as_bytes)] = postgres_build.query(
        'select count(distinct uid), count(distinct uid collate "C")'
        f" from {SCHEMA}.uid_rule_collated_postgres"
    )
    assert (as_collated, as_bytes) == (1, 3)


def test_uid_trim_takes_every_whitespace_character(postgres_build: PostgresBuild) -> None:
    rows = postgres_build.query(
        f"select position, padded_trimmed, blank_trimmed from {SCHEMA}.uid_rule_whitespace"
        " order by position"
    )
    assert [position for position, _, _ in rows] == list(range(1, len(uids.WHITESPACE) + 1))
    assert {(padded, blank) for _, padded, blank in rows} == {("x", "")}


def test_messy_signups_keep_their_refs(postgres_build: PostgresBuild) -> None:
    """The seed's empty strings survive the load (agate reads "" as null; a post-hook restores)."""
    counts = dict(
        postgres_build.query(
            "select quality_note, count(*) from main.app_signups"
            " where (quality_note = 'null_ref' and user_ref is null)"
            " or (quality_note = 'empty_ref' and user_ref = '')"
            " group by quality_note"
        )
    )
    assert counts == {"null_ref": 12, "empty_ref": 8}

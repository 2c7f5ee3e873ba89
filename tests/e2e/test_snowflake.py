"""The DuckDB end-to-end scenarios again, on a Snowflake profile, with Snowflake faked.

The manifest comes from `dbt parse` of integration_tests with dbt-snowflake (relation
names such as MOENGAGE_IT.ANALYTICS.high_value_users). The runner runs as a subprocess
with fakesnow patched into it (tests/snowflake/fakesnow_cli.py), so its own Snowflake
code runs: connection arguments from the profile, SQL, checkpoints, locks, run rows.

What fakesnow cannot show, so these tests do not claim it:
- authentication, roles and grants, login timeouts and connect retries against a real
  outage (tests/unit/test_snowflake_connect.py covers the arguments and the retry loop);
- the connector's result chunk prefetching and its memory use on large results;
- Snowflake's concurrency between sessions: fakesnow keeps each database in a DuckDB
  file that one process at a time may write, so two runners cannot race here;
- the query tag showing in Snowflake's query history (the session parameter is set,
  see test_snowflake_connect.py);
- TIMESTAMP_NTZ against a session time zone, and identifier folding beyond fakesnow's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import fakesnow
import pytest
import snowflake.connector

from dbt_moengage.testing.emulator import Emulator, Faults

from ..conftest import API_KEY, COHORTS, INTEGRATION, ROOT, WORKSPACE, BuiltProject

HERE = Path(__file__).resolve().parents[1] / "snowflake"
DATABASE, SCHEMA = "MOENGAGE_IT", "ANALYTICS"
PASSWORD = "sf-fake-password-never-printed"


@pytest.fixture(scope="session")
def snowflake_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """target/ of `dbt parse` with the dbt-snowflake profile (no connection needed)."""
    target = tmp_path_factory.mktemp("sf") / "target"
    env = {
        **os.environ,
        "DBT_TARGET_PATH": str(target),
        "DBT_LOG_PATH": str(target.parent / "logs"),
        "SNOWFLAKE_PASSWORD": PASSWORD,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    exe = Path(sys.executable).with_name("dbt")
    done = subprocess.run(
        [str(exe), "parse", "--profiles-dir", str(HERE)],
        cwd=INTEGRATION,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["metadata"]["adapter_type"] == "snowflake"
    return target


@dataclass
class FakeSnowflake:
    """A fakesnow database folder holding the cohort models, and a copied dbt target."""

    db_path: Path
    target_dir: Path
    expected: dict[str, set[str]]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run SQL against the fake account from this process."""
        with fakesnow.patch(db_path=str(self.db_path)):
            conn = snowflake.connector.connect(database=DATABASE, schema=SCHEMA, paramstyle="qmark")
            try:
                cursor = conn.cursor()
                cursor.execute(sql, params)
                return list(cursor.fetchall())
            finally:
                conn.close()

    def state(self, cohort_id: str, workspace: str = WORKSPACE) -> set[str]:
        rows = self.query(
            f"select uid from {DATABASE}.{SCHEMA}.MOENGAGE_COHORT_MEMBERS "
            "where workspace_id = ? and cohort_id = ?",
            (workspace, cohort_id),
        )
        return {uid for (uid,) in rows}


@pytest.fixture
def snow(
    built_project: BuiltProject, snowflake_manifest: Path, tmp_path: Path
) -> Iterator[FakeSnowflake]:
    """The integration_tests cohorts loaded into a fake Snowflake, one per test."""
    db_path = tmp_path / "fakesnow"
    db_path.mkdir()
    target = tmp_path / "target"
    shutil.copytree(snowflake_manifest, target)
    fake = FakeSnowflake(db_path, target, {})
    with duckdb.connect(str(built_project.database), read_only=True) as source:
        tables = {}
        for cohort_id, (table, column) in COHORTS.items():
            kind = "integer" if column == "customer_number" else "varchar"
            values = [
                v for (v,) in source.execute(f'select "{column}" from main.{table}').fetchall()
            ]
            tables[table] = (column, kind, values)
            fake.expected[cohort_id] = built_project.expected_members(cohort_id)
    with fakesnow.patch(db_path=str(db_path)):
        conn = snowflake.connector.connect(database=DATABASE, schema=SCHEMA, paramstyle="qmark")
        cursor = conn.cursor()
        for table, (column, kind, values) in tables.items():
            cursor.execute(f"create table {DATABASE}.{SCHEMA}.{table} ({column} {kind})")
            cursor.execute(
                f"insert into {DATABASE}.{SCHEMA}.{table} "
                f"select value::{kind} from table(flatten(input => parse_json(?)))",
                [json.dumps(values)],
            )
        conn.close()
    yield fake


def sf_env(snow: FakeSnowflake, emulator: Emulator, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DBT_TARGET_PATH": str(snow.target_dir),
        "SNOWFLAKE_PASSWORD": PASSWORD,
        "MOENGAGE_WORKSPACE_ID": WORKSPACE,
        "MOENGAGE_API_KEY": API_KEY,
        "MOENGAGE_BASE_URL": emulator.url,
        "MOENGAGE_RETRY_INITIAL_SECONDS": "0.05",
        "MOENGAGE_RETRY_MAX_SECONDS": "0.5",
        "COLUMNS": "200",
        **extra,
    }


def sf_args(snow: FakeSnowflake, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(HERE / "fakesnow_cli.py"),
        str(snow.db_path),
        "sync",
        "--project-dir",
        str(INTEGRATION),
        "--profiles-dir",
        str(HERE),
        *extra,
    ]


def sf_sync(
    snow: FakeSnowflake, emulator: Emulator, *extra: str, **env: str
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        sf_args(snow, *extra),
        cwd=ROOT,
        env=sf_env(snow, emulator, **env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    written = [p.read_text() for p in snow.target_dir.glob("*.json")]
    for text in (done.stdout, done.stderr, *written):
        assert PASSWORD not in text and API_KEY not in text
    return done


def report(snow: FakeSnowflake) -> dict[str, dict[str, Any]]:
    data = json.loads((snow.target_dir / "moengage_sync_results.json").read_text())
    return {c["cohort_id"]: c for c in data["cohorts"]}


def assert_exact(snow: FakeSnowflake, emulator: Emulator) -> None:
    for cohort_id, expected in snow.expected.items():
        assert emulator.members(cohort_id) == expected, cohort_id
        assert snow.state(cohort_id) == expected, cohort_id


def test_first_sync_is_exact(snow: FakeSnowflake, emulator: Emulator) -> None:
    done = sf_sync(snow, emulator)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_exact(snow, emulator)
    rows = report(snow)
    assert rows["enterprise_accounts"]["added"] == len(snow.expected["enterprise_accounts"])
    assert rows["messy_signups"]["dropped"]["null"] > 0
    runs = snow.query(
        f"select cohort_id, status from {DATABASE}.{SCHEMA}.MOENGAGE_SYNC_RUNS order by 1"
    )
    assert runs == [(c, "synced") for c in sorted(COHORTS)]
    for table in ("MOENGAGE_SYNC_RUNS", "MOENGAGE_COHORT_MEMBERS", "MOENGAGE_SYNC_LOCKS"):
        dump = repr(snow.query(f"select * from {DATABASE}.{SCHEMA}.{table}"))
        assert PASSWORD not in dump and API_KEY not in dump


def test_unchanged_rerun_sends_nothing(snow: FakeSnowflake, emulator: Emulator) -> None:
    assert sf_sync(snow, emulator).returncode == 0
    before = len(emulator.requests())
    done = sf_sync(snow, emulator)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(emulator.requests()) == before
    assert all(r["added"] == 0 and r["requests"] == 0 for r in report(snow).values())


def test_new_members_only(snow: FakeSnowflake, emulator: Emulator) -> None:
    assert sf_sync(snow, emulator).returncode == 0
    before = len(emulator.requests())
    new = [f"sf-new-{i}" for i in range(7)]
    snow.query(
        f"insert into {DATABASE}.{SCHEMA}.high_value_users "
        "select value::varchar from table(flatten(input => parse_json(?)))",
        [json.dumps(new)],
    )
    snow.expected["high_value_users"] |= set(new)
    done = sf_sync(snow, emulator)
    assert done.returncode == 0, done.stdout + done.stderr
    fresh = emulator.requests()[before:]
    assert sum(r.members for r in fresh) == len(new)
    assert report(snow)["high_value_users"]["added"] == len(new)
    assert_exact(snow, emulator)


def test_mirror_removes_what_left(snow: FakeSnowflake, emulator: Emulator) -> None:
    manifest_path = snow.target_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    node = manifest["nodes"]["model.moengage_integration_tests.high_value_users"]
    node["config"]["meta"]["moengage"]["mode"] = "mirror"
    manifest_path.write_text(json.dumps(manifest))
    assert sf_sync(snow, emulator).returncode == 0

    gone = sorted(snow.expected["high_value_users"])[:5]
    snow.query(
        f"delete from {DATABASE}.{SCHEMA}.high_value_users where uid in "
        "(select value::varchar from table(flatten(input => parse_json(?))))",
        [json.dumps(gone)],
    )
    snow.expected["high_value_users"] -= set(gone)
    before = len(emulator.requests())
    done = sf_sync(snow, emulator)
    assert done.returncode == 0, done.stdout + done.stderr
    removals = [r for r in emulator.requests()[before:] if r.action == "remove_members"]
    assert sum(r.members for r in removals) == len(gone)
    assert report(snow)["high_value_users"]["removed"] == len(gone)
    assert_exact(snow, emulator)


def test_sigkill_then_resume(snow: FakeSnowflake, emulator: Emulator) -> None:
    emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=0.01))
    # The killed runner's lock row stays behind; it goes stale after 2 s without a beat.
    env = sf_env(
        snow,
        emulator,
        # About 120 requests in all: the killed run's row counts as a runner sending until
        # it is stale (30 s on Snowflake), and the next run's half of the quota holds the rest.
        MOENGAGE_MAX_BODY_BYTES="1400",
        MOENGAGE_MAX_IN_FLIGHT="4",
        MOENGAGE_LOCK_STALE_SECONDS="2",
    )
    proc = subprocess.Popen(
        sf_args(snow), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while len(emulator.requests()) < 40:
        assert proc.poll() is None, "the runner finished before the kill point"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    biggest = max(r.members for r in emulator.requests())

    emulator.set_faults(Faults())
    done = subprocess.run(
        sf_args(snow), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert_exact(snow, emulator)
    resent = sum(emulator.delivered(c) - len(emulator.members(c)) for c in COHORTS)
    assert resent <= 4 * biggest

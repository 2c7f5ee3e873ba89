"""End to end on Postgres: integration_tests built with `dbt build --target postgres` on a
real server on 127.0.0.1, synced to the emulator by the runner as a subprocess, the way
the DuckDB suite does it: exact membership with awkward uids, an unchanged re-run, mirror
mode, kill -9 and resume, two runners at once, two runners sharing one workspace's quota."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from bisect import bisect_left
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from dbt_moengage import uids
from dbt_moengage.testing.emulator import Emulator, EmulatorConfig, Faults

from ..conftest import API_KEY, COHORTS, INTEGRATION, ROOT, WORKSPACE, dbt, run_cli, sync_env
from ..postgres_server import PostgresServer
from .test_crash import IN_FLIGHT, resent_uids

TARGET = ("--target", "postgres")
_copies = itertools.count(1)


@dataclass(frozen=True)
class PgProject:
    """integration_tests built on Postgres: its database, target folder and environment."""

    server: PostgresServer
    database: str
    target_dir: Path
    env: dict[str, str]
    project_dir: Path = INTEGRATION

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self.server.connect(self.database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def expected_members(self, cohort_id: str) -> set[str]:
        """The cohort's uids computed here, independently of the runner's SQL."""
        relation, column = COHORTS[cohort_id]
        rows = self.query(f'select "{column}"::text from main.{relation}')
        return {value for (value,) in rows if value is not None and not uids.problem(value)}


@pytest.fixture(scope="session")
def pg_built(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> PgProject:
    """`dbt deps` and `dbt build --target postgres` once, into a template database."""
    database = postgres_server.new_database("it_sync_template")
    work = tmp_path_factory.mktemp("pg_sync")
    env = {
        **os.environ,
        **postgres_server.profile_env(database),
        "DBT_TARGET_PATH": str(work / "target"),
        "DBT_LOG_PATH": str(work / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    for args in (["deps"], ["build", *TARGET]):
        done = dbt(args, env)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return PgProject(postgres_server, database, work / "target", env)


@pytest.fixture
def pg(pg_built: PgProject, tmp_path: Path) -> PgProject:
    """A copy of the built database and target folder per test (CREATE DATABASE ... TEMPLATE)."""
    database = f"it_sync_{next(_copies)}"
    # Not `with conn`: psycopg2 opens a transaction block there, and CREATE DATABASE
    # cannot run in one.
    conn = pg_built.server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f'drop database if exists "{database}" with (force)')
            cur.execute(f'create database "{database}" template "{pg_built.database}"')
    finally:
        conn.close()
    target = tmp_path / "target"
    shutil.copytree(pg_built.target_dir, target)
    # The manifest's relation names carry the database dbt built in: point them at the copy.
    manifest = target / "manifest.json"
    manifest.write_text(
        manifest.read_text().replace(f'\\"{pg_built.database}\\".', f'\\"{database}\\".')
    )
    env = {
        **pg_built.env,
        **pg_built.server.profile_env(database),
        "DBT_TARGET_PATH": str(target),
    }
    return PgProject(pg_built.server, database, target, env)


def args(*extra: str) -> list[str]:
    return [
        "sync",
        "--project-dir",
        str(INTEGRATION),
        "--profiles-dir",
        str(INTEGRATION),
        *TARGET,
        *extra,
    ]


def env_for(project: PgProject, emulator: Emulator, **extra: str) -> dict[str, str]:
    return sync_env(project, emulator, **extra)  # type: ignore[arg-type]


def sync(project: PgProject, emulator: Emulator, *extra: str, **env: str) -> Any:
    return run_cli(args(*extra), env_for(project, emulator, **env))


def ok(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout[-4000:] + done.stderr[-4000:]


def results(project: PgProject) -> dict[str, dict[str, Any]]:
    data = json.loads((project.target_dir / "moengage_sync_results.json").read_text())
    return {c["cohort_id"] or c["model"]: c for c in data["cohorts"]}


def assert_exact(project: PgProject, emulator: Emulator) -> None:
    for cohort_id in COHORTS:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id), cohort_id


AWKWARD = ["é", "e\u0301", "quo'te", 'back\\slash"', "tab\tbed", "用户🎉", "x" * 200]


def test_exact_membership_with_awkward_uids_then_an_unchanged_rerun(
    pg: PgProject, emulator: Emulator
) -> None:
    pg.query("insert into main.high_value_users (uid) select unnest(%s::text[])", (AWKWARD,))
    first = sync(pg, emulator)
    assert first.returncode == 0, ok(first)
    assert_exact(pg, emulator)
    assert set(AWKWARD) <= emulator.members("high_value_users")
    # Integers (enterprise_accounts' customer_number) arrive as their text.
    assert all(uid.isdigit() for uid in emulator.members("enterprise_accounts"))
    before = len(emulator.requests())
    again = sync(pg, emulator)
    assert again.returncode == 0, ok(again)
    assert len(emulator.requests()) == before
    assert all(row["requests"] == 0 for row in results(pg).values())
    state = pg.query("select count(*) from main.moengage_cohort_members")
    assert state[0][0] == sum(len(pg.expected_members(c)) for c in COHORTS)


def test_mirror_removes_exactly_what_left(pg: PgProject, emulator: Emulator) -> None:
    manifest_path = pg.target_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    node = manifest["nodes"]["model.moengage_integration_tests.high_value_users"]
    node["config"]["meta"]["moengage"]["mode"] = "mirror"
    manifest_path.write_text(json.dumps(manifest))
    first = sync(pg, emulator, "--select", "high_value_users")
    assert first.returncode == 0, ok(first)
    gone = pg.query("select uid from main.high_value_users order by uid limit 9")
    pg.query(
        "delete from main.high_value_users where uid in (select unnest(%s::text[]))",
        ([u for (u,) in gone],),
    )
    done = sync(pg, emulator, "--select", "high_value_users")
    assert done.returncode == 0, ok(done)
    row = results(pg)["high_value_users"]
    assert row["removed"] == 9 and row["added"] == 0
    assert emulator.members("high_value_users") == pg.expected_members("high_value_users")


def start(project: PgProject, emulator: Emulator, **extra: str) -> subprocess.Popen[str]:
    env = env_for(
        project,
        emulator,
        MOENGAGE_MAX_BODY_BYTES="700",
        MOENGAGE_MAX_IN_FLIGHT=str(IN_FLIGHT),
        MOENGAGE_LOCK_WAIT_SECONDS="120",
        **extra,
    )
    return subprocess.Popen(
        [sys.executable, "-m", "dbt_moengage", *args()],
        cwd=ROOT,
        env={**env, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def status_json(project: PgProject, emulator: Emulator, **extra: str) -> tuple[int, dict[str, str]]:
    """`status --output json`: each cohort's health, by cohort id."""
    status = ["status", *args()[1:], "--output", "json"]
    done = run_cli(status, env_for(project, emulator, **extra))
    assert done.returncode in (0, 1), ok(done)
    data = json.loads(done.stdout)
    return done.returncode, {row["cohort_id"]: row["health"] for row in data["cohorts"]}


@pytest.fixture(params=["direct", "pgbouncer"])
def via(request: pytest.FixtureRequest, pg: PgProject) -> PgProject:
    """The project reached directly, or through PgBouncer in transaction pooling mode,
    where each transaction may run on another server connection."""
    if request.param == "direct":
        return pg
    pooled: PostgresServer = request.getfixturevalue("pgbouncer")
    return replace(pg, env={**pg.env, **pooled.profile_env(pg.database)})


# A killed runner's lock row is stale after this (MOENGAGE_LOCK_STALE_SECONDS).
STALE = "3"


def test_kill_9_then_resume_exactly(via: PgProject, emulator: Emulator) -> None:
    # Slow enough (20 requests a second) that `status` reads the state mid-sync.
    emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=0.2))
    proc = start(via, emulator, MOENGAGE_LOCK_STALE_SECONDS=STALE)
    deadline = time.monotonic() + 120
    while len(emulator.requests()) < 40:
        assert proc.poll() is None, "the runner finished before the kill point"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    # While it runs, the cohort it is sending holds its lock row: 'running', exit 0.
    code, health = status_json(via, emulator, MOENGAGE_LOCK_STALE_SECONDS=STALE)
    assert proc.poll() is None, "the runner finished while status read the state"
    assert code == 0 and "running" in health.values(), health
    assert "stopped" not in health.values(), health
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # Killed: its row still says 'running', but its lock row is no longer beaten.
    time.sleep(float(STALE) + 0.5)
    code, health = status_json(via, emulator, MOENGAGE_LOCK_STALE_SECONDS=STALE)
    assert code == 1 and "stopped" in health.values(), health
    assert "running" not in health.values(), health
    biggest = max(r.members for r in emulator.requests())
    emulator.set_faults(Faults())
    # The killed runner's row is stale: the next run takes it over at once.
    done = run_cli(
        args(),
        env_for(via, emulator, MOENGAGE_LOCK_WAIT_SECONDS="5", MOENGAGE_LOCK_STALE_SECONDS=STALE),
    )
    assert done.returncode == 0, ok(done)
    assert_exact(via, emulator)
    assert resent_uids(emulator) <= IN_FLIGHT * biggest
    assert status_json(via, emulator) == (0, dict.fromkeys(COHORTS, "ok"))


def test_two_runners_deliver_each_uid_once(via: PgProject, emulator: Emulator) -> None:
    first, second = start(via, emulator), start(via, emulator)
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == 0, outputs[0]
    assert second.returncode == 0, outputs[1]
    assert_exact(via, emulator)
    for cohort_id in COHORTS:
        assert emulator.delivered(cohort_id) == len(emulator.members(cohort_id)), cohort_id


def test_the_lock_is_free_as_soon_as_a_run_ends(via: PgProject, emulator: Emulator) -> None:
    """Behind a transaction pooler a session lock outlived its run on a pooled server
    connection, and the next run waited for it: a lock row goes with its run."""
    first = run_cli(args(), env_for(via, emulator, MOENGAGE_LOCK_WAIT_SECONDS="1"))
    assert first.returncode == 0, ok(first)
    assert via.query("select count(*) from main.moengage_sync_locks") == [(0,)]
    assert via.query("select count(*) from pg_locks where locktype = 'advisory'") == [(0,)]
    for _ in range(3):
        again = run_cli(args(), env_for(via, emulator, MOENGAGE_LOCK_WAIT_SECONDS="1"))
        assert again.returncode == 0, ok(again)
    assert_exact(via, emulator)


# A quota the two runners below need more than one window of.
QUOTA = 20


def test_two_runners_of_one_workspace_share_its_quota(pg: PgProject, tmp_path: Path) -> None:
    """Two runners sending different cohorts to one workspace at once (an orchestrator's
    task per model) pace to their shares of its quota: together they never exceed it in any
    60 s window, and the server answers no 429. Each alone would send all its requests at
    once, as its own pacer allows, and together they would pass the quota."""
    config = EmulatorConfig(workspace_id=WORKSPACE, api_key=API_KEY, rate_limit_per_min=QUOTA)
    logs = [tmp_path / f"runner{i}.log" for i in range(2)]
    with Emulator(config) as emulator:
        # Answers slow enough that each runner is still sending when the other joins.
        emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=0.4))
        env = {
            **env_for(pg, emulator, MOENGAGE_MAX_BODY_BYTES="2700", MOENGAGE_MAX_IN_FLIGHT="1"),
            "MOENGAGE_RATE_LIMIT_PER_MIN": str(QUOTA),
        }
        runners = []
        for log, model in zip(logs, ("high_value_users", "recently_active"), strict=True):
            with log.open("w") as out:
                runners.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "dbt_moengage", *args("--select", model)],
                        cwd=ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        for runner in runners:
            runner.wait(timeout=240)
        records = emulator.requests()
    outputs = [log.read_text() for log in logs]
    assert [r.returncode for r in runners] == [0, 0], outputs
    arrivals = sorted(r.at for r in records)
    assert [r.status for r in records if r.status != 200] == []
    busiest = max(bisect_left(arrivals, t + 60) - i for i, t in enumerate(arrivals))
    assert busiest <= QUOTA < len(records)
    by_cohort = {r.cohort_id for r in records}
    assert by_cohort == {"high_value_users", "recently_active_30d"}
    for output in outputs:
        assert "1 other runner is sending to it" in output, output
    assert_exact_cohorts(pg, emulator, ["high_value_users", "recently_active_30d"])
    rows = pg.query("select count(*), count(ended_at) from main.moengage_quota_peers")
    assert rows == [(2, 2)]


def assert_exact_cohorts(project: PgProject, emulator: Emulator, cohort_ids: list[str]) -> None:
    for cohort_id in cohort_ids:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id), cohort_id

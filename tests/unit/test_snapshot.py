"""One snapshot of the model per cohort run, on DuckDB and on Snowflake's stand-in: a model
whose every reading differs (a view drawing random rows) is sent exactly as planned, the
counts, the guard and the streams agree, and the snapshot is gone once the run ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import fakesnow
import pytest
import snowflake.connector

from dbt_moengage.client import MoEngageClient
from dbt_moengage.cohorts import CohortSpec
from dbt_moengage.pipeline import CohortSync
from dbt_moengage.report import GUARDED, SYNCED
from dbt_moengage.settings import MoEngageSettings, Secret
from dbt_moengage.state import StateStore
from dbt_moengage.state.schema import StateKey, normalize_endpoint
from dbt_moengage.testing.emulator import Emulator, EmulatorConfig
from dbt_moengage.warehouse.duckdb import DuckDBWarehouse
from dbt_moengage.warehouse.engine import Engine
from dbt_moengage.warehouse.snowflake import SnowflakeWarehouse

WORKSPACE = "WS_SNAPSHOT"
KEY = "sk-snapshot-test-key"


@pytest.fixture
def server() -> Iterator[Emulator]:
    config = EmulatorConfig(workspace_id=WORKSPACE, api_key=KEY, rate_limit_per_min=None)
    with Emulator(config) as emulator:
        yield emulator


def duckdb_engine(tmp_path: Path) -> tuple[Engine, str, Callable[[str], None]]:
    path = tmp_path / "snap.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("create table main.pool as select 'u-' || i as uid from range(4000) t(i)")
        conn.execute("create table main.gate (keep double)")
        conn.execute("insert into main.gate values (0.5)")
        # Each reading keeps a different random share of the pool (random() inside a hash:
        # compared alone with a subquery, DuckDB draws it once).
        conn.execute(
            "create view main.shifting as select uid from main.pool "
            "where hash(uid || random()::varchar) % 100 < (select keep * 100 from main.gate)"
        )
    engine = DuckDBWarehouse(str(path))

    def execute(sql: str) -> None:
        engine.conn.execute(sql)

    return engine, f'"{path.stem}"."main"."shifting"', execute


def snowflake_engine(tmp_path: Path) -> tuple[Engine, str, Callable[[str], None]]:
    def session() -> Any:
        return snowflake.connector.connect(database="DB", schema="ANALYTICS", paramstyle="qmark")

    conn = session()
    cursor = conn.cursor()
    cursor.execute("create schema if not exists DB.ANALYTICS")
    cursor.execute("create schema if not exists DB.MOENGAGE_STATE")
    cursor.execute(
        "create table DB.ANALYTICS.pool as select 'u-' || seq4() as uid "
        "from table(generator(rowcount => 4000))"
    )
    cursor.execute("create table DB.ANALYTICS.gate (keep double)")
    cursor.execute("insert into DB.ANALYTICS.gate values (0.5)")
    cursor.execute(
        "create view DB.ANALYTICS.shifting as select uid from DB.ANALYTICS.pool "
        "where abs(hash(uid || random()::varchar)) % 100 < "
        "(select keep * 100 from DB.ANALYTICS.gate)"
    )
    engine = SnowflakeWarehouse(conn, "DB", "MOENGAGE_STATE", opener=session)

    def execute(sql: str) -> None:
        conn.cursor().execute(sql.replace("main.", "DB.ANALYTICS."))

    return engine, "DB.ANALYTICS.shifting", execute


@pytest.fixture(params=["duckdb", "snowflake"])
def engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Engine, str, Callable[[str], None]]]:
    if request.param == "duckdb":
        made = duckdb_engine(tmp_path)
        yield made
        made[0].close()
        return
    with fakesnow.patch():
        made = snowflake_engine(tmp_path)
        yield made
        made[0].close()


def run_once(engine: Engine, relation: str, server: Emulator, **changes: Any) -> CohortSync:
    settings = MoEngageSettings(
        workspace_id=WORKSPACE,
        api_key=Secret(KEY),
        base_url=server.url,
        max_body_bytes=4_000,
        backoff_initial=0.01,
        backoff_max=0.05,
    )
    spec = CohortSpec(
        model="shifting",
        unique_id="model.unit.shifting",
        relation_name=relation,
        cohort_name=".Shifting",
        cohort_id="shifting",
        description="a model whose every reading differs",
        uid_column="uid",
    )
    state = StateStore(engine)
    state.prepare(create=True)
    with MoEngageClient(settings) as client:
        job = CohortSync(replace(spec, **changes), engine, state, client, settings, "run")
        job.run(full_refresh=False)
    return job


def test_what_is_sent_is_what_was_planned(
    engine: tuple[Engine, str, Callable[[str], None]], server: Emulator
) -> None:
    warehouse, relation, _ = engine
    first = run_once(warehouse, relation, server, mode="mirror").result
    assert first.status == SYNCED, first.error
    members = server.members("shifting")
    assert first.uids_total == first.planned_add == first.added == len(members)
    assert 1000 < len(members) < 3000

    # A mirror run: another random half is read once, and both streams come from it.
    second = run_once(warehouse, relation, server, mode="mirror", max_remove_fraction=1.0).result
    assert second.status == SYNCED, second.error
    assert (second.added, second.removed) == (second.planned_add, second.planned_remove)
    assert len(server.members("shifting")) == second.uids_total
    assert second.planned_remove > 0 and second.planned_add > 0


def test_the_guard_judges_the_reading_that_is_sent(
    engine: tuple[Engine, str, Callable[[str], None]], server: Emulator
) -> None:
    warehouse, relation, execute = engine
    first = run_once(warehouse, relation, server, mode="mirror").result
    assert first.status == SYNCED, first.error
    # Most of the audience goes: the guard holds, and nothing is sent.
    execute("update main.gate set keep = 0.05")
    guarded = run_once(warehouse, relation, server, mode="mirror").result
    assert guarded.status == GUARDED
    assert guarded.requests == 0
    assert len(server.members("shifting")) == first.added


def test_no_snapshot_is_left_behind(
    engine: tuple[Engine, str, Callable[[str], None]], server: Emulator
) -> None:
    warehouse, relation, _ = engine
    job = run_once(warehouse, relation, server)
    assert job.result.status == SYNCED
    assert warehouse._snapshots == {}
    key = StateKey(normalize_endpoint(server.url), WORKSPACE)
    table = warehouse.snapshot_table(job.spec, key)
    assert table is not None
    with pytest.raises(Exception):  # noqa: B017 - each engine's own "no such table"
        warehouse.execute_sql(f"select count(*) from {table}").close()

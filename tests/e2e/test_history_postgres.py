"""state/history on a real PostgreSQL server: the reads `status` and `report` make (members,
last runs, last successes, run history, cohorts left behind) give what they give on DuckDB
and Snowflake."""

from __future__ import annotations

from pathlib import Path

from dbt_moengage.state.history import StateHistory
from dbt_moengage.warehouse import connect

from ..postgres_server import PostgresServer
from ..unit.test_history import check_seeded, seed
from ..unit.test_left_behind import check as check_left_behind
from ..unit.test_left_behind import seed as seed_left_behind
from .test_warehouse_postgres import target


def test_reads_members_last_runs_and_history_per_key(
    postgres_server: PostgresServer, postgres_database: str, tmp_path: Path
) -> None:
    profile = target(postgres_server, postgres_database, tmp_path)
    with connect(profile, tmp_path) as engine:
        assert not StateHistory(engine).exists
        seed(engine)
    with connect(profile, tmp_path, read_only=True) as engine:
        check_seeded(StateHistory(engine))


def test_finds_cohorts_left_behind(
    postgres_server: PostgresServer, postgres_database: str, tmp_path: Path
) -> None:
    profile = target(postgres_server, postgres_database, tmp_path)
    with connect(profile, tmp_path) as engine:
        seed_left_behind(engine)
    with connect(profile, tmp_path, read_only=True) as engine:
        check_left_behind(StateHistory(engine))

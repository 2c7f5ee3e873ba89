"""state/history on a real PostgreSQL server: the reads `status` and `report` make (members,
last runs, last successes, run history) give what they give on DuckDB and Snowflake."""

from __future__ import annotations

from pathlib import Path

from dbt_moengage.state.history import StateHistory
from dbt_moengage.warehouse import connect

from ..postgres_server import PostgresServer
from ..unit.test_history import check_seeded, seed
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

"""The Postgres engine on a real PostgreSQL server on 127.0.0.1 (tests/postgres_server.py):
uid columns, the uid rule as exact bytes, the state flow, a server-side cursor, the
advisory lock, and the DDL lock shared with the dbt package."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbt_moengage.cohorts import CohortSpec
from dbt_moengage.errors import LockLost, LockTimeout, ProfileError, WarehouseError
from dbt_moengage.integrations.dbt_cloud import CloudRun, RunLedger, WebhookConfig
from dbt_moengage.settings import Secret
from dbt_moengage.state import Change, StateKey, StateStore
from dbt_moengage.state.schema import STATE_COLUMNS, STATE_TABLES
from dbt_moengage.warehouse import connect
from dbt_moengage.warehouse.audience import LongUids, UidColumn
from dbt_moengage.warehouse.postgres import PostgresWarehouse
from dbt_moengage.warehouse.profiles import ProfileTarget, load_profile_target

from ..postgres_server import PostgresServer

KEY = StateKey("http://127.0.0.1:8765", "WS_PG")
SECRET = "pg-pw-never-shown"


def target(server: PostgresServer, dbname: str, tmp_path: Path, **fields: Any) -> ProfileTarget:
    """A dbt-postgres profile target for the test database, rendered by dbt."""
    output = {
        "type": "postgres",
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": "",
        "dbname": dbname,
        "schema": "analytics",
        "threads": 1,
        **fields,
    }
    (tmp_path / "dbt_project.yml").write_text(
        yaml.safe_dump({"name": "pg", "version": "1.0", "profile": "pg"})
    )
    (tmp_path / "profiles.yml").write_text(
        yaml.safe_dump({"pg": {"target": "dev", "outputs": {"dev": output}}})
    )
    return load_profile_target(tmp_path, tmp_path, environ={"HOME": str(tmp_path)})


@pytest.fixture
def engine(
    postgres_server: PostgresServer, postgres_database: str, tmp_path: Path
) -> Iterator[PostgresWarehouse]:
    with postgres_server.connect(postgres_database) as conn, conn.cursor() as cur:
        cur.execute("create schema analytics")
        cur.execute("create table analytics.aud (uid text, n bigint, d numeric(10,2), f real)")
    opened = connect(target(postgres_server, postgres_database, tmp_path), tmp_path)
    assert isinstance(opened, PostgresWarehouse)
    yield opened
    opened.close()


@pytest.fixture
def state(engine: PostgresWarehouse) -> StateStore:
    store = StateStore(engine)
    assert store.prepare(create=True).ready
    return store


def spec(column: str = "uid", **changes: Any) -> CohortSpec:
    base = CohortSpec(
        model="aud",
        unique_id="model.pg.aud",
        relation_name='"analytics"."aud"',
        cohort_name="Aud",
        cohort_id="aud",
        description="d",
        uid_column=column,
    )
    return replace(base, **changes)


def load(engine: PostgresWarehouse, values: list[Any], column: str = "uid") -> None:
    with engine.conn.cursor() as cur:
        cur.executemany(f"insert into analytics.aud ({column}) values (%s)", [[v] for v in values])


def uids(state: StateStore, cohort: CohortSpec, change: Change, **kwargs: Any) -> list[str]:
    return sorted(u for batch in state.stream(cohort, KEY, change, **kwargs) for u in batch)


def test_uid_columns_and_types(engine: PostgresWarehouse) -> None:
    assert engine.check_uid_column(spec("UID")) == UidColumn("uid", "text")
    assert engine.check_uid_column(spec("n")) == UidColumn("n", "bigint")
    for column in ("d", "f"):
        with pytest.raises(WarehouseError, match="uids must be text or whole numbers"):
            engine.check_uid_column(spec(column))
    with pytest.raises(WarehouseError, match="columns: uid, n, d, f"):
        engine.check_uid_column(spec("nope"))
    with pytest.raises(WarehouseError, match="does not exist"):
        engine.check_uid_column(replace(spec(), relation_name='"analytics"."nope"'))


def test_citext_and_text_domains_are_text_and_other_types_are_named(
    engine: PostgresWarehouse, state: StateStore
) -> None:
    """An extension's type has no fixed oid: citext was refused as "type 16387"."""
    with engine.conn.cursor() as cur:
        cur.execute("create extension if not exists citext")
        cur.execute("create domain analytics.handle as varchar(40)")
        cur.execute(
            "create table analytics.typed (ci citext, h analytics.handle, at date, j jsonb)"
        )
        cur.execute("insert into analytics.typed (ci, h) values ('abc', 'x'), ('ABC', 'y')")
    typed = replace(spec(), relation_name='"analytics"."typed"')
    assert engine.check_uid_column(replace(typed, uid_column="ci")) == UidColumn("ci", "citext")
    # A domain's column is described by its base type.
    assert engine.check_uid_column(replace(typed, uid_column="h")) == UidColumn("h", "varchar")
    for column, shown in (("at", "date"), ("j", "jsonb")):
        with pytest.raises(WarehouseError, match=rf"has type {shown}; uids must be text"):
            engine.check_uid_column(replace(typed, uid_column=column))
    # citext compares case-insensitively; uids are exact bytes: 'abc' and 'ABC' are two.
    cohort = replace(typed, uid_column="ci")
    assert uids(state, cohort, Change.NEW) == ["ABC", "abc"]


def test_the_uid_rule_and_exact_bytes(engine: PostgresWarehouse, state: StateStore) -> None:
    awkward = ["é", "e\u0301", "quo'te", 'back\\slash"', "tab\tbed", "x" * 200, "用户🎉"]
    load(engine, ["abc", "ABC", "Abc", None, "", " ", "\u00a0", " padded", "dup", "dup"])
    load(engine, awkward)
    cohort = spec()
    stats = engine.audience_stats(cohort)
    delta = state.plan(cohort, KEY, False)
    assert stats.dropped(delta.distinct) == {
        "null": 1,
        "empty": 3,
        "whitespace": 1,
        "duplicate": 1,
        "too_long": 0,
    }
    expected = sorted(["abc", "ABC", "Abc", "dup", *awkward])
    assert uids(state, cohort, Change.NEW) == expected
    assert delta.distinct == len(expected)


def test_count_and_uid_lengths_without_state(engine: PostgresWarehouse) -> None:
    """What `sync --dry-run` asks before any state exists: Postgres wants subquery aliases.
    uids over max_uid_length are counted (distinct and rows) and left out of the rest."""
    load(engine, ["a", "bb", "bb", "cccc", None, " x"])
    assert engine.count_model(spec()) == 3
    assert engine.long_uids(spec(max_uid_length=4)) is None
    assert engine.long_uids(spec(max_uid_length=1)) == LongUids(2, 3, "bb")
    limited = spec(max_uid_length=1)
    assert engine.count_model(limited) == 1
    stats = engine.audience_stats(limited)
    assert stats.too_long == 3
    assert stats.dropped(1) == {
        "null": 1,
        "empty": 0,
        "whitespace": 1,
        "duplicate": 0,
        "too_long": 3,
    }


def test_a_nondeterministic_collation_is_compared_as_bytes(
    engine: PostgresWarehouse, state: StateStore
) -> None:
    with engine.conn.cursor() as cur:
        cur.execute(
            "create collation if not exists ci (provider = icu, locale = 'und-u-ks-level2', "
            "deterministic = false)"
        )
        cur.execute('create table analytics.ci_aud (uid text collate "ci")')
        cur.execute("insert into analytics.ci_aud values ('abc'), ('ABC'), ('Abc')")
    cohort = replace(spec(), relation_name='"analytics"."ci_aud"')
    state.record_added(cohort, KEY, ["abc"], "run-1")
    assert uids(state, cohort, Change.NEW) == ["ABC", "Abc"]
    assert state.plan(cohort, KEY, False).distinct == 3


def test_state_round_trip_with_checkpoints_while_streaming(
    engine: PostgresWarehouse, state: StateStore
) -> None:
    load(engine, [f"u{i:04d}" for i in range(2_500)])
    cohort = spec(mode="mirror")
    seen: list[str] = []
    # The delta is read on its own session while checkpoints commit on the main one.
    for batch in state.stream(cohort, KEY, Change.NEW, batch_rows=300):
        state.record_added(cohort, KEY, batch, "run-1")
        seen.extend(batch)
    assert len(seen) == 2_500 and len(set(seen)) == 2_500
    plan = state.plan(cohort, KEY, False)
    assert (plan.to_add, plan.unchanged, plan.current) == (0, 2_500, 2_500)
    with engine.conn.cursor() as cur:
        cur.execute("delete from analytics.aud where uid < 'u0010'")
    assert uids(state, cohort, Change.LEFT) == [f"u{i:04d}" for i in range(10)]
    state.record_removed(cohort, KEY, [f"u{i:04d}" for i in range(10)])
    assert state.plan(cohort, KEY, False).to_remove == 0
    state.record_resent(cohort, KEY, ["u0100"], "run-2")
    assert uids(state, replace(cohort, resend_after=0), Change.DUE)[:1] == ["u0010"]
    # The re-send is a second row of u0100 until the run's end compacts it.
    plan = state.plan(cohort, KEY, False)
    assert (plan.current, plan.rows, plan.uncompacted) == (2_490, 2_491, True)
    state.compact(cohort, KEY, "run-2", everyone=True)
    plan = state.plan(cohort, KEY, False)
    assert (plan.current, plan.rows, plan.unchanged) == (2_490, 2_490, 2_490)


def test_the_state_tables_match_the_contract(engine: PostgresWarehouse, state: StateStore) -> None:
    columns = engine.state_columns()
    assert set(columns) == set(STATE_TABLES)
    for table, expected in STATE_COLUMNS.items():
        assert columns[table] == {name for name, _, _ in expected}
    # Again: nothing to create, nothing to upgrade.
    assert state.prepare(create=True).upgraded_from is None


def test_the_webhook_receivers_runs_are_kept_on_postgres(
    postgres_server: PostgresServer, postgres_database: str, tmp_path: Path
) -> None:
    target(postgres_server, postgres_database, tmp_path)  # the project and profile files
    config = WebhookConfig(
        secret=Secret("s"),
        api_token=Secret("t"),
        project_dir=tmp_path,
        profiles_dir=tmp_path,
        environ={"HOME": str(tmp_path)},
    )
    ledger = RunLedger(config)
    ledger.open()
    run = CloudRun(account_id="1", job_id="10", run_id="100", status="Success")
    assert ledger.claim(run).duplicate == ""
    assert ledger.claim(run).duplicate == "is in progress (queued or syncing)"
    ledger.attempted(run, 3)
    assert ledger.queued() == [(run, 3)]
    ledger.finish(run, "given_up", 3, "HTTP 503")
    assert ledger.queued() == []
    assert ledger.claim(run).duplicate == ""
    ledger.finish(run, "synced", 1, None)
    assert ledger.claim(run).duplicate == "was already synced"


def test_members_and_locks_are_keyed(engine: PostgresWarehouse, state: StateStore) -> None:
    """Removal checkpoints look members up by key, not by scanning every member of every
    cohort (re-send checkpoints look nothing up: they insert); lock rows collide on theirs.
    State made before the keys gets them."""

    def keys() -> dict[str, str]:
        with engine.conn.cursor() as cur:
            cur.execute("select indexname, indexdef from pg_indexes where schemaname = 'analytics'")
            return {str(name): str(text) for name, text in cur.fetchall()}

    found = keys()
    assert "(endpoint, workspace_id, cohort_id, uid)" in found["moengage_cohort_members_key"]
    assert found["moengage_sync_locks_key"].startswith("CREATE UNIQUE INDEX")
    with engine.conn.cursor() as cur:
        cur.execute("drop index analytics.moengage_cohort_members_key")
        cur.execute("drop index analytics.moengage_sync_locks_key")
    state.prepare(create=True)
    assert set(keys()) >= {"moengage_cohort_members_key", "moengage_sync_locks_key"}
    # Ten cohorts of 20,000 members: a checkpoint of one request finds its rows by key.
    for n in range(10):
        cohort = spec(cohort_id=f"c{n}")
        state.record_added(cohort, KEY, [f"u{i:05d}" for i in range(20_000)], "run-1")
    with engine.conn.cursor() as cur:
        cur.execute("analyze analytics.moengage_cohort_members")
        cur.execute(
            "explain " + engine.render(engine.format("delete_members")),
            (*KEY.params, "c3", '["u00001"]'),
        )
        plan = " ".join(row[0] for row in cur.fetchall())
    assert "moengage_cohort_members_key" in plan, plan


def test_the_cohort_lock_is_exclusive_across_sessions(
    postgres_server: PostgresServer, postgres_database: str, tmp_path: Path, state: StateStore
) -> None:
    other = connect(target(postgres_server, postgres_database, tmp_path), tmp_path)
    try:
        with state.lock(spec(), KEY, "run-1", wait_seconds=0) as held:
            held.check()
            with (
                pytest.raises(LockTimeout, match="is being synced by another run"),
                StateStore(other).lock(spec(), KEY, "run-2", wait_seconds=0.3),
            ):
                pass
            # Another cohort, or the same cohort on another endpoint, is free.
            with StateStore(other).lock(spec(cohort_id="b"), KEY, "run-3", wait_seconds=0):
                pass
        with StateStore(other).lock(spec(), KEY, "run-2", wait_seconds=0):
            pass
    finally:
        other.close()


def test_a_run_is_alive_while_a_session_holds_its_cohort_lock(
    postgres_server: PostgresServer, postgres_database: str, tmp_path: Path, state: StateStore
) -> None:
    # What `status`, on a session of its own, asks of a run row that says 'running'.
    watcher = connect(target(postgres_server, postgres_database, tmp_path), tmp_path)
    try:
        assert not watcher.lock_alive(KEY, "aud", "run-1")
        with state.lock(spec(), KEY, "run-1", wait_seconds=0):
            assert watcher.lock_alive(KEY, "aud", "run-1")
            assert not watcher.lock_alive(KEY, "b", "run-1")  # another cohort's lock
            other = StateKey("https://api-01.moengage.com", "WS_PG")
            assert not watcher.lock_alive(other, "aud", "run-1")
        assert not watcher.lock_alive(KEY, "aud", "run-1")
    finally:
        watcher.close()


def test_a_waiter_gets_the_lock_when_it_is_released(state: StateStore) -> None:
    released = threading.Event()
    got: list[str] = []

    def wait_for_it() -> None:
        with state.lock(spec(), KEY, "run-2", wait_seconds=20):
            got.append("run-2")

    with state.lock(spec(), KEY, "run-1", wait_seconds=0):
        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        released.wait(0.6)
    waiter.join(20)
    assert got == ["run-2"]


def test_a_lock_taken_over_stops_the_cohort(
    engine: PostgresWarehouse, state: StateStore, postgres_server: PostgresServer
) -> None:
    with state.lock(spec(), KEY, "run-1", wait_seconds=0) as held:
        held.check()
        # Its heartbeat stopped long enough for another run to take the row over.
        engine.execute_sql(
            f"update {engine.state_table('moengage_sync_locks')} set run_id = 'run-2'"
        ).close()
        with pytest.raises(LockLost, match="no longer holds the lock"):
            held.check()


def test_a_dead_runners_lock_is_taken_over_once_stale(
    engine: PostgresWarehouse, state: StateStore
) -> None:
    """A runner killed with its lock row in place: the row is stale after the stale window,
    measured on the server's clock, and the next run takes it over."""
    locks = engine.state_table("moengage_sync_locks")
    engine.execute_sql(
        f"insert into {locks} values (?, ?, 'aud', 'killed', now() at time zone 'utc', "
        "now() at time zone 'utc')",
        KEY.params,
    ).close()
    engine.lock_stale_seconds = 1.0
    with pytest.raises(LockTimeout, match="killed"), state.lock(spec(), KEY, "next", 0.2):
        pass
    with state.lock(spec(), KEY, "next", wait_seconds=5):
        (holder,) = engine.execute_sql(f"select run_id from {locks}").fetchall()
        assert holder == ("next",)
    assert engine.execute_sql(f"select count(*) from {locks}").fetchall() == [(0,)]


def test_a_wrong_password_names_the_settings_and_hides_it(
    postgres_server: PostgresServer, postgres_database: str, tmp_path: Path
) -> None:
    bad = target(postgres_server, postgres_database, tmp_path, port=1, password=SECRET)
    with pytest.raises(ProfileError) as caught:
        connect(bad, tmp_path)
    message = str(caught.value)
    assert "cannot connect to Postgres at 127.0.0.1:1" in message
    assert "check host, port, user, password and dbname" in message
    assert SECRET not in message

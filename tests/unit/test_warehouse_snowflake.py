"""The Snowflake warehouse on fakesnow: types, identifiers, batching, state, locks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import fakesnow
import pytest
import snowflake.connector

from dbt_moengage.cohorts import CohortSpec
from dbt_moengage.errors import Interrupted, LockLost, LockTimeout, WarehouseError
from dbt_moengage.state import Change, utcnow
from dbt_moengage.state import locks as state_locks
from dbt_moengage.state.schema import LOCKS, STATE_TABLES, StateKey
from dbt_moengage.warehouse.audience import UidColumn
from dbt_moengage.warehouse.cancel import CANCELLED
from dbt_moengage.warehouse.snowflake import SnowflakeWarehouse

from ..state_helpers import ADD, REMOVE, RENAME, RESEND, store

WS = "WS_SF"
KEY = StateKey("https://api-01.moengage.com", WS)


def session() -> Any:
    """A new fakesnow session on the same (fake) account."""
    return snowflake.connector.connect(database="DB", schema="ANALYTICS", paramstyle="qmark")


@pytest.fixture
def warehouse() -> Iterator[SnowflakeWarehouse]:
    with fakesnow.patch():
        conn = session()
        wh = SnowflakeWarehouse(conn, "DB", "moengage_state", opener=session)
        cursor = conn.cursor()
        cursor.execute("create schema if not exists DB.ANALYTICS")
        cursor.execute(
            "create table DB.ANALYTICS.audience (user_id varchar, n number(38,0), "
            "d number(10,2), f float)"
        )
        yield wh
        wh.close()


def cohort(column: str = "user_id") -> CohortSpec:
    return CohortSpec(
        model="audience",
        unique_id="model.p.audience",
        relation_name="DB.ANALYTICS.audience",
        cohort_name=".Audience",
        cohort_id="audience",
        description="d",
        uid_column=column,
    )


def load(wh: SnowflakeWarehouse, uids: list[str | None]) -> None:
    cursor = wh.conn.cursor()
    cursor.executemany(
        "insert into DB.ANALYTICS.audience (user_id) values (?)", [(u,) for u in uids]
    )


def test_uid_column_resolves_case_and_whole_numbers(warehouse: SnowflakeWarehouse) -> None:
    assert warehouse.check_uid_column(cohort("user_id")) == UidColumn("USER_ID", "VARCHAR")
    assert warehouse.check_uid_column(cohort("N")) == UidColumn("N", "NUMBER")


@pytest.mark.parametrize(("column", "shown"), [("d", "NUMBER(10,2)"), ("f", "REAL")])
def test_fractional_types_are_refused(
    warehouse: SnowflakeWarehouse, column: str, shown: str
) -> None:
    with pytest.raises(WarehouseError) as caught:
        warehouse.check_uid_column(cohort(column))
    assert f"uid_column = '{column}' has type {shown};" in str(caught.value)


def test_missing_relation_and_column(warehouse: SnowflakeWarehouse) -> None:
    missing = CohortSpec(**{**cohort().__dict__, "relation_name": "DB.ANALYTICS.nope"})
    with pytest.raises(WarehouseError, match="does not exist or the role cannot read it"):
        warehouse.check_uid_column(missing)
    with pytest.raises(WarehouseError, match="columns: USER_ID, N, D, F"):
        warehouse.check_uid_column(cohort("uid"))


def test_state_tables_are_created_upper_case_and_found(warehouse: SnowflakeWarehouse) -> None:
    assert store(warehouse).prepare(create=False).ready is False
    assert store(warehouse).prepare(create=True).ready is True
    assert warehouse.state_columns().keys() == set(STATE_TABLES)
    tables = warehouse.conn.cursor().execute(
        "select table_name from DB.information_schema.tables where table_schema = 'MOENGAGE_STATE'"
    )
    assert tables is not None
    assert {name for (name,) in tables.fetchall()} >= {"MOENGAGE_COHORT_MEMBERS"}


def test_delta_streams_in_batches_and_checkpoints(warehouse: SnowflakeWarehouse) -> None:
    uids = [f"u{i:03d}" for i in range(50)]
    load(warehouse, [*uids, None, "", " \t", uids[0]])
    spec = cohort()
    spec = CohortSpec(**{**spec.__dict__, "uid_column": warehouse.check_uid_column(spec).name})
    store(warehouse).prepare(create=True)
    stats = warehouse.audience_stats(spec)
    delta = store(warehouse).plan(spec, KEY, False)
    assert (stats.rows, stats.nulls, stats.empties, stats.padded) == (54, 1, 2, 0)
    assert (delta.distinct, delta.to_add, delta.to_remove) == (50, 50, 0)
    assert stats.dropped(delta.distinct)["duplicate"] == 1

    batches = list(store(warehouse).stream(spec, KEY, ADD, batch_rows=7))
    assert all(len(b) <= 7 for b in batches) and len(batches) == 8
    assert sorted(u for b in batches for u in b) == uids

    store(warehouse).record_added(spec, KEY, uids[:30], "run-1")
    assert store(warehouse).plan(spec, KEY, False).to_add == 20
    store(warehouse).record_removed(spec, KEY, uids[:5])
    assert store(warehouse).plan(spec, KEY, False).to_add == 25
    store(warehouse).record_added(spec, KEY, ['odd"uid', "x\\y"], "run-1")
    removed = sorted(u for b in store(warehouse).stream(spec, KEY, REMOVE) for u in b)
    assert removed == ['odd"uid', "x\\y"]


# -- exact bytes -------------------------------------------------------------------------------
# MoEngage compares uids as exact bytes; a Snowflake column may carry a collation
# (`collate 'en-ci'`, or DEFAULT_DDL_COLLATION). fakesnow runs on DuckDB and cannot hold one,
# so the SQL text is checked: every use of the uid goes through COLLATE(..., '').

# The column as the catalog spells it, always quoted: Snowflake would fold user_id to USER_ID.
MODEL_UID = 'cast("USER_ID" as varchar)'
EXACT_MODEL_UID = f"collate({MODEL_UID}, '')"
EXACT_STATE_UID = "collate(uid, '')"


DUE = {"due": "1 = 1"}
MODEL_STATEMENTS = ("stats", "model_uids", "count_model", "long_uids", "add_delta")
JOIN_STATEMENTS = ("add_delta", "remove_delta", "plan", "resend_delta", "rename_members")


@pytest.mark.parametrize("name", sorted({*MODEL_STATEMENTS, *JOIN_STATEMENTS}))
def test_the_model_uid_is_stripped_of_any_collation(name: str) -> None:
    text = SnowflakeWarehouse(None, "DB", "moengage_state").format(name, cohort("USER_ID"), DUE)
    assert text.count(EXACT_MODEL_UID) >= 1
    # No bare use of the column's text: each one is inside COLLATE(..., '').
    assert text.count(MODEL_UID) == text.count(EXACT_MODEL_UID)


@pytest.mark.parametrize("name", JOIN_STATEMENTS)
def test_the_state_uid_is_stripped_of_any_collation(name: str) -> None:
    # State tables made where DEFAULT_DDL_COLLATION is set carry it in their uid column.
    text = SnowflakeWarehouse(None, "DB", "moengage_state").format(name, cohort("USER_ID"), DUE)
    assert f"select {EXACT_STATE_UID} as uid" in text and "group by 1" in text


def test_checkpoints_match_state_uids_exactly() -> None:
    text = SnowflakeWarehouse(None, "DB", "moengage_state").format("delete_members")
    assert f"and {EXACT_STATE_UID} in (select value::varchar" in text


def test_compaction_matches_state_uids_exactly() -> None:
    # A re-send of 'ABC' must never compact away the rows of 'abc'.
    warehouse = SnowflakeWarehouse(None, "DB", "moengage_state")
    text = warehouse.format("compact_run")
    assert f"and {EXACT_STATE_UID} in (\n            select {EXACT_STATE_UID} from" in text
    text = warehouse.format("compact_members")
    assert "select collate(m.uid, '') as uid" in text and "group by 1" in text
    assert "collate(d.uid, '') = n.uid" in text


def test_case_variants_stay_apart_on_fakesnow(warehouse: SnowflakeWarehouse) -> None:
    # fakesnow runs the exact SQL: every statement that touches uids still works.
    load(warehouse, ["abc", "ABC", "Abc", " abc", "\t"])
    store(warehouse).prepare(create=True)
    spec = CohortSpec(**{**cohort().__dict__, "mode": "mirror", "resend_after": 0})
    stats = warehouse.audience_stats(spec)
    assert (stats.rows, stats.nulls, stats.empties, stats.padded) == (5, 0, 1, 1)
    store(warehouse).record_added(spec, KEY, ["abc", "gone"], "run-1")
    delta = store(warehouse).plan(spec, KEY, False)
    assert (delta.distinct, delta.to_add, delta.to_resend, delta.to_remove) == (3, 2, 1, 1)

    def uids(action: Change) -> list[str]:
        return sorted(u for b in store(warehouse).stream(spec, KEY, action) for u in b)

    assert uids(ADD) == ["ABC", "Abc"]
    assert uids(RESEND) == uids(RENAME) == ["abc"]
    assert uids(REMOVE) == ["gone"]
    store(warehouse).record_resent(spec, KEY, ["abc"], "run-2")
    store(warehouse).record_removed(spec, KEY, ["gone", "ABC"])
    store(warehouse).record_added(spec, KEY, ["ABC", "Abc"], "run-2")
    assert store(warehouse).plan(spec, KEY, False).to_add == 0
    assert uids(REMOVE) == []
    # The re-send of 'abc' is a second row of it until the run's end compacts it.
    delta = store(warehouse).plan(spec, KEY, False)
    assert (delta.current, delta.rows) == (3, 4)
    store(warehouse).compact(spec, KEY, "run-2", everyone=True)
    delta = store(warehouse).plan(spec, KEY, False)
    assert (delta.current, delta.rows, delta.to_add) == (3, 3, 0)


def test_lock_is_exclusive_and_stale_locks_are_taken_over(
    warehouse: SnowflakeWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    store(warehouse).prepare(create=True)
    monkeypatch.setattr(state_locks, "POLL_SECONDS", 0.05)
    spec = cohort()
    with (
        store(warehouse).lock(spec, KEY, "run-1", wait_seconds=1),
        pytest.raises(LockTimeout, match="being synced by another run"),
        store(warehouse).lock(spec, KEY, "run-2", wait_seconds=0.2),
    ):
        pass
    # A holder that stopped beating (killed) loses the lock once it is stale.
    warehouse.lock_stale_seconds = 0.3
    where = (*KEY.params, "audience")
    dead_lock(warehouse, where)
    with store(warehouse).lock(spec, KEY, "run-3", wait_seconds=2):
        holder = warehouse.one("lock_holder", where)
        assert holder[0] == "run-3"


def test_heartbeat_thread_keeps_a_live_lock(warehouse: SnowflakeWarehouse) -> None:
    store(warehouse).prepare(create=True)
    # Beaten every 0.5 s (a quarter of it): only four beats missed in a row, as a loaded
    # machine may miss one, would let the lock go stale.
    warehouse.lock_stale_seconds = 2.0
    spec = cohort()
    beats = threading.Event()
    with store(warehouse).lock(spec, KEY, "run-1", wait_seconds=1):
        beats.wait(3.0)  # several heartbeat periods: without beats the lock would be stale
        with (
            pytest.raises(LockTimeout),
            store(warehouse).lock(spec, KEY, "run-2", wait_seconds=0.3),
        ):
            pass


def _ago(seconds: float) -> object:
    from datetime import timedelta

    return utcnow() - timedelta(seconds=seconds)


def dead_lock(warehouse: SnowflakeWarehouse, where: tuple[str, ...], run_id: str = "dead") -> None:
    """A lock row as a runner leaves it when it is killed: not beaten for a while."""
    warehouse.conn.cursor().execute(
        f"insert into {warehouse.state_table(LOCKS)} (endpoint, workspace_id, cohort_id, "
        "run_id, locked_at, heartbeat_at) values (?, ?, ?, ?, ?, ?)",
        [*where, run_id, _ago(5), _ago(5)],
    )


def test_a_lost_lock_is_found_before_the_next_checkpoint(warehouse: SnowflakeWarehouse) -> None:
    store(warehouse).prepare(create=True)
    spec = cohort()
    where = (*KEY.params, "audience")
    with store(warehouse).lock(spec, KEY, "run-1", wait_seconds=1) as held:
        held.check()
        # Another runner took the row over (this run's heartbeat had stopped).
        warehouse.conn.cursor().execute(
            f"update {warehouse.state_table(LOCKS)} set run_id = 'run-2'"
        )
        with pytest.raises(LockLost, match="no longer holds the lock of cohort 'audience'"):
            held.check()
    assert warehouse.one("lock_holder", where)[0] == "run-2"


def test_the_lock_sql_uses_snowflakes_clock() -> None:
    engine = SnowflakeWarehouse(None, "DB", "moengage_state")
    take = engine.format("take_lock")
    assert take.lstrip().startswith("merge into DB.moengage_state.moengage_sync_locks")
    assert "sysdate()" in take and "dateadd(millisecond, -cast(s.stale_seconds * 1000" in take
    assert "sysdate()" in engine.format("heartbeat_lock")


def test_a_run_is_alive_while_its_lock_row_is_beaten(warehouse: SnowflakeWarehouse) -> None:
    # What `status` asks of a run row that says 'running'.
    store(warehouse).prepare(create=True)
    warehouse.lock_stale_seconds = 2
    where = (*KEY.params, "audience")
    with store(warehouse).lock(cohort(), KEY, "run-1", wait_seconds=1):
        assert warehouse.lock_alive(KEY, "audience", "run-1")
        assert not warehouse.lock_alive(KEY, "audience", "run-2")
    assert not warehouse.lock_alive(KEY, "audience", "run-1")  # released at the end
    dead_lock(warehouse, where, "killed")  # last beaten 5 s ago
    assert not warehouse.lock_alive(KEY, "audience", "killed")
    # Within the stale window a silent holder may still be working: taken to be alive.
    warehouse.lock_stale_seconds = 60
    assert warehouse.lock_alive(KEY, "audience", "killed")
    alive = SnowflakeWarehouse(None, "DB", "moengage_state").format(
        "lock_alive", None, {"since": SnowflakeWarehouse.AGO.format("?")}
    )
    assert "heartbeat_at >= dateadd(millisecond, -cast(? * 1000 as integer), sysdate())" in alive


def test_one_heartbeat_session_per_run(warehouse: SnowflakeWarehouse) -> None:
    """Each session is a login: with SSO or MFA a prompt. The run's cohort locks share one
    heartbeat session, opened once and closed with the run."""
    store(warehouse).prepare(create=True)
    opened: list[Any] = []
    opener = warehouse.opener
    assert opener is not None

    def counted() -> Any:
        opened.append(opener())
        return opened[-1]

    warehouse.opener = counted
    for cohort_id in ("a", "b", "c"):
        spec = replace(cohort(), cohort_id=cohort_id, model=cohort_id)
        with store(warehouse).lock(spec, KEY, "run-1", wait_seconds=1) as held:
            held.check()
    assert len(opened) == 1
    warehouse.close_heartbeat()
    with pytest.raises(snowflake.connector.errors.Error):
        opened[0].cursor().execute("select 1")


def test_a_waiting_runner_backs_off_and_leaves_no_row(warehouse: SnowflakeWarehouse) -> None:
    """Waiting 300 s for a live holder costs a few dozen statements, not one every 0.5 s;
    a runner that gives up (its row having landed beside the holder's, as two concurrent
    MERGEs can leave them on Snowflake) takes its row away with it."""
    store(warehouse).prepare(create=True)
    where = (*KEY.params, "audience")
    table = warehouse.state_table(LOCKS)
    now = utcnow()
    warehouse.conn.cursor().execute(
        f"insert into {table} (endpoint, workspace_id, cohort_id, run_id, locked_at, "
        "heartbeat_at) values (?, ?, ?, 'holder', ?, ?), (?, ?, ?, 'late', ?, ?)",
        [*where, now, now, *where, now + timedelta(seconds=1), now + timedelta(seconds=1)],
    )
    clock = [0.0]
    takes = []
    real_run = warehouse.run

    def run(name: str, *args: Any, **kwargs: Any) -> None:
        if name == "take_lock":
            takes.append(clock[0])
        real_run(name, *args, **kwargs)

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    warehouse.run = run  # type: ignore[method-assign]
    with (
        pytest.raises(LockTimeout),
        state_locks.row_lock(
            warehouse, cohort(), KEY, "late", 300, clock=lambda: clock[0], sleep=sleep
        ),
    ):
        pass
    assert 20 <= len(takes) <= 45
    assert clock[0] == pytest.approx(300)
    rows = warehouse.conn.cursor().execute(f"select run_id from {table}").fetchall()
    assert rows == [("holder",)]


# -- a stop cancels the reads of models (issue "Hardening, round three", item 2) ---------------

CANCEL_ALL = "select system$cancel_all_queries(?)"


class Sessions:
    """Snowflake sessions standing in for the account (fakesnow cannot cancel): a query
    reading a model runs until its session's queries are cancelled, with the error Snowflake
    gives; SYSTEM$CANCEL_ALL_QUERIES(id) cancels them, from whichever session runs it."""

    def __init__(self) -> None:
        self.cancelled: dict[int, threading.Event] = {}
        self.ran: list[tuple[int, str, list[Any]]] = []

    def open(self, session_id: int) -> Any:
        sessions = self
        self.cancelled[session_id] = threading.Event()

        class Cursor:
            def execute(self, sql: str, params: Any = None) -> None:
                sessions.ran.append((session_id, sql, list(params or [])))
                if sql == CANCEL_ALL:
                    sessions.cancelled[int(params[0])].set()
                elif "select" in sql and not sessions.cancelled[session_id].wait(30):
                    raise AssertionError("never cancelled")
                elif "select" in sql:
                    raise snowflake.connector.errors.ProgrammingError(
                        "SQL execution canceled", errno=604
                    )

            def close(self) -> None:
                pass

        class Connection:
            def cursor(self) -> Cursor:
                return Cursor()

            def close(self) -> None:
                pass

        connection = Connection()
        connection.session_id = session_id  # type: ignore[attr-defined]
        return connection


@pytest.mark.parametrize("heartbeat", [True, False], ids=["from-the-heartbeat", "same-session"])
def test_a_stop_cancels_the_sessions_running_read(heartbeat: bool) -> None:
    sessions = Sessions()
    main = sessions.open(101)
    opener = (lambda: sessions.open(202)) if heartbeat else None
    wh = SnowflakeWarehouse(main, "DB", "moengage_state", opener=opener)
    wh.heartbeat()  # opened by the run's first cohort lock
    stop = threading.Event()
    with wh.cancelled_on(stop):
        threading.Timer(0.3, stop.set).start()
        with pytest.raises(Interrupted) as caught:
            wh.execute_sql("create transient table t as select 1", (), "reading_the_model")
        assert str(caught.value) == CANCELLED
    # Cancelled by the session id; sent from the heartbeat's session when there is one.
    cancels = [(sid, params) for sid, sql, params in sessions.ran if sql == CANCEL_ALL]
    assert cancels[0] == ((202 if heartbeat else 101), [101])

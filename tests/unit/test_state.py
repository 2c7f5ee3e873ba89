"""The sync state on DuckDB: re-sends coming due, the endpoint key, upgrades from versions 1,
2 and 4, names remembered, ownership, and the state read as a set."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dbt_moengage.cohorts import CohortSpec, Owner
from dbt_moengage.errors import StateVersionError, WarehouseError
from dbt_moengage.state import Change, CohortRecord, RunRow, upgrade_note, utcnow
from dbt_moengage.state.history import StateHistory
from dbt_moengage.state.schema import (
    COHORTS,
    MEMBERS,
    NOTIFICATIONS,
    PEERS,
    RUNS,
    SCHEMA_VERSION,
    STATE_COLUMNS,
    STATE_TABLES,
    VERSION,
    WEBHOOK_RUNS,
    StateKey,
    normalize_endpoint,
    schema_version_from,
)
from dbt_moengage.state.sql import RENAME_BATCH
from dbt_moengage.warehouse import duckdb as duckdb_module
from dbt_moengage.warehouse.duckdb import DuckDBWarehouse

from ..state_helpers import ADD, REMOVE, RENAME, RESEND, store

EMULATOR = StateKey("http://127.0.0.1:8765", "WS_STATE")
PRODUCTION = StateKey("https://api-01.moengage.com", "WS_STATE")
DAY = 86_400


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "state.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("create table main.aud (uid varchar)")
    return path


@pytest.fixture
def ready(db: Path) -> Iterator[DuckDBWarehouse]:
    warehouse = DuckDBWarehouse(str(db))
    try:
        assert store(warehouse).prepare(create=True).ready
        yield warehouse
    finally:
        warehouse.close()


def spec(db: Path, **changes: Any) -> CohortSpec:
    base = CohortSpec(
        model="aud",
        unique_id="model.unit.aud",
        relation_name=f'"{db.stem}"."main"."aud"',
        cohort_name="Aud",
        cohort_id="aud",
        description="unit test audience",
        uid_column="uid",
    )
    return replace(base, **changes)


def sql(warehouse: DuckDBWarehouse, text: str, params: Sequence[Any] = ()) -> list[Any]:
    return warehouse.conn.execute(text, list(params)).fetchall()


def insert(warehouse: DuckDBWarehouse, uids: Sequence[str]) -> None:
    warehouse.conn.executemany("insert into main.aud values (?)", [[u] for u in uids])


def delta(
    warehouse: DuckDBWarehouse,
    cohort: CohortSpec,
    action: Change,
    key: StateKey = EMULATOR,
    now: datetime | None = None,
) -> list[str]:
    return sorted(u for b in store(warehouse).stream(cohort, key, action, now=now) for u in b)


def age(warehouse: DuckDBWarehouse, seconds: float) -> None:
    """Move every member's last acceptance `seconds` into the past."""
    sql(
        warehouse,
        f"update main.{MEMBERS} set synced_at = synced_at - to_seconds(?::double)",
        (seconds,),
    )


# -- re-sends ------------------------------------------------------------------------------


def test_nothing_is_due_soon_after_a_sync(db: Path, ready: DuckDBWarehouse) -> None:
    cohort = spec(db, resend_after=7 * DAY)
    uids = [f"u{i:05d}" for i in range(2_000)]
    insert(ready, uids)
    store(ready).record_added(cohort, EMULATOR, uids, "run-1")
    # Nothing comes due before an eighth of resend_after: an unchanged re-run sends nothing.
    for hours in (0, 1, 12, 20):
        now = utcnow() + timedelta(hours=hours)
        plan = store(ready).plan(cohort, EMULATOR, False, now)
        assert (plan.to_add, plan.to_resend, plan.unchanged) == (0, 0, 2_000), hours
        assert delta(ready, cohort, RESEND, now=now) == []
    # Every member is due at the latest resend_after after its acceptance.
    late = utcnow() + timedelta(days=7, seconds=1)
    assert store(ready).plan(cohort, EMULATOR, False, late).to_resend == 2_000
    assert delta(ready, cohort, RESEND, now=late) == uids


def test_resends_spread_over_days_and_keep_spreading(db: Path, ready: DuckDBWarehouse) -> None:
    # A cohort first synced on one day: daily runs re-send a share each day, never all at
    # once, and every member at most resend_after after its last acceptance.
    cohort = spec(db, resend_after=7 * DAY)
    uids = [f"user-{i:05d}" for i in range(5_000)]
    insert(ready, uids)
    start = utcnow()
    store(ready).record_added(cohort, EMULATOR, uids, "run-0")
    last_sent = dict.fromkeys(uids, 0)
    per_day: list[int] = []
    for day in range(1, 29):
        now = start + timedelta(days=day, minutes=1)
        due = delta(ready, cohort, RESEND, now=now)
        assert store(ready).plan(cohort, EMULATOR, False, now).to_resend == len(due)
        per_day.append(len(due))
        for uid in due:
            assert day - last_sent[uid] >= 1, (uid, day)
            last_sent[uid] = day
        sql(
            ready,
            f"update main.{MEMBERS} set synced_at = ? where uid in (select unnest(?::varchar[]))",
            (now, due),
        )
        assert max(day - last for last in last_sent.values()) <= 7
    # About a sixth of the cohort every day, from the second day on, week after week
    # (a cycle of 7/8 of seven days).
    share = len(uids) * 8 / 7 / 7
    assert per_day[0] < share
    assert all(0.75 * share < count < 1.25 * share for count in per_day[1:]), per_day


def test_resend_zero_means_every_run_and_off_never(db: Path, ready: DuckDBWarehouse) -> None:
    insert(ready, ["a", "b"])
    cohort = spec(db)
    store(ready).record_added(cohort, EMULATOR, ["a", "b"], "run-1")
    assert delta(ready, replace(cohort, resend_after=0), RESEND) == ["a", "b"]
    far = utcnow() + timedelta(days=3_650)
    assert delta(ready, replace(cohort, resend_after=None), RESEND, now=far) == []
    assert (
        store(ready).plan(replace(cohort, resend_after=None), EMULATOR, False, far).to_resend == 0
    )


def test_only_members_still_in_the_model_are_resent(db: Path, ready: DuckDBWarehouse) -> None:
    insert(ready, ["a", "b"])
    cohort = spec(db, resend_after=0)
    store(ready).record_added(cohort, EMULATOR, ["a", "b", "gone"], "run-1")
    assert delta(ready, cohort, RESEND) == ["a", "b"]
    assert delta(ready, cohort, REMOVE) == ["gone"]


def test_record_resent_moves_synced_at(db: Path, ready: DuckDBWarehouse) -> None:
    insert(ready, ["a", "b"])
    cohort = spec(db, resend_after=DAY)
    store(ready).record_added(cohort, EMULATOR, ["a", "b"], "run-1")
    age(ready, 2 * DAY)
    assert delta(ready, cohort, RESEND) == ["a", "b"]
    store(ready).record_resent(cohort, EMULATOR, ["a"], "run-2")
    assert delta(ready, cohort, RESEND) == ["b"]
    # The re-send is a newer row; the run's end compacts the older one.
    store(ready).compact(cohort, EMULATOR, "run-2")
    rows = sql(ready, f"select uid, run_id from main.{MEMBERS} order by uid")
    assert rows == [("a", "run-2"), ("b", "run-1")]


def test_a_resent_member_is_one_member_until_compacted(db: Path, ready: DuckDBWarehouse) -> None:
    """A re-send appends a row: nothing reads the uid twice, and its newest row says when
    MoEngage last accepted it; compacting keeps exactly that row."""
    insert(ready, ["a", "b", "c"])
    cohort = spec(db, mode="mirror", resend_after=DAY)
    store(ready).record_added(cohort, EMULATOR, ["a", "b", "gone"], "run-1")
    age(ready, 2 * DAY)
    store(ready).record_resent(cohort, EMULATOR, ["a", "gone"], "run-2")
    assert sql(ready, f"select count(*) from main.{MEMBERS}") == [(5,)]
    plan = store(ready).plan(cohort, EMULATOR, False)
    assert (plan.distinct, plan.to_add, plan.to_resend, plan.to_remove) == (3, 1, 1, 1)
    assert (plan.current, plan.rows, plan.unchanged, plan.uncompacted) == (3, 5, 1, True)
    assert store(ready).member_count(cohort, EMULATOR) == 3
    assert delta(ready, cohort, ADD) == ["c"]
    assert delta(ready, cohort, RESEND) == ["b"]
    assert delta(ready, cohort, REMOVE) == ["gone"]
    assert delta(ready, cohort, RENAME) == ["a", "b"]
    # Another run's rows stay until it compacts them; then one row per uid, the newest.
    store(ready).compact(cohort, EMULATOR, "run-3")
    assert sql(ready, f"select count(*) from main.{MEMBERS}") == [(5,)]
    store(ready).compact(cohort, EMULATOR, "run-2")
    rows = sql(ready, f"select uid, run_id from main.{MEMBERS} order by uid")
    assert rows == [("a", "run-2"), ("b", "run-1"), ("gone", "run-2")]
    plan = store(ready).plan(cohort, EMULATOR, False)
    assert (plan.current, plan.rows, plan.to_resend, plan.uncompacted) == (3, 3, 1, False)
    # A removal deletes every row of its uid.
    store(ready).record_resent(cohort, EMULATOR, ["gone"], "run-3")
    store(ready).record_removed(cohort, EMULATOR, ["gone"])
    assert store(ready).plan(cohort, EMULATOR, False).to_remove == 0


def test_a_member_is_due_by_its_newest_row(db: Path, ready: DuckDBWarehouse) -> None:
    """Rows a run that died left: the newest acceptance decides, not the oldest."""
    insert(ready, ["a", "b"])
    cohort = spec(db, resend_after=7 * DAY)
    store(ready).record_added(cohort, EMULATOR, ["a", "b"], "run-1")
    age(ready, 8 * DAY)
    assert delta(ready, cohort, RESEND) == ["a", "b"]
    # A second row of 'a', accepted now, as a re-send writes it.
    store(ready).record_added(cohort, EMULATOR, ["a"], "run-2")
    plan = store(ready).plan(cohort, EMULATOR, False)
    assert (plan.to_resend, plan.unchanged, plan.current) == (1, 1, 2)
    assert delta(ready, cohort, RESEND) == ["b"]


@pytest.mark.parametrize("window", [1_000_000, 7], ids=["one window", "windows of 7 rows"])
def test_the_next_run_compacts_what_a_dead_run_left(
    db: Path, ready: DuckDBWarehouse, window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that died between its re-sends and its end left older rows: the next run's
    plan finds them, and its compaction leaves each uid its newest row, its own first.
    DuckDB deletes in windows of rows, a checkpoint after each (its delete versions stay
    under the memory cap): with windows of 7 rows the result is the same."""
    monkeypatch.setattr(duckdb_module, "COMPACT_WINDOW_ROWS", window)
    uids = [f"u{i:03d}" for i in range(300)]
    insert(ready, uids)
    cohort = spec(db, resend_after=DAY)
    store(ready).record_added(cohort, EMULATOR, uids, "run-1")
    age(ready, 2 * DAY)
    store(ready).record_resent(cohort, EMULATOR, uids[:100], "dead-run")
    age(ready, 2 * DAY)
    plan = store(ready).plan(cohort, EMULATOR, False)
    assert (plan.current, plan.rows, plan.to_resend, plan.uncompacted) == (300, 400, 300, True)
    # The next run re-sends a few of them; another runner's clock had stamped one of those
    # in the future: the run's own row still wins.
    sql(
        ready,
        f"update main.{MEMBERS} set synced_at = synced_at + interval 30 day "
        "where uid = 'u000' and run_id = 'dead-run'",
    )
    store(ready).record_resent(cohort, EMULATOR, uids[:10], "run-3")
    store(ready).compact(cohort, EMULATOR, "run-3", everyone=plan.uncompacted)
    rows = dict(sql(ready, f"select uid, run_id from main.{MEMBERS}"))
    assert sql(ready, f"select count(*) from main.{MEMBERS}") == [(300,)]
    assert rows == {
        u: "run-3" if i < 10 else "dead-run" if i < 100 else "run-1" for i, u in enumerate(uids)
    }
    assert not store(ready).plan(cohort, EMULATOR, False).uncompacted


def test_rename_members_are_a_few_current_members(db: Path, ready: DuckDBWarehouse) -> None:
    uids = [f"u{i:04d}" for i in range(RENAME_BATCH * 3)]
    insert(ready, uids[:-5])
    cohort = spec(db)
    store(ready).record_added(cohort, EMULATOR, uids, "run-1")
    chosen = delta(ready, cohort, RENAME)
    assert len(chosen) == RENAME_BATCH
    assert set(chosen) <= set(uids[:-5])


def test_resends_and_renames_match_members_exactly_on_a_collated_column(
    db: Path, ready: DuckDBWarehouse
) -> None:
    # 'Abc' is in the model; the state holds 'abc' and 'ABC', which left it. A case-blind
    # join would re-send them both, as if they were still members.
    sql(ready, "create table main.ci (uid varchar collate nocase)")
    sql(ready, "insert into main.ci values ('Abc')")
    cohort = spec(db, relation_name=f'"{db.stem}"."main"."ci"', resend_after=0)
    store(ready).record_added(cohort, EMULATOR, ["abc", "ABC"], "run-1")
    assert delta(ready, cohort, RESEND) == []
    assert delta(ready, cohort, RENAME) == []
    assert delta(ready, cohort, ADD) == ["Abc"]
    assert delta(ready, cohort, REMOVE) == ["ABC", "abc"]
    plan = store(ready).plan(cohort, EMULATOR, False)
    assert (plan.distinct, plan.to_add, plan.to_resend, plan.to_remove) == (1, 1, 0, 2)
    store(ready).record_added(cohort, EMULATOR, ["Abc"], "run-2")
    assert delta(ready, cohort, RESEND) == delta(ready, cohort, RENAME) == ["Abc"]


# -- the endpoint key ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("https://api-01.moengage.com", "https://api-01.moengage.com"),
        ("https://API-01.MoEngage.com:443/", "https://api-01.moengage.com"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
        ("http://localhost:80/", "http://localhost"),
        ("https://proxy.example.com:8443/moengage/", "https://proxy.example.com:8443/moengage"),
        ("http://[::1]:8765", "http://[::1]:8765"),
        ("", ""),
    ],
)
def test_normalize_endpoint(url: str, endpoint: str) -> None:
    assert normalize_endpoint(url) == endpoint


def test_state_is_per_endpoint(db: Path, ready: DuckDBWarehouse) -> None:
    # The emulator first, with the real workspace id, then production: nothing is lost.
    insert(ready, ["a", "b"])
    cohort = spec(db)
    store(ready).record_added(cohort, EMULATOR, ["a", "b"], "run-1")
    assert store(ready).plan(cohort, EMULATOR, False).to_add == 0
    assert store(ready).plan(cohort, PRODUCTION, False).to_add == 2
    assert delta(ready, cohort, ADD, PRODUCTION) == ["a", "b"]
    store(ready).record_removed(cohort, PRODUCTION, ["a"])
    assert delta(ready, cohort, ADD, EMULATOR) == []


# -- the state is a set ----------------------------------------------------------------------


def test_duplicate_state_rows_distort_nothing(db: Path, ready: DuckDBWarehouse) -> None:
    insert(ready, [f"u{i}" for i in range(10)])
    cohort = spec(db, mode="mirror")
    store(ready).record_added(cohort, EMULATOR, [f"u{i}" for i in range(10)], "run-1")
    store(ready).record_added(cohort, EMULATOR, ["u1", "u2", "gone", "gone"], "run-2")
    plan = store(ready).plan(cohort, EMULATOR, False)
    assert (plan.distinct, plan.to_add, plan.to_remove, plan.unchanged) == (10, 0, 1, 10)
    assert plan.current == 11
    assert delta(ready, cohort, REMOVE) == ["gone"]


# -- version and upgrade -------------------------------------------------------------------

V1 = {
    MEMBERS: "workspace_id varchar not null, cohort_id varchar not null, uid varchar not null, "
    "synced_at timestamp not null, run_id varchar not null",
    RUNS: "run_id varchar not null, workspace_id varchar not null, cohort_id varchar not null, "
    "model varchar not null, mode varchar not null, full_refresh boolean not null, "
    "started_at timestamp not null, finished_at timestamp, status varchar not null, "
    "added bigint, removed bigint, unchanged bigint, left_but_kept bigint, requests bigint, "
    "retries bigint, error varchar",
    "moengage_sync_locks": "workspace_id varchar not null, cohort_id varchar not null, "
    "run_id varchar not null, locked_at timestamp not null, heartbeat_at timestamp not null",
}


def make_v1_state(db: Path, uids: Sequence[str]) -> None:
    """State as dbt-moengage wrote it before endpoints (version 1)."""
    with duckdb.connect(str(db)) as conn:
        for table, columns in V1.items():
            conn.execute(f"create table main.{table} ({columns})")
        now = utcnow()
        conn.executemany(
            f"insert into main.{MEMBERS} values ('WS_STATE', 'aud', ?, ?, 'old-run')",
            [[uid, now] for uid in uids],
        )
        conn.execute(
            f"insert into main.{RUNS} (run_id, workspace_id, cohort_id, model, mode, "
            "full_refresh, started_at, status) values "
            "('old-run', 'WS_STATE', 'aud', 'aud', 'add', false, ?, 'synced')",
            [now],
        )


def columns(warehouse: DuckDBWarehouse) -> dict[str, set[str]]:
    return warehouse.state_columns()


def test_fresh_state_is_the_current_version(ready: DuckDBWarehouse) -> None:
    assert set(columns(ready)) == set(STATE_TABLES)
    for table, expected in STATE_COLUMNS.items():
        assert columns(ready)[table] == {name for name, _, _ in expected}
    assert sql(ready, f"select version from main.{VERSION}") == [(SCHEMA_VERSION,)]
    assert store(ready).prepare(create=True).upgraded_from is None
    assert sql(ready, f"select count(*) from main.{VERSION}") == [(1,)]


def test_version_1_is_upgraded_in_place_and_adopted_as_due(db: Path) -> None:
    make_v1_state(db, ["a", "b", "gone"])
    with DuckDBWarehouse(str(db), read_only=True) as warehouse:
        status = store(warehouse).prepare(create=False)
        assert not status.ready and "version 1" in status.note and "upgrades it" in status.note
    with DuckDBWarehouse(str(db)) as warehouse:
        status = store(warehouse).prepare(create=True)
        assert status.ready and status.upgraded_from == 1
        assert set(columns(warehouse)) == set(STATE_TABLES)
        assert "endpoint" in columns(warehouse)[MEMBERS]
        # Old rows keep an unknown endpoint until a sync adopts them.
        assert sql(warehouse, f"select distinct endpoint from main.{MEMBERS}") == [("",)]
        insert(warehouse, ["a", "b", "new"])
        cohort = spec(db, mode="mirror", resend_after=None)
        assert store(warehouse).adopt_legacy(cohort, PRODUCTION) == 3
        assert store(warehouse).adopt_legacy(cohort, PRODUCTION) == 0
        plan = store(warehouse).plan(cohort, PRODUCTION, False)
        # The safe side: every old member is sent again (even with re-sends off), and a
        # mirror cohort still removes the member that left.
        assert (plan.to_add, plan.to_resend, plan.to_remove) == (1, 2, 1)
        assert delta(warehouse, cohort, RESEND, PRODUCTION) == ["a", "b"]
        assert delta(warehouse, cohort, REMOVE, PRODUCTION) == ["gone"]
        store(warehouse).record_resent(cohort, PRODUCTION, ["a", "b"], "run-2")
        assert store(warehouse).plan(cohort, PRODUCTION, False).to_resend == 0
        # Another endpoint finds no state of the cohort: it gets everything.
        assert store(warehouse).plan(cohort, EMULATOR, False).to_add == 3
        # The old run row is still history, with an unknown endpoint.
        assert sql(warehouse, f"select endpoint, run_id from main.{RUNS}") == [("", "old-run")]
    with DuckDBWarehouse(str(db)) as warehouse:
        assert store(warehouse).prepare(create=True).upgraded_from is None


def make_v2_state(db: Path, uids: Sequence[str]) -> None:
    """State as dbt-moengage wrote it before members_after and notifications (version 2)."""
    with DuckDBWarehouse(str(db)) as warehouse:
        assert store(warehouse).prepare(create=True).ready
        insert(warehouse, uids)
        store(warehouse).record_added(spec(db), EMULATOR, uids, "old-run")
        store(warehouse).save_run(
            RunRow("old-run", *EMULATOR.params, "aud", "aud", "add", False, utcnow(), added=2)
        )
    with duckdb.connect(str(db)) as conn:
        conn.execute(f"alter table main.{RUNS} drop column members_after")
        conn.execute(f"drop table main.{NOTIFICATIONS}")
        conn.execute(f"update main.{VERSION} set version = 2")


def test_version_2_is_read_as_it_is_and_upgraded_in_place(db: Path) -> None:
    make_v2_state(db, ["a", "b"])
    cohort = spec(db)
    # A read-only run (a dry run) reads version 2 as it is: the plan is the real one.
    with DuckDBWarehouse(str(db), read_only=True) as warehouse:
        status = store(warehouse).prepare(create=False)
        assert status.ready and status.version == 2
        assert f"version 2; the next sync upgrades it to {SCHEMA_VERSION}" in status.note
        assert "assume nothing" not in status.note
        plan = store(warehouse).plan(cohort, EMULATOR, False)
        assert (plan.to_add, plan.unchanged) == (0, 2)
    with DuckDBWarehouse(str(db)) as warehouse:
        status = store(warehouse).prepare(create=True)
        assert status.ready and status.upgraded_from == 2
        assert columns(warehouse) == {
            table: {name for name, _, _ in cols} for table, cols in STATE_COLUMNS.items()
        }
        # The old run row keeps working: its member count is unknown.
        assert sql(warehouse, f"select run_id, added, members_after from main.{RUNS}") == [
            ("old-run", 2, None)
        ]
        assert sql(warehouse, f"select max(version) from main.{VERSION}") == [(SCHEMA_VERSION,)]
        assert store(warehouse).member_count(cohort, EMULATOR) == 2
    with DuckDBWarehouse(str(db)) as warehouse:
        assert store(warehouse).prepare(create=True).upgraded_from is None


def aud_run(run_id: str, **fields: Any) -> RunRow:
    """A run row of cohort `aud` under EMULATOR."""
    return RunRow(run_id, *EMULATOR.params, "aud", "aud", "add", False, utcnow(), **fields)


def make_v4_state(db: Path) -> None:
    """State as dbt-moengage wrote it before run rows kept their bytes billed (version 4)."""
    with DuckDBWarehouse(str(db)) as warehouse:
        assert store(warehouse).prepare(create=True).ready
        insert(warehouse, ["a", "b"])
        store(warehouse).record_added(spec(db), EMULATOR, ["a", "b"], "old-run")
        store(warehouse).save_run(aud_run("old-run", status="synced", added=2, members_after=2))
    with duckdb.connect(str(db)) as conn:
        conn.execute(f"alter table main.{RUNS} drop column bytes_billed")
        conn.execute(f"update main.{VERSION} set version = 4")


def test_version_4_is_read_as_it_is_and_upgraded_in_place(db: Path) -> None:
    make_v4_state(db)
    cohort = spec(db)
    # A read-only run (a dry run, status) reads version 4 as it is: no bytes_billed column.
    with DuckDBWarehouse(str(db), read_only=True) as warehouse:
        status = store(warehouse).prepare(create=False)
        assert status.ready and status.version == 4
        assert f"version 4; the next sync upgrades it to {SCHEMA_VERSION}" in status.note
        assert store(warehouse).plan(cohort, EMULATOR, False).unchanged == 2
        (old,) = StateHistory(warehouse).runs(EMULATOR, 10)["aud"]
        assert (old.run_id, old.members_after, old.bytes_billed) == ("old-run", 2, None)
    with DuckDBWarehouse(str(db)) as warehouse:
        status = store(warehouse).prepare(create=True)
        assert status.ready and status.upgraded_from == 4
        assert "bytes_billed" in upgrade_note(4) and "members_after" not in upgrade_note(4)
        assert columns(warehouse)[RUNS] == {name for name, _, _ in STATE_COLUMNS[RUNS]}
        # The old run row reads its cost as unknown; a new row records one.
        store(warehouse).save_run(aud_run("new-run", bytes_billed=7))
        assert sql(warehouse, f"select run_id, bytes_billed from main.{RUNS} order by 1") == [
            ("new-run", 7),
            ("old-run", None),
        ]
        last = StateHistory(warehouse).runs(EMULATOR, 10)["aud"]
        assert [(r.run_id, r.bytes_billed) for r in last] == [("old-run", None), ("new-run", 7)]
        assert sql(warehouse, f"select max(version) from main.{VERSION}") == [(SCHEMA_VERSION,)]
    with DuckDBWarehouse(str(db)) as warehouse:
        assert store(warehouse).prepare(create=True).upgraded_from is None


def test_version_5_gets_the_webhook_runs_table(db: Path) -> None:
    """Version 6 adds a table, no column: the receiver's runs (moengage_webhook_runs)."""
    make_v4_state(db)
    with DuckDBWarehouse(str(db)) as warehouse:
        assert store(warehouse).prepare(create=True).ready
    with duckdb.connect(str(db)) as conn:
        conn.execute(f"drop table main.{WEBHOOK_RUNS}")
        conn.execute(f"update main.{VERSION} set version = 5")
    # A read-only run reads version 5 as it is: nothing it reads is missing.
    with DuckDBWarehouse(str(db), read_only=True) as warehouse:
        status = store(warehouse).prepare(create=False)
        assert status.ready and status.version == 5
        assert f"version 5; the next sync upgrades it to {SCHEMA_VERSION}" in status.note
    with DuckDBWarehouse(str(db)) as warehouse:
        status = store(warehouse).prepare(create=True)
        assert status.ready and status.upgraded_from == 5
        assert WEBHOOK_RUNS in upgrade_note(5) and "bytes_billed" not in upgrade_note(5)
        assert columns(warehouse)[WEBHOOK_RUNS] == {
            name for name, _, _ in STATE_COLUMNS[WEBHOOK_RUNS]
        }
        assert sql(warehouse, f"select max(version) from main.{VERSION}") == [(SCHEMA_VERSION,)]
        # The run rows of earlier versions are untouched.
        assert sql(warehouse, f"select run_id from main.{RUNS}") == [("old-run",)]
    with DuckDBWarehouse(str(db)) as warehouse:
        assert store(warehouse).prepare(create=True).upgraded_from is None


def test_version_6_gets_the_quota_peers_table(db: Path) -> None:
    """Version 7 adds a table, no column: runners sharing a workspace's quota."""
    make_v4_state(db)
    with DuckDBWarehouse(str(db)) as warehouse:
        assert store(warehouse).prepare(create=True).ready
    with duckdb.connect(str(db)) as conn:
        conn.execute(f"drop table main.{PEERS}")
        conn.execute(f"update main.{VERSION} set version = 6")
    with DuckDBWarehouse(str(db), read_only=True) as warehouse:
        status = store(warehouse).prepare(create=False)
        assert status.ready and status.version == 6
    with DuckDBWarehouse(str(db)) as warehouse:
        status = store(warehouse).prepare(create=True)
        assert status.ready and status.upgraded_from == 6
        assert PEERS in upgrade_note(6) and WEBHOOK_RUNS not in upgrade_note(6)
        assert columns(warehouse)[PEERS] == {name for name, _, _ in STATE_COLUMNS[PEERS]}
        assert sql(warehouse, f"select max(version) from main.{VERSION}") == [(7,)]


def test_the_version_is_inferred_from_the_columns_when_not_recorded() -> None:
    current = {table: {name for name, _, _ in cols} for table, cols in STATE_COLUMNS.items()}
    assert schema_version_from(current, None) == SCHEMA_VERSION
    assert schema_version_from(current, 2) == 2
    # Tables an older dbt package created carry no version row.
    assert schema_version_from({**current, RUNS: current[RUNS] - {"bytes_billed"}}, None) == 4
    # An older dbt package made every table but the webhook runs' (version 6).
    older = {table: cols for table, cols in current.items() if table not in (WEBHOOK_RUNS, PEERS)}
    assert schema_version_from(older, None) == 5
    # ... and every table but the quota peers' (version 7).
    older = {table: cols for table, cols in current.items() if table != PEERS}
    assert schema_version_from(older, None) == 6
    assert schema_version_from({}, None) == SCHEMA_VERSION
    v2 = {**current, RUNS: current[RUNS] - {"members_after"}}
    assert schema_version_from(v2, None) == 2
    v1 = {**v2, MEMBERS: current[MEMBERS] - {"endpoint"}}
    assert schema_version_from(v1, None) == 1


def test_member_count_is_the_state_read_as_a_set(db: Path, ready: DuckDBWarehouse) -> None:
    cohort = spec(db)
    assert store(ready).member_count(cohort, EMULATOR) == 0
    store(ready).record_added(cohort, EMULATOR, ["a", "b", "b"], "run-1")
    store(ready).record_added(cohort, PRODUCTION, ["c"], "run-1")
    assert store(ready).member_count(cohort, EMULATOR) == 2
    assert store(ready).member_count(cohort, PRODUCTION) == 1


def test_notified_statuses_round_trip_per_key(ready: DuckDBWarehouse) -> None:
    state = store(ready)
    assert state.notified(EMULATOR) == {}
    state.save_notified(EMULATOR, "aud", "aud", "failed", "run-1")
    state.save_notified(EMULATOR, "aud", "aud", "synced", "run-2")
    state.save_notified(EMULATOR, "other", "other", "guarded", "run-2")
    assert state.notified(EMULATOR) == {"aud": "synced", "other": "guarded"}
    assert state.notified(PRODUCTION) == {}
    rows = sql(ready, f"select cohort_id, run_id from main.{NOTIFICATIONS} order by 1")
    assert rows == [("aud", "run-2"), ("other", "run-2")]


def test_state_from_a_newer_runner_is_refused(db: Path, ready: DuckDBWarehouse) -> None:
    sql(ready, f"insert into main.{VERSION} values (99, ?, 'dbt-moengage 9.0')", (utcnow(),))
    with pytest.raises(StateVersionError, match="version 99, written by a newer dbt-moengage"):
        store(ready).prepare(create=True)


# -- names and owners ----------------------------------------------------------------------


def test_cohort_record_round_trip(db: Path, ready: DuckDBWarehouse) -> None:
    cohort = spec(db)
    assert store(ready).cohort_record(cohort, EMULATOR) is None
    store(ready).save_cohort(cohort, EMULATOR, CohortRecord("aud", "Aud", "first"))
    store(ready).save_cohort(cohort, EMULATOR, CohortRecord("aud", "Aud 2", None))
    assert store(ready).cohort_record(cohort, EMULATOR) == CohortRecord("aud", "Aud 2", None)
    assert store(ready).cohort_record(cohort, PRODUCTION) is None
    assert sql(ready, f"select count(*) from main.{COHORTS}") == [(1,)]


def test_owners_come_from_runs_and_names(db: Path, ready: DuckDBWarehouse) -> None:
    make_runs = [("r1", "aud", "old_model", "synced"), ("r2", "other", "other", "failed")]
    for run_id, cohort_id, model, status in make_runs:
        sql(
            ready,
            f"insert into main.{RUNS} (run_id, endpoint, workspace_id, cohort_id, model, mode, "
            "full_refresh, started_at, status) values (?, ?, ?, ?, ?, 'add', false, ?, ?)",
            (run_id, *EMULATOR.params, cohort_id, model, utcnow(), status),
        )
    assert store(ready).owners(EMULATOR) == {"aud": Owner(model="old_model")}
    store(ready).save_cohort(spec(db), EMULATOR, CohortRecord("aud", "Aud", "d"))
    assert store(ready).owners(EMULATOR) == {"aud": Owner(model="aud", name_sent="Aud")}
    # Runs count for the workspace on any endpoint; names only for their endpoint.
    assert store(ready).owners(PRODUCTION) == {"aud": Owner(model="old_model")}


def test_counts_are_never_negative(db: Path, ready: DuckDBWarehouse) -> None:
    insert(ready, ["a"])
    cohort = spec(db)
    store(ready).record_added(cohort, EMULATOR, ["a", "a", "a"], "run-1")
    stats = ready.audience_stats(cohort)
    plan = store(ready).plan(cohort, EMULATOR, False)
    assert plan.distinct == 1 and plan.unchanged == 1
    assert min(stats.dropped(plan.distinct).values()) >= 0
    assert Counter(u for (u,) in sql(ready, f"select uid from main.{MEMBERS}")) == {"a": 3}


# -- a full refresh's checkpoint -----------------------------------------------------------


def test_a_replacing_checkpoint_is_one_transaction(
    db: Path, ready: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full refresh replaces each accepted body's rows: delete, then insert. A failure
    between them (a crash, a lost connection) must leave the rows as they were."""
    cohort = spec(db)
    store(ready).record_added(cohort, EMULATOR, ["a", "b", "c"], "run-1")
    real_run = ready.run

    def insert_fails(name: str, *args: Any, **kwargs: Any) -> None:
        if name == "insert_members":
            raise WarehouseError("insert members failed: the connection was lost")
        real_run(name, *args, **kwargs)

    monkeypatch.setattr(ready, "run", insert_fails)
    with pytest.raises(WarehouseError):
        store(ready).record_added(cohort, EMULATOR, ["a", "b"], "run-2", replace=True)
    monkeypatch.setattr(ready, "run", real_run)
    rows = sql(ready, f"select uid, run_id from main.{MEMBERS} order by uid")
    assert rows == [("a", "run-1"), ("b", "run-1"), ("c", "run-1")]
    # And a replacing checkpoint that succeeds replaces those rows only.
    store(ready).record_added(cohort, EMULATOR, ["a", "b"], "run-2", replace=True)
    rows = sql(ready, f"select uid, run_id from main.{MEMBERS} order by uid")
    assert rows == [("a", "run-2"), ("b", "run-2"), ("c", "run-1")]

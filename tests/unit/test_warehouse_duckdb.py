"""The DuckDB warehouse on a tiny database file: stats, column checks, state, runs, locks."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dbt_moengage.cohorts import CohortSpec
from dbt_moengage.errors import Interrupted, LockTimeout, ProfileError, WarehouseError
from dbt_moengage.state import Change, RunRow, utcnow
from dbt_moengage.state import locks as state_locks
from dbt_moengage.state.locks import row_lock
from dbt_moengage.state.schema import LOCKS, MEMBERS, RUNS, STATE_TABLES, StateKey
from dbt_moengage.warehouse import duckdb_connect
from dbt_moengage.warehouse.audience import AudienceStats, UidColumn
from dbt_moengage.warehouse.cancel import CANCELLED
from dbt_moengage.warehouse.duckdb import DEFAULT_MEMORY_LIMIT, DuckDBWarehouse
from dbt_moengage.warehouse.profiles import ProfileTarget
from dbt_moengage.warehouse.redact import ERROR_CHARS

from ..state_helpers import ADD, REMOVE, store

WS = "WS_UNIT"
KEY = StateKey("http://127.0.0.1:8765", WS)
OTHER_KEY = StateKey("http://127.0.0.1:8765", "WS_OTHER")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database file `aud.duckdb` holding an empty table main.aud(uid varchar)."""
    path = tmp_path / "aud.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("create table main.aud (uid varchar)")
    return path


@contextmanager
def open_db(path: Path, **options: Any) -> Iterator[DuckDBWarehouse]:
    """A DuckDBWarehouse on the file, closed on exit."""
    warehouse = DuckDBWarehouse(str(path), **options)
    try:
        yield warehouse
    finally:
        warehouse.close()


@pytest.fixture
def warehouse(db: Path) -> Iterator[DuckDBWarehouse]:
    """A writable warehouse on the test file (state not prepared)."""
    with open_db(db) as opened:
        yield opened


@pytest.fixture
def ready(warehouse: DuckDBWarehouse) -> DuckDBWarehouse:
    """The warehouse with its state tables created."""
    assert store(warehouse).prepare(create=True).ready
    return warehouse


def spec(
    db: Path, table: str = "aud", column: str = "uid", cohort_id: str = "aud_cohort"
) -> CohortSpec:
    """A cohort over main.<table> of the test file, as the manifest would give it."""
    return CohortSpec(
        model=table,
        unique_id=f"model.unit.{table}",
        relation_name=f'"{db.stem}"."main"."{table}"',
        cohort_name=".Aud",
        cohort_id=cohort_id,
        description="unit test audience",
        uid_column=column,
    )


def insert(warehouse: DuckDBWarehouse, uids: Sequence[object], table: str = "aud") -> None:
    """Append rows to a one-column table through the warehouse's own connection."""
    warehouse.conn.executemany(f"insert into main.{table} values (?)", [[u] for u in uids])


def sql(warehouse: DuckDBWarehouse, text: str, params: Sequence[Any] = ()) -> list[Any]:
    """Run SQL on the warehouse's connection and fetch every row."""
    return warehouse.conn.execute(text, list(params)).fetchall()


def delta_uids(warehouse: DuckDBWarehouse, cohort: CohortSpec, action: Change) -> list[str]:
    """The whole delta of one action, sorted."""
    return sorted(u for batch in store(warehouse).stream(cohort, KEY, action) for u in batch)


def plan(
    warehouse: DuckDBWarehouse,
    cohort: CohortSpec,
    full_refresh: bool = False,
    key: StateKey = KEY,
) -> tuple[int, int, int, int]:
    """(distinct, to_add, to_remove, unchanged) of a plan."""
    delta = store(warehouse).plan(cohort, key, full_refresh)
    return (delta.distinct, delta.to_add, delta.to_remove, delta.unchanged)


@dataclass(frozen=True)
class Counted:
    """audience_stats completed with the plan's distinct count, as the runner reports them."""

    rows: int
    nulls: int
    empties: int
    distinct: int
    padded: int = 0

    def dropped(self) -> dict[str, int]:
        stats = AudienceStats(self.rows, self.nulls, self.empties, self.padded)
        return stats.dropped(self.distinct)

    @property
    def duplicates(self) -> int:
        return self.dropped()["duplicate"]


def stats_with_distinct(warehouse: DuckDBWarehouse, cohort: CohortSpec) -> Counted:
    """audience_stats completed with the distinct count of the plan, as the runner does."""
    stats = warehouse.audience_stats(cohort)
    distinct = store(warehouse).plan(cohort, KEY, False).distinct
    return Counted(stats.rows, stats.nulls, stats.empties, distinct, stats.padded)


def state(
    warehouse: DuckDBWarehouse, cohort_id: str = "aud_cohort", key: StateKey = KEY
) -> list[str]:
    """The state's uids of one cohort, one per row."""
    rows = sql(
        warehouse,
        f"select uid from main.{MEMBERS} where endpoint = ? and workspace_id = ? "
        "and cohort_id = ? order by uid",
        (*key.params, cohort_id),
    )
    return [uid for (uid,) in rows]


# -- audience_stats ------------------------------------------------------------------------


def test_audience_stats_counts_what_is_dropped(db: Path, warehouse: DuckDBWarehouse) -> None:
    insert(warehouse, ["a", "b", "a", None, None, "", " ", "\t", " \t\r\n", "c", " c ", "b"])
    stats = stats_with_distinct(warehouse, spec(db))
    # ' c ' can never match user 'c': MoEngage compares uids exactly.
    assert stats == Counted(rows=12, nulls=2, empties=4, distinct=3, padded=1)
    assert stats.duplicates == 2
    assert stats.dropped() == {
        "null": 2,
        "empty": 4,
        "whitespace": 1,
        "duplicate": 2,
        "too_long": 0,
    }


@pytest.mark.parametrize(
    ("uid", "reason"),
    [
        ("\u00a0", "empty"),
        ("\u200b\u200b", "empty"),
        ("\ufeff", "empty"),
        (" \u3000", "empty"),
        ("a\u00a0", "whitespace"),
        ("\u200ba", "whitespace"),
        ("a\n", "whitespace"),
        ("\ta", "whitespace"),
        ("a b", None),
        ("a\u00a0b", None),
    ],
)
def test_the_one_uid_rule(
    db: Path, warehouse: DuckDBWarehouse, uid: str, reason: str | None
) -> None:
    # The warehouse's SQL and uids.problem() agree on every case.
    from dbt_moengage import uids

    insert(warehouse, [uid])
    stats = stats_with_distinct(warehouse, spec(db))
    dropped = {k: v for k, v in stats.dropped().items() if v}
    assert uids.problem(uid) == reason
    assert dropped == ({reason: 1} if reason else {})
    assert stats.distinct == (0 if reason else 1)


def test_audience_stats_of_an_empty_model(db: Path, warehouse: DuckDBWarehouse) -> None:
    assert stats_with_distinct(warehouse, spec(db)) == Counted(0, 0, 0, 0)


def test_integer_uids_are_cast_to_text(db: Path, warehouse: DuckDBWarehouse) -> None:
    sql(warehouse, "create table main.accounts (customer_number bigint)")
    insert(warehouse, [1, 2, 2, None, 10_000_000_000, -3], table="accounts")
    cohort = spec(db, "accounts", "customer_number")
    assert warehouse.check_uid_column(cohort).type == "BIGINT"
    store(warehouse).prepare(create=True)
    stats = stats_with_distinct(warehouse, cohort)
    assert stats == Counted(rows=6, nulls=1, empties=0, distinct=4)
    assert stats.duplicates == 1
    assert delta_uids(warehouse, cohort, ADD) == sorted(["1", "2", "10000000000", "-3"])


# -- check_uid_column ----------------------------------------------------------------------


def test_missing_relation_names_dbt_build(db: Path, warehouse: DuckDBWarehouse) -> None:
    with pytest.raises(WarehouseError) as caught:
        warehouse.check_uid_column(spec(db, table="not_built"))
    message = str(caught.value)
    assert "model 'not_built'" in message
    assert "dbt build --select not_built" in message


def test_missing_column_lists_the_columns(db: Path, warehouse: DuckDBWarehouse) -> None:
    sql(warehouse, "create table main.people (user_id varchar, email varchar)")
    with pytest.raises(WarehouseError) as caught:
        warehouse.check_uid_column(spec(db, "people", "uid"))
    message = str(caught.value)
    assert "uid_column = 'uid'" in message
    assert "user_id" in message and "email" in message


def test_column_name_is_matched_case_insensitively(db: Path, warehouse: DuckDBWarehouse) -> None:
    assert warehouse.check_uid_column(spec(db, column="UID")) == UidColumn("uid", "VARCHAR")


@pytest.mark.parametrize("kind", ["DOUBLE", "DATE", "TIMESTAMP", "DECIMAL(12,2)", "BOOLEAN"])
def test_unusable_types_are_refused(db: Path, warehouse: DuckDBWarehouse, kind: str) -> None:
    sql(warehouse, f"create table main.typed (uid {kind})")
    with pytest.raises(WarehouseError) as caught:
        warehouse.check_uid_column(spec(db, "typed"))
    message = str(caught.value)
    assert "type" in message and kind.split("(")[0] in message
    assert "cast" in message


@pytest.mark.parametrize("kind", ["VARCHAR", "UUID", "INTEGER", "BIGINT", "HUGEINT", "UBIGINT"])
def test_usable_types_are_accepted(db: Path, warehouse: DuckDBWarehouse, kind: str) -> None:
    sql(warehouse, f"create table main.typed (uid {kind})")
    assert warehouse.check_uid_column(spec(db, "typed")).type == kind


@pytest.mark.parametrize(
    "column",
    ['user"id', "user id", 'x"; drop table main.aud; --', "select"],
    ids=["quote", "space", "injection", "keyword"],
)
def test_odd_column_names_are_quoted(db: Path, warehouse: DuckDBWarehouse, column: str) -> None:
    quoted = '"' + column.replace('"', '""') + '"'
    sql(warehouse, f"create table main.odd ({quoted} varchar)")
    insert(warehouse, ["u1", "u2", "u2", None, "  "], table="odd")
    cohort = spec(db, "odd", column)
    assert warehouse.check_uid_column(cohort) == UidColumn(column, "VARCHAR")
    store(warehouse).prepare(create=True)
    stats = stats_with_distinct(warehouse, cohort)
    assert stats == Counted(rows=5, nulls=1, empties=1, distinct=2)
    assert plan(warehouse, cohort) == (2, 2, 0, 0)
    assert delta_uids(warehouse, cohort, ADD) == ["u1", "u2"]
    # The name was only ever an identifier: main.aud is still there.
    assert sql(warehouse, "select count(*) from main.aud") == [(0,)]


# -- prepare_state -------------------------------------------------------------------------


def test_prepare_state_without_create_makes_nothing(db: Path) -> None:
    with open_db(db, state_schema="sync_state") as warehouse:
        assert store(warehouse).prepare(create=False).ready is False
        assert warehouse.state_columns().keys() == set()
        schemas = sql(warehouse, "select schema_name from information_schema.schemata")
        assert "sync_state" not in {name for (name,) in schemas}
    with open_db(db) as warehouse:
        assert store(warehouse).prepare(create=False).ready is False
        tables = sql(warehouse, "select table_name from information_schema.tables")
        assert {name for (name,) in tables} == {"aud"}


def test_read_only_never_creates_state(db: Path) -> None:
    with open_db(db, read_only=True) as warehouse:
        assert store(warehouse).prepare(create=True).ready is False
        assert warehouse.state_columns().keys() == set()


def test_prepare_state_is_idempotent(db: Path) -> None:
    with open_db(db, state_schema="sync_state") as warehouse:
        assert store(warehouse).prepare(create=True).ready is True
        assert warehouse.state_columns().keys() == set(STATE_TABLES)
        store(warehouse).record_added(spec(db), KEY, ["kept"], "run-1")
        assert store(warehouse).prepare(create=True).ready is True
        assert store(warehouse).prepare(create=False).ready is True
        rows = sql(warehouse, f'select uid from "sync_state".{MEMBERS}')
        assert rows == [("kept",)]
    with open_db(db, state_schema="sync_state") as warehouse:
        assert store(warehouse).prepare(create=False).ready is True


def test_missing_state_tables_are_completed(db: Path, warehouse: DuckDBWarehouse) -> None:
    assert store(warehouse).prepare(create=True).ready
    sql(warehouse, f"drop table main.{LOCKS}")
    assert store(warehouse).prepare(create=False).ready is False
    assert store(warehouse).prepare(create=True).ready is True
    assert warehouse.state_columns().keys() == set(STATE_TABLES)


# -- plan, stream_delta, record_*, reset_state ---------------------------------------------


def test_plan_without_state_counts_everything(db: Path, warehouse: DuckDBWarehouse) -> None:
    insert(warehouse, ["a", "b", "b", None])
    cohort = spec(db)
    assert store(warehouse).prepare(create=False).ready is False
    assert plan(warehouse, cohort) == (2, 2, 0, 0)
    assert delta_uids(warehouse, cohort, ADD) == ["a", "b"]
    assert delta_uids(warehouse, cohort, REMOVE) == []


def test_state_round_trip(db: Path, ready: DuckDBWarehouse) -> None:
    cohort = spec(db)
    insert(ready, ["a", "b", "c", "c", None, ""])
    assert plan(ready, cohort) == (3, 3, 0, 0)
    assert delta_uids(ready, cohort, ADD) == ["a", "b", "c"]

    store(ready).record_added(cohort, KEY, ["a", "b"], "run-1")
    assert plan(ready, cohort) == (3, 1, 0, 2)
    assert delta_uids(ready, cohort, ADD) == ["c"]
    store(ready).record_added(cohort, KEY, ["c"], "run-1")
    assert plan(ready, cohort) == (3, 0, 0, 3)
    assert delta_uids(ready, cohort, ADD) == []

    sql(ready, "delete from main.aud where uid in ('a', 'b')")
    insert(ready, ["d"])
    assert plan(ready, cohort) == (2, 1, 2, 1)
    assert delta_uids(ready, cohort, REMOVE) == ["a", "b"]
    assert plan(ready, cohort, full_refresh=True) == (2, 2, 2, 0)

    store(ready).record_removed(cohort, KEY, ["a"])
    assert state(ready) == ["b", "c"]
    assert delta_uids(ready, cohort, REMOVE) == ["b"]
    store(ready).record_removed(cohort, KEY, ["b", "never-there"])
    assert plan(ready, cohort) == (2, 1, 0, 1)

    run_ids = sql(ready, f"select distinct run_id from main.{MEMBERS}")
    assert run_ids == [("run-1",)]
    synced_at = sql(ready, f"select min(synced_at) from main.{MEMBERS}")[0][0]
    assert abs(synced_at - utcnow()) < timedelta(minutes=1)

    # A full refresh's checkpoint replaces rows, so a uid is never in the state twice.
    store(ready).record_added(cohort, KEY, ["a", "c"], "run-2", replace=True)
    assert state(ready) == ["a", "c"]
    assert sql(ready, f"select count(*) from main.{MEMBERS} where run_id = 'run-2'") == [(2,)]


def test_state_is_kept_per_workspace_and_cohort(db: Path, ready: DuckDBWarehouse) -> None:
    cohort = spec(db)
    other = replace(cohort, cohort_id="other_cohort")
    insert(ready, ["a", "b"])
    store(ready).record_added(cohort, KEY, ["a", "b"], "run-1")
    assert plan(ready, cohort) == (2, 0, 0, 2)
    assert plan(ready, cohort, key=OTHER_KEY) == (2, 2, 0, 0)
    assert plan(ready, other) == (2, 2, 0, 0)
    store(ready).record_added(other, KEY, ["a"], "run-2")
    store(ready).record_removed(other, KEY, ["a"])
    assert state(ready) == ["a", "b"]
    store(ready).record_removed(cohort, OTHER_KEY, ["a", "b"])
    assert state(ready) == ["a", "b"]


def test_uids_are_compared_exactly(db: Path, ready: DuckDBWarehouse) -> None:
    # No case folding or trimming: MoEngage matches uids as given.
    cohort = spec(db)
    odd = ["quo'te", 'back\\slash"', "new\nline", "tab\tbed", '["json"]']
    insert(ready, ["Ab", "ab", "é", "e\u0301", *odd])
    store(ready).record_added(cohort, KEY, ["ab", "é", *odd[1:]], "run-1")
    assert delta_uids(ready, cohort, ADD) == sorted(["Ab", "e\u0301", odd[0]])
    assert sorted(state(ready)) == sorted(["ab", "é", *odd[1:]])


# -- collated columns ------------------------------------------------------------------------
# MoEngage compares uids as exact bytes. A column declared with a collation (DuckDB's
# `describe` still says VARCHAR) must not fold 'abc', 'ABC' and 'Abc' into one member.

CASE_VARIANTS = ["abc", "ABC", "Abc"]


def collated(warehouse: DuckDBWarehouse, uids: Sequence[str], collation: str = "nocase") -> str:
    """A table main.ci whose uid column carries `collation`, holding `uids`; its name."""
    sql(warehouse, f"create table main.ci (uid varchar collate {collation})")
    insert(warehouse, uids, table="ci")
    return "ci"


def test_a_collated_column_is_still_plain_text(db: Path, warehouse: DuckDBWarehouse) -> None:
    collated(warehouse, CASE_VARIANTS)
    assert warehouse.check_uid_column(spec(db, "ci")) == UidColumn("uid", "VARCHAR")


def test_case_variants_of_a_nocase_column_are_distinct_uids(
    db: Path, ready: DuckDBWarehouse
) -> None:
    cohort = spec(db, collated(ready, [*CASE_VARIANTS, "abc", " abc", "ABC "]))
    assert stats_with_distinct(ready, cohort) == Counted(
        rows=6, nulls=0, empties=0, distinct=3, padded=2
    )
    assert plan(ready, cohort) == (3, 3, 0, 0)
    assert delta_uids(ready, cohort, ADD) == sorted(CASE_VARIANTS)


def test_accent_and_case_variants_of_a_noaccent_column_are_distinct(
    db: Path, ready: DuckDBWarehouse
) -> None:
    variants = ["é", "É", "e", "E", "e\u0301"]
    cohort = spec(db, collated(ready, variants, "noaccent.nocase"))
    assert plan(ready, cohort) == (5, 5, 0, 0)
    assert delta_uids(ready, cohort, ADD) == sorted(variants)


def test_the_state_anti_join_is_exact_on_a_collated_column(
    db: Path, ready: DuckDBWarehouse
) -> None:
    cohort = spec(db, collated(ready, CASE_VARIANTS))
    store(ready).record_added(cohort, KEY, ["abc"], "run-1")
    assert delta_uids(ready, cohort, ADD) == ["ABC", "Abc"]
    assert plan(ready, cohort) == (3, 2, 0, 1)
    for batch in store(ready).stream(cohort, KEY, ADD):
        store(ready).record_added(cohort, KEY, batch, "run-1")
    assert state(ready) == sorted(CASE_VARIANTS)
    assert plan(ready, cohort) == (3, 0, 0, 3)


def test_mirror_removal_of_a_case_variant_keeps_the_others(
    db: Path, ready: DuckDBWarehouse
) -> None:
    cohort = replace(spec(db, collated(ready, CASE_VARIANTS)), mode="mirror")
    store(ready).record_added(cohort, KEY, CASE_VARIANTS, "run-1")
    sql(ready, "delete from main.ci where uid collate \"binary\" = 'ABC'")
    assert plan(ready, cohort) == (2, 0, 1, 2)
    assert delta_uids(ready, cohort, REMOVE) == ["ABC"]
    store(ready).record_removed(cohort, KEY, delta_uids(ready, cohort, REMOVE))
    assert state(ready) == ["Abc", "abc"]
    assert plan(ready, cohort) == (2, 0, 0, 2)


def test_stream_delta_batches(db: Path, ready: DuckDBWarehouse) -> None:
    cohort = spec(db)
    insert(ready, [f"u{i:03d}" for i in range(25)])
    batches = list(store(ready).stream(cohort, KEY, ADD, batch_rows=10))
    assert [len(b) for b in batches] == [10, 10, 5]
    assert sorted(u for b in batches for u in b) == [f"u{i:03d}" for i in range(25)]


def test_checkpoints_while_streaming(db: Path, ready: DuckDBWarehouse) -> None:
    # The runner records accepted bodies while the delta cursor is still open.
    cohort = spec(db)
    insert(ready, [f"u{i:03d}" for i in range(30)])
    seen: list[str] = []
    for batch in store(ready).stream(cohort, KEY, ADD, batch_rows=7):
        store(ready).record_added(cohort, KEY, batch, "run-1")
        seen.extend(batch)
    assert sorted(seen) == state(ready) == [f"u{i:03d}" for i in range(30)]
    assert plan(ready, cohort) == (30, 0, 0, 30)


# -- memory ---------------------------------------------------------------------------------


def memory_limit(warehouse: DuckDBWarehouse) -> str:
    return str(sql(warehouse, "select current_setting('memory_limit')")[0][0])


def profile_target(db: Path, **fields: Any) -> ProfileTarget:
    """A dbt-duckdb target of the file, as dbt-duckdb's own credentials hold it."""
    from dbt.adapters.duckdb.credentials import DuckDBCredentials

    credentials = DuckDBCredentials.from_dict({"path": str(db), "schema": "main", **fields})
    return ProfileTarget("unit", "dev", db.parent, credentials)


def test_memory_is_capped_by_default_and_can_be_raised(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MOENGAGE_DUCKDB_MEMORY_LIMIT", raising=False)
    with open_db(db) as opened:
        # 48MB for each of the runner's DuckDB threads (2 to 4), shown in MiB (MB is 10^6).
        megabytes = 48 * duckdb_connect.THREADS
        assert memory_limit(opened) == f"{int(megabytes * 10**7 / 2**20) / 10:.1f} MiB"
        assert f"{megabytes}MB" == DEFAULT_MEMORY_LIMIT and 2 <= duckdb_connect.THREADS <= 4
        threads = opened.conn.execute("select current_setting('threads')").fetchone()
        assert threads == (duckdb_connect.THREADS,)
    monkeypatch.setenv("MOENGAGE_DUCKDB_MEMORY_LIMIT", "1GB")
    opened = DuckDBWarehouse.from_profile(profile_target(db), db.parent)
    with opened:
        assert memory_limit(opened) == "953.6 MiB"
    # The profile's settings, as dbt-duckdb reads them, win over the environment.
    target = profile_target(db, settings={"memory_limit": "200MB"})
    with DuckDBWarehouse.from_profile(target, db.parent) as opened:
        assert memory_limit(opened) == "190.7 MiB"


def test_out_of_memory_says_how_to_raise_the_cap(db: Path) -> None:
    # A model that cannot spill (one huge list) under a tiny cap: the error names the
    # model and the setting to raise.
    with duckdb.connect(str(db)) as conn:
        conn.execute(
            "create table main.big as select i::varchar || repeat('x', 50) as uid "
            "from range(300000) r(i)"
        )
        conn.execute(
            "create view main.huge as select unnest(list(uid order by uid desc)) as uid "
            "from main.big"
        )
    with open_db(db, memory_limit="8MB") as opened:
        assert store(opened).prepare(create=True).ready
        with pytest.raises(WarehouseError) as caught:
            store(opened).plan(spec(db, table="huge"), KEY, False)
    text = str(caught.value)
    assert "model 'huge'" in text and "Out of Memory Error" in text
    assert "memory_limit = 8MB" in text and "MOENGAGE_DUCKDB_MEMORY_LIMIT" in text


# -- paths with secrets ----------------------------------------------------------------------
# dbt-duckdb users write `path: "md:analytics?motherduck_token={{ env_var(...) }}"`.

TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.sig-never-shown"


def refusal(db: Path, path: str) -> str:
    """The message from_profile refuses a target whose `path` is `path` with."""
    with pytest.raises(ProfileError) as caught:
        DuckDBWarehouse.from_profile(profile_target(db, path=path), db.parent)
    return str(caught.value)


@pytest.mark.parametrize(
    "path",
    [
        f"md:analytics?motherduck_token={TOKEN}",
        f"MD:analytics?motherduck_token={TOKEN}&saas_mode=true",
        f"md:?motherduck_token={TOKEN}",
        f"motherduck:analytics?motherduck_token={TOKEN}",
    ],
)
def test_motherduck_paths_are_refused_without_the_token(db: Path, path: str) -> None:
    text = refusal(db, path)
    assert TOKEN not in text and "motherduck_token=***" in text
    assert "profile 'unit' target 'dev'" in text and "MotherDuck" in text
    assert "local .duckdb file" in text and "wait for MotherDuck support" in text


@pytest.mark.parametrize(
    "path",
    [
        f"/no/such/folder/aud.duckdb?motherduck_token={TOKEN}",
        f"missing.duckdb?motherduck_token={TOKEN}",
        f":memory:?motherduck_token={TOKEN}",
        f":memory:scratch?motherduck_token={TOKEN}",
    ],
)
def test_other_refused_paths_never_show_the_token(db: Path, path: str) -> None:
    text = refusal(db, path)
    assert TOKEN not in text and "motherduck_token=***" in text
    assert "profile 'unit' target 'dev'" in text


def test_in_memory_paths_are_refused(db: Path) -> None:
    # (dbt-duckdb itself refuses an empty path.)
    assert "in-memory database" in refusal(db, ":memory:")


def test_a_file_duckdb_cannot_open_is_shown_without_the_token(tmp_path: Path) -> None:
    # A folder where a database file should be: DuckDB's own error echoes the path.
    folder = tmp_path / f"aud.duckdb?motherduck_token={TOKEN}"
    folder.mkdir()
    with pytest.raises(ProfileError) as caught:
        DuckDBWarehouse.from_profile(profile_target(folder), tmp_path)
    text = str(caught.value)
    assert "cannot open DuckDB database" in text
    assert TOKEN not in text and "motherduck_token=***" in text


def test_the_database_path_is_shown_without_the_token(tmp_path: Path) -> None:
    path = tmp_path / f"aud.duckdb?motherduck_token={TOKEN}"
    with duckdb.connect(str(path)) as conn:
        conn.execute("create table main.aud (uid varchar)")
    with DuckDBWarehouse.from_profile(profile_target(path), tmp_path) as opened:
        missing = replace(spec(path), relation_name='"nope"."main"."aud"')
        with pytest.raises(WarehouseError) as caught:
            opened.check_uid_column(missing)
        # Whether DuckDB's catalog error echoes the path depends on its version; never the token.
        assert TOKEN not in str(caught.value)
        failed = opened.explain(duckdb.IOException(f'Cannot open file "{path}": denied'))
        assert TOKEN not in failed and "motherduck_token=***" in failed


# -- save_run ------------------------------------------------------------------------------


def test_save_run_upserts_one_row(ready: DuckDBWarehouse) -> None:
    row = RunRow(
        run_id="run-1",
        endpoint=KEY.endpoint,
        workspace_id=WS,
        cohort_id="aud_cohort",
        model="aud",
        mode="mirror",
        full_refresh=False,
        started_at=utcnow(),
    )
    store(ready).save_run(row)
    assert sql(ready, f"select status, finished_at from main.{RUNS}") == [("running", None)]
    row.status, row.finished_at, row.error = "failed", utcnow(), "HTTP 413: too big"
    row.added, row.removed, row.requests, row.retries = 5, 2, 3, 1
    store(ready).save_run(row)
    rows = sql(
        ready,
        f"select run_id, status, added, removed, requests, retries, error, mode, "
        f"finished_at is not null from main.{RUNS}",
    )
    assert rows == [("run-1", "failed", 5, 2, 3, 1, "HTTP 413: too big", "mirror", True)]
    store(ready).save_run(replace(row, cohort_id="other_cohort"))
    store(ready).save_run(replace(row, run_id="run-2"))
    assert sql(ready, f"select count(*) from main.{RUNS}") == [(3,)]


def run_row(**changes: Any) -> RunRow:
    row = RunRow(
        run_id="run-1",
        endpoint=KEY.endpoint,
        workspace_id=WS,
        cohort_id="aud_cohort",
        model="aud",
        mode="add",
        full_refresh=False,
        started_at=utcnow(),
        status="failed",
    )
    return replace(row, **changes)


def stored_error(warehouse: DuckDBWarehouse) -> str:
    ((error,),) = sql(warehouse, f"select error from main.{RUNS}")
    return str(error)


def test_save_run_caps_a_huge_error(ready: DuckDBWarehouse) -> None:
    # A server's page of a megabyte, echoed in the error, must not fill the state.
    huge = "HTTP 502: " + "x" * 1_000_000
    row = run_row(error=huge)
    store(ready).save_run(row)
    stored = stored_error(ready)
    assert len(stored) <= ERROR_CHARS and stored.startswith("HTTP 502: xxx")
    assert stored.endswith("...")
    assert row.error == huge  # the caller's row (and so the report) is left as it was


def test_save_run_escapes_control_characters(ready: DuckDBWarehouse) -> None:
    store(ready).save_run(run_row(error="HTTP 400:\x1b[31m red\x07\x00 bell\r\nline 2\tend\u202e"))
    stored = stored_error(ready)
    assert not any(c in stored for c in "\x1b\x07\x00\r\u202e")
    assert "\\x1b[31m red\\x07\\x00 bell\\x0d\nline 2\tend\\u202e" in stored


def test_save_run_never_stores_an_authorization_value(ready: DuckDBWarehouse) -> None:
    error = (
        "HTTP 400: echoed headers {'Authorization': 'Basic dXNlcjpwYXNz'} and "
        "Bearer abc.def, then Authorization: Basic dXNlcjpwYXNz"
    )
    store(ready).save_run(run_row(error=error))
    stored = stored_error(ready)
    assert "dXNlcjpwYXNz" not in stored and "abc.def" not in stored
    assert "'Authorization': 'Basic ***'" in stored and "Bearer ***" in stored
    store(ready).save_run(run_row(error=None))
    assert sql(ready, f"select error from main.{RUNS}") == [(None,)]


# -- locks ---------------------------------------------------------------------------------


@pytest.fixture
def kept_locks(ready: DuckDBWarehouse) -> None:
    """Lock rows as they are: this process did not just open the file (see below)."""
    ready._locks_cleared = True


@pytest.fixture
def fast_locks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll locks every 20 ms."""
    monkeypatch.setattr(state_locks, "POLL_SECONDS", 0.02)


def dead_lock(warehouse: DuckDBWarehouse, run_id: str, cohort_id: str = "aud_cohort") -> None:
    """A lock row as a runner leaves it when it dies holding the lock."""
    now = utcnow()
    sql(
        warehouse,
        f"insert into main.{LOCKS} values (?, ?, ?, ?, ?, ?)",
        (*KEY.params, cohort_id, run_id, now, now),
    )


def age_locks(warehouse: DuckDBWarehouse, seconds: int) -> None:
    """Every lock row as it would be `seconds` later without a heartbeat (no sleeping)."""
    sql(
        warehouse,
        f"update main.{LOCKS} set locked_at = locked_at - to_seconds({seconds}), "
        f"heartbeat_at = heartbeat_at - to_seconds({seconds})",
    )


def lock_rows(warehouse: DuckDBWarehouse) -> list[tuple[Any, ...]]:
    """(workspace, cohort, run) of every lock row."""
    rows = sql(warehouse, f"select workspace_id, cohort_id, run_id from main.{LOCKS} order by 3")
    return [tuple(row) for row in rows]


@pytest.mark.usefixtures("fast_locks")
def test_lock_blocks_a_second_run(db: Path, ready: DuckDBWarehouse) -> None:
    cohort = spec(db)
    with store(ready).lock(cohort, KEY, "run-1", wait_seconds=0):
        assert lock_rows(ready) == [(WS, "aud_cohort", "run-1")]
        started = time.monotonic()
        with pytest.raises(LockTimeout) as caught, store(ready).lock(cohort, KEY, "run-2", 0.3):
            pytest.fail("run-2 took a lock run-1 holds")
        assert time.monotonic() - started >= 0.3
        message = str(caught.value)
        assert "run-1" in message and "aud_cohort" in message
        assert "MOENGAGE_LOCK_WAIT_SECONDS" in message
        # The loser left no row behind.
        assert lock_rows(ready) == [(WS, "aud_cohort", "run-1")]
    assert lock_rows(ready) == []
    with store(ready).lock(cohort, KEY, "run-2", wait_seconds=0):
        assert lock_rows(ready) == [(WS, "aud_cohort", "run-2")]


@pytest.mark.usefixtures("fast_locks")
def test_lock_is_per_workspace_and_cohort(db: Path, ready: DuckDBWarehouse) -> None:
    cohort = spec(db)
    other = replace(cohort, cohort_id="other_cohort")
    with (
        store(ready).lock(cohort, KEY, "run-1", wait_seconds=0),
        store(ready).lock(other, KEY, "run-2", wait_seconds=0),
        store(ready).lock(cohort, OTHER_KEY, "run-3", wait_seconds=0),
    ):
        assert len(lock_rows(ready)) == 3
    assert lock_rows(ready) == []


@pytest.mark.usefixtures("fast_locks")
def test_lock_is_released_on_error(db: Path, ready: DuckDBWarehouse) -> None:
    cohort = spec(db)
    with pytest.raises(RuntimeError), store(ready).lock(cohort, KEY, "run-1", wait_seconds=0):
        raise RuntimeError("boom")
    assert lock_rows(ready) == []


@pytest.mark.usefixtures("fast_locks")
def test_waiter_gets_the_lock_once_released(db: Path, ready: DuckDBWarehouse) -> None:
    cohort = spec(db)
    held = store(ready).lock(cohort, KEY, "run-1", wait_seconds=0)
    held.__enter__()
    polls = 0

    def sleep(seconds: float) -> None:
        nonlocal polls
        polls += 1
        if polls == 3:
            held.__exit__(None, None, None)

    with row_lock(ready, cohort, KEY, "run-2", 5.0, sleep=sleep):
        assert polls == 3
        assert lock_rows(ready) == [(WS, "aud_cohort", "run-2")]


@pytest.mark.usefixtures("fast_locks", "kept_locks")
def test_stale_lock_is_taken_over(
    db: Path, ready: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DuckDBWarehouse, "lock_stale_seconds", 60)
    cohort = spec(db)
    dead_lock(ready, "dead-run")
    with pytest.raises(LockTimeout), store(ready).lock(cohort, KEY, "run-2", wait_seconds=0):
        pass
    age_locks(ready, 61)  # a minute passes on the warehouse's clock without a heartbeat
    with store(ready).lock(cohort, KEY, "run-2", wait_seconds=0):
        assert lock_rows(ready) == [(WS, "aud_cohort", "run-2")]
    assert lock_rows(ready) == []


@pytest.mark.usefixtures("fast_locks")
def test_heartbeat_keeps_a_lock_fresh(
    db: Path, ready: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DuckDBWarehouse, "lock_stale_seconds", 60)
    cohort = spec(db)
    with store(ready).lock(cohort, KEY, "run-1", wait_seconds=0):
        # Time passes on the warehouse's clock, past the stale age, with a heartbeat at the
        # end: the lock stays run-1's.
        age_locks(ready, 61)
        ready.run("heartbeat_lock", (*KEY.params, "aud_cohort", "run-1"))
        with pytest.raises(LockTimeout), store(ready).lock(cohort, KEY, "run-2", wait_seconds=0):
            pass


@pytest.mark.usefixtures("fast_locks")
@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata", "UTC"])
def test_fresh_lock_is_not_stale_in_any_time_zone(
    db: Path, ready: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch, zone: str
) -> None:
    # State timestamps are naive UTC; the stale cut-off must not shift with the local zone.
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is POSIX only")
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        cohort = spec(db)
        with store(ready).lock(cohort, KEY, "run-1", wait_seconds=0):
            with (
                pytest.raises(LockTimeout),
                store(ready).lock(cohort, KEY, "run-2", wait_seconds=0),
            ):
                pass
            assert lock_rows(ready) == [(WS, "aud_cohort", "run-1")]
    finally:
        monkeypatch.undo()
        time.tzset()


def test_opening_clears_locks_of_dead_runners(db: Path) -> None:
    # Whoever can open a DuckDB file for writing is its only runner: older lock rows are dead.
    with open_db(db) as warehouse:
        store(warehouse).prepare(create=True)
        dead_lock(warehouse, "dead-run")
    with open_db(db) as warehouse:
        assert lock_rows(warehouse) == [(WS, "aud_cohort", "dead-run")]
        store(warehouse).prepare(create=True)
        with store(warehouse).lock(spec(db), KEY, "run-2", wait_seconds=0):
            assert lock_rows(warehouse) == [(WS, "aud_cohort", "run-2")]


def test_second_process_waits_for_the_file(db: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
            "sys.stdin.read(); c.close()",
            str(db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        for read_only in (False, True):
            started = time.monotonic()
            with pytest.raises(LockTimeout) as caught:
                DuckDBWarehouse(str(db), read_only=read_only, wait_seconds=0.5)
            assert time.monotonic() - started >= 0.5
            message = str(caught.value)
            assert "held by another process" in message and "MOENGAGE_LOCK_WAIT_SECONDS" in message
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    with open_db(db, wait_seconds=0.5) as warehouse:
        assert store(warehouse).prepare(create=True).ready


# -- a stop cancels the reads of models (issue "Hardening, round three", item 2) ---------------

# Minutes of DuckDB's time: a count over 10^11 pairs. SHORT: about a second here.
SLOW = "select count(*) from range({}) a, range(100000) b where (a.range * 7 + b.range) % 13 = 5"


def stop_soon(stop: threading.Event, seconds: float = 0.3) -> None:
    threading.Timer(seconds, stop.set).start()


def test_a_stop_cancels_a_read_of_a_model_and_never_a_write(warehouse: DuckDBWarehouse) -> None:
    stop = threading.Event()
    with warehouse.cancelled_on(stop):
        stop_soon(stop)
        started = time.monotonic()
        with pytest.raises(Interrupted) as caught:
            warehouse.execute_sql(SLOW.format(1_000_000), (), "reading_the_model")
        assert time.monotonic() - started < 3
        assert str(caught.value) == CANCELLED
        # Once stopped, a read does not start; any other statement runs (a checkpoint, a
        # run row), and one that runs as the stop comes is not cut short.
        with pytest.raises(Interrupted):
            warehouse.execute_sql("select 1", (), "plan")
        assert warehouse.execute_sql("select 1", (), "insert_run").fetchone() == (1,)
    stop = threading.Event()
    with warehouse.cancelled_on(stop):
        stop_soon(stop, 0.1)
        cursor = warehouse.execute_sql(SLOW.format(2_000), (), "insert_members")
        assert cursor.fetchone()[0] > 0
    # Outside the block, reads run again.
    assert warehouse.execute_sql("select 42", (), "plan").fetchone() == (42,)


def test_a_stop_cancels_a_delta_being_read(db: Path, ready: DuckDBWarehouse) -> None:
    ready.conn.execute("create table main.aud_rows (uid varchar)")
    insert(ready, ["a", "b"], "aud_rows")
    ready.conn.execute(
        f"create view main.slow_aud as select r.* from main.aud_rows r "
        f"where ({SLOW.format(1_000_000)}) > 0"
    )
    stop = threading.Event()
    with ready.cancelled_on(stop):
        stop_soon(stop)
        started = time.monotonic()
        with pytest.raises(Interrupted):
            delta_uids(ready, spec(db, "slow_aud"), Change.NEW)
        assert time.monotonic() - started < 3
    # The delta's temp table is gone with it, and the connection works on.
    assert not sql(ready, "select * from duckdb_tables() where table_name like 'moengage_delta%'")
    assert delta_uids(ready, spec(db, "aud_rows"), Change.NEW) == ["a", "b"]

"""state/left_behind: which cohorts of the state no model of the project claims (selected or
not), read on DuckDB and Snowflake (fakesnow); what the warning says; the meta line that
pins a mirror cohort's default cohort_id; and how `status` shows them without failing."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import fakesnow
import pytest
import snowflake.connector
from rich.console import Console

from dbt_moengage.cohorts import CohortSpec
from dbt_moengage.manifest import ModelNode
from dbt_moengage.report.status import print_status
from dbt_moengage.state import CohortRecord, utcnow
from dbt_moengage.state.health import StatusReport
from dbt_moengage.state.history import StateCohort, StateHistory
from dbt_moengage.state.left_behind import (
    LeftBehind,
    ProjectCohort,
    default_id_warnings,
    find_left_behind,
    meta_line,
)
from dbt_moengage.state.schema import StateKey
from dbt_moengage.warehouse.duckdb import DuckDBWarehouse
from dbt_moengage.warehouse.engine import Engine
from dbt_moengage.warehouse.snowflake import SnowflakeWarehouse

from ..state_helpers import store
from .test_history import cohort, run_row

KEY = StateKey("http://127.0.0.1:8765", "WS_LEFT")
EU = StateKey("https://api-02.moengage.com", "WS_LEFT_EU")
SYNCED_AT = datetime(2026, 11, 30, 9, 15)
NOW = datetime(2026, 12, 2, 9, 15)


def node(name: str, **meta: Any) -> ModelNode:
    return ModelNode(
        unique_id=f"model.unit.{name}",
        name=name,
        relation_name=f"main.{name}",
        description="",
        meta=meta,
        meta_source="config.meta",
    )


def left(mode: str = "mirror", users: tuple[ProjectCohort, ...] = (), **more: Any) -> LeftBehind:
    fields: dict[str, Any] = {
        "cohort_id": "vip_users",
        "members": 12_345,
        "model": "vip_users",
        "mode": mode,
        "synced_at": SYNCED_AT,
        "cohort_name": "VIP Users",
        **more,
    }
    return LeftBehind(StateCohort(**fields), KEY, None, users)


NEW = ProjectCohort("vip_customers", "vip_customers", "VIP Users", None, explicit_id=False)


# -- wording -------------------------------------------------------------------------------


def test_a_renamed_mirror_cohort_says_what_froze_and_the_line_that_keeps_it() -> None:
    assert left(users=(NEW,)).message() == (
        "cohort 'vip_users' is left behind: the sync state holds 12,345 members for it "
        "(workspace WS_LEFT at http://127.0.0.1:8765) but no cohort model of the project "
        "syncs it; model vip_users last synced it at 2026-11-30 09:15 UTC. Its MoEngage "
        "segment no longer updates: nobody new joins it and, though it is a mirror cohort, "
        "nobody leaves it, while campaigns may still target it. Its cohort_name 'VIP Users' "
        "is now used by cohort_id 'vip_customers' (model vip_customers): to keep syncing the "
        "old segment instead, add `cohort_id: vip_users` to meta.moengage of model "
        "vip_customers. If it is retired, archive the segment in MoEngage and delete its rows "
        "(cohort_id 'vip_users') from moengage_cohort_members and moengage_cohorts: it is "
        "then no longer named."
    )


def test_an_add_cohort_whose_name_is_free_and_that_never_synced() -> None:
    text = left(mode="add", synced_at=None).message()
    assert "nobody leaves it" not in text and "mirror" not in text
    assert "model vip_users last ran it, and no run of it succeeded" in text
    assert "If its model was renamed, add `cohort_id: vip_users` to the renamed model's" in text
    assert "now used by" not in text
    named = LeftBehind(left().cohort, EU, "eu").message()
    assert "(destination 'eu', workspace WS_LEFT_EU at https://api-02.moengage.com)" in named


def test_the_meta_line_is_yaml_that_reads_back_the_same() -> None:
    assert meta_line("vip_users") == "cohort_id: vip_users"
    assert meta_line(".VIP: users") == 'cohort_id: ".VIP: users"'
    assert meta_line("2024") == 'cohort_id: "2024"'


def test_only_mirror_cohorts_on_the_default_cohort_id_are_told_to_pin_it() -> None:
    nodes = [
        node("vip", cohort_name="VIP", mode="mirror"),
        node("pinned", cohort_name="P", mode="mirror", cohort_id="pinned"),
        node("adds", cohort_name="A"),
    ]
    specs = [
        CohortSpec(n.name, n.unique_id, f"main.{n.name}", "x", n.name, "", "uid", mode=mode)
        for n, mode in zip(nodes, ("mirror", "mirror", "add"), strict=True)
    ]
    (warning,) = default_id_warnings(nodes, specs)
    assert warning == (
        "model 'vip': a mirror cohort whose cohort_id is the model's name by default: "
        "renaming the model would start a new segment and leave this one behind, nobody "
        "ever removed from it again. Pin it: add `cohort_id: vip` to its meta.moengage"
    )


# -- finding them in the state: DuckDB and Snowflake (fakesnow) ----------------------------


def seed(engine: Engine) -> None:
    """Under KEY: a live cohort, a renamed one (members, name sent), one emptied by mirror
    (no member, its name sent), one whose only run failed before MoEngage got anything, and
    one of a model left out of the selection. Under EU: one of a named destination."""
    state = store(engine)
    assert state.prepare(create=True).ready
    start = utcnow() - timedelta(hours=2)
    for cohort_id, uids, name, status, mode in (
        ("live", ["a"], "Live", "synced", "add"),
        ("vip_users", ["a", "b", "c"], "VIP Users", "synced", "mirror"),
        ("emptied", [], "Emptied", "synced", "mirror"),
        ("never_sent", [], None, "failed", "add"),
        ("unselected", ["z"], "Unselected", "synced", "add"),
    ):
        if uids:
            state.record_added(cohort(cohort_id), KEY, uids, "r1")
        if name is not None:
            state.save_cohort(cohort(cohort_id), KEY, CohortRecord(cohort_id, name, None))
        state.save_run(run_row("r1", cohort_id, start, status, key=KEY, mode=mode))
    state.save_run(run_row("r0", "vip_users", start - timedelta(days=1), "synced", key=KEY))
    state.record_added(cohort("eu_old"), EU, ["e"], "r1")
    state.save_run(run_row("r1", "eu_old", start, "synced", key=EU))


NODES = [
    node("live", cohort_name="Live"),
    node("vip_customers", cohort_name="VIP Users", mode="mirror"),
    # Left out by --select, or invalid just now: still the project's.
    node("unselected", cohort_name="Unselected", mode="bogus"),
]


def check(history: StateHistory) -> None:
    found = find_left_behind(history, {None: KEY}, NODES)
    assert [f.cohort.cohort_id for f in found] == ["emptied", "vip_users"]
    emptied, vip = found
    assert (emptied.cohort.members, emptied.mirror, emptied.name_now_used_by) == (0, True, ())
    assert (vip.cohort.members, vip.cohort.model, vip.cohort.mode) == (3, "vip_users", "mirror")
    assert vip.cohort.cohort_name == "VIP Users" and vip.cohort.synced_at is not None
    assert [u.cohort_id for u in vip.name_now_used_by] == ["vip_customers"]
    # A destination whose settings are missing claims its cohort ids under every key.
    unkeyed = [*NODES, node("vip", cohort_name="V", cohort_id="vip_users", destination="US")]
    assert [f.cohort.cohort_id for f in find_left_behind(history, {None: KEY}, unkeyed)] == [
        "emptied"
    ]
    both = find_left_behind(history, {None: KEY, "eu": EU}, NODES)
    assert [(f.destination, f.cohort.cohort_id) for f in both][-1] == ("eu", "eu_old")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "state.duckdb"
    duckdb.connect(str(path)).close()
    return path


def test_finds_the_cohorts_no_model_claims_on_duckdb(db: Path) -> None:
    with DuckDBWarehouse(str(db)) as warehouse:
        assert find_left_behind(StateHistory(warehouse), {None: KEY}, NODES) == []
        seed(warehouse)
    with DuckDBWarehouse(str(db), read_only=True) as warehouse:
        check(StateHistory(warehouse))


def test_finds_the_same_on_snowflake() -> None:
    with fakesnow.patch():

        def session() -> Any:
            return snowflake.connector.connect(
                database="DB", schema="ANALYTICS", paramstyle="qmark"
            )

        with SnowflakeWarehouse(session(), "DB", "moengage_state", opener=session) as warehouse:
            seed(warehouse)
            check(StateHistory(warehouse))


# -- status --------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 300])
def test_status_lists_them_and_still_exits_0(width: int) -> None:
    report = StatusReport(NOW, "main", True, [], left_behind=[left(users=(NEW,))])
    assert report.exit_code == 0
    (shown,) = report.to_json()["left_behind"]
    assert shown["health"] == "left behind" and shown["members"] == 12_345
    assert shown["last_synced"] == {"finished_at": "2026-11-30T09:15:00Z", "seconds_ago": 172_800}
    assert shown["name_now_used_by"] == [{"cohort_id": "vip_customers", "model": "vip_customers"}]
    out = io.StringIO()
    print_status(report, Console(file=out, width=width, color_system=None))
    text = out.getvalue()
    assert "left behind" in text and "12,345" in text and "2d ago" in text
    assert "warning cohort 'vip_users' is left behind" in text
    assert max(len(line) for line in text.splitlines()) <= width

"""The one uid rule end to end: the runner's SQL agrees with the dbt package's test on the
integration_tests fixtures that dbt built."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import duckdb

from dbt_moengage import uids
from dbt_moengage.cohorts import CohortSpec
from dbt_moengage.state import Change, StateKey, StateStore
from dbt_moengage.warehouse.duckdb import DuckDBWarehouse

from ..conftest import ROOT, BuiltProject

FAILURES = ROOT / "integration_tests" / "seeds" / "uid_rule" / "expected_uid_rule_failures.csv"


def test_runner_sql_agrees_with_the_dbt_fixture(built_project: BuiltProject) -> None:
    # integration_tests/models/uid_rule/uid_rule_cases holds every path, one row each, and
    # seeds/uid_rule/expected_uid_rule_failures.csv the reason the moengage_uid test gives
    # each bad row (checked by dbt build); the runner must agree.
    with FAILURES.open(newline="") as file:
        reasons = {
            row["case_id"]: row["failure_reason"]
            for row in csv.DictReader(file)
            if row["fixture"] == "uid_rule_cases"
        }
    with duckdb.connect(str(built_project.database), read_only=True) as conn:
        rows = conn.execute("select case_id, uid from main.uid_rule_cases").fetchall()
    cases = [(uid, reasons.get(case_id, "")) for case_id, uid in rows]
    assert len(reasons) == sum(1 for _, reason in cases if reason)
    database = Path(built_project.database)
    cohort = CohortSpec(
        model="uid_rule_cases",
        unique_id="model.moengage_integration_tests.uid_rule_cases",
        relation_name=f'"{database.stem}"."main"."uid_rule_cases"',
        cohort_name="Cases",
        cohort_id="uid_rule_cases",
        description="cases",
        uid_column="uid",
    )
    key = StateKey("http://127.0.0.1", "WS")
    limited = replace(cohort, max_uid_length=10)
    with DuckDBWarehouse(str(database), read_only=True) as warehouse:
        state = StateStore(warehouse)
        state.prepare(create=False)
        stats = warehouse.audience_stats(cohort)
        distinct = state.plan(cohort, key, False).distinct
        sent = {u for batch in state.stream(cohort, key, Change.NEW) for u in batch}
        # With the fixture's max_length as the cohort's max_uid_length: the longer uid is
        # dropped, counted, and not sent; the rest is.
        limited_stats = warehouse.audience_stats(limited)
        limited_distinct = state.plan(limited, key, False).distinct
        limited_sent = {u for batch in state.stream(limited, key, Change.NEW) for u in batch}
    expected = {"null": 0, "empty": 0, "whitespace": 0, "duplicate": 0, "too_long": 0}
    for uid, reason in cases:
        if reason in expected:
            expected[reason] += 1
        if reason in ("null", "empty", "whitespace"):
            assert uids.problem(uid) == reason, uid
        else:
            assert uids.problem(uid) is None, uid
    # The test fails both rows of a duplicate; the runner sends one and drops the other.
    expected["duplicate"] -= 1
    assert stats.dropped(distinct) == expected
    valid = {uid for uid, reason in cases if reason in ("", "duplicate", "longer than 10")}
    assert sent == valid
    long = [uid for uid, _ in cases if uid in valid and len(uid) > 10]
    assert "longer-than-10" in long
    assert limited_sent == valid - set(long)
    assert limited_distinct == len(limited_sent)
    assert limited_stats.dropped(limited_distinct) == {
        **expected,
        "duplicate": expected["duplicate"] - sum(long.count(u) - 1 for u in set(long)),
        "too_long": len(long),
    }

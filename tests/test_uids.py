"""The one uid rule: the Python rule, the runner's SQL and the dbt package's test agree."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import duckdb
import jinja2
import pytest

from dbt_moengage import uids
from dbt_moengage.cohorts import CohortSpec
from dbt_moengage.state import Change, StateKey, StateStore
from dbt_moengage.warehouse.duckdb import DuckDBWarehouse

from .conftest import ROOT, BuiltProject

MACRO = ROOT / "macros" / "_moengage_uid_whitespace.sql"


def macro_whitespace() -> str:
    """The characters the dbt package's _moengage_uid_whitespace macro returns."""
    returned: list[str] = []
    env = jinja2.Environment()
    env.globals["return"] = returned.append
    source = MACRO.read_text(encoding="utf-8")
    env.from_string(source + "{{ _moengage_uid_whitespace() }}").render()
    assert len(returned) == 1
    return returned[0]


def test_the_dbt_package_and_the_runner_share_the_characters() -> None:
    assert macro_whitespace() == uids.WHITESPACE


def test_every_unicode_space_is_whitespace() -> None:
    # Python's own idea of whitespace, and the zero-width characters it leaves out.
    spaces = {chr(c) for c in range(0x110000) if chr(c).isspace()}
    spaces -= {"\x1c", "\x1d", "\x1e", "\x1f"}  # file/group/record/unit separators: controls
    assert spaces <= set(uids.WHITESPACE)
    for char in "\u200b\u200c\u200d\u2060\ufeff":
        assert unicodedata.category(char) == "Cf" and char in uids.WHITESPACE
    assert "'" not in uids.WHITESPACE and "{" not in uids.WHITESPACE


@pytest.mark.parametrize(
    ("uid", "reason"),
    [
        (None, "null"),
        ("", "empty"),
        (" \t", "empty"),
        ("\u00a0\u200b", "empty"),
        (" a", "whitespace"),
        ("a\ufeff", "whitespace"),
        ("a b", None),
        ("a\u00a0b", None),
        ("ABC", None),
    ],
)
def test_problem(uid: str | None, reason: str | None) -> None:
    assert uids.problem(uid) == reason


@pytest.mark.e2e
def test_runner_sql_agrees_with_the_dbt_fixture(built_project: BuiltProject) -> None:
    # integration_tests/models/uid_rule/uid_rule_cases holds every path, with the reason
    # the moengage_uid test gives it (checked by dbt build); the runner must agree.
    with duckdb.connect(str(built_project.database), read_only=True) as conn:
        cases = conn.execute("select uid, expected_reason from main.uid_rule_cases").fetchall()
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
    with DuckDBWarehouse(str(database), read_only=True) as warehouse:
        state = StateStore(warehouse)
        state.prepare(create=False)
        stats = warehouse.audience_stats(cohort)
        key = StateKey("http://127.0.0.1", "WS")
        distinct = state.plan(cohort, key, False).distinct
        sent = {u for batch in state.stream(cohort, key, Change.NEW) for u in batch}
    expected = {"null": 0, "empty": 0, "whitespace": 0, "duplicate": 0}
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

"""One list of run statuses: what the runner writes to moengage_sync_runs.status is what the
dbt package's accepted_values tests accept (macros/_moengage_run_statuses.sql)."""

from __future__ import annotations

import re
from typing import Any

import jinja2

from dbt_moengage.report import RUN_STATUSES, results
from dbt_moengage.state.store import RunRow

from ..conftest import ROOT

MACRO = ROOT / "macros" / "_moengage_run_statuses.sql"
PACKAGE_TESTS = ROOT / "models" / "moengage" / "moengage.yml"
# Statuses a cohort's result can have that never reach a run row: a dry run writes nothing,
# and an invalid or skipped cohort is settled before its sync takes the lock and writes one.
NO_RUN_ROW = {results.DRY_RUN, results.INVALID, results.SKIPPED}


def macro_statuses() -> list[Any]:
    """The list the dbt package's _moengage_run_statuses macro returns."""
    returned: list[Any] = []
    env = jinja2.Environment()
    env.globals["return"] = returned.append
    env.from_string(MACRO.read_text(encoding="utf-8") + "{{ _moengage_run_statuses() }}").render()
    assert len(returned) == 1
    return list(returned[0])


def test_the_dbt_package_and_the_runner_share_the_run_statuses() -> None:
    assert macro_statuses() == list(RUN_STATUSES)
    assert len(set(RUN_STATUSES)) == len(RUN_STATUSES)


def test_every_status_of_the_runner_is_placed() -> None:
    # A status added to report/results.py is either written to run rows (then it belongs in
    # RUN_STATUSES and the macro, or the package's tests refuse the user's state) or is not
    # (then it belongs in NO_RUN_ROW above).
    statuses = {
        value
        for name, value in vars(results).items()
        if name.isupper() and isinstance(value, str) and re.fullmatch(r"[a-z_]+", value)
    }
    unplaced = statuses - set(RUN_STATUSES) - NO_RUN_ROW
    assert not unplaced, f"add each to RUN_STATUSES and the macro, or to NO_RUN_ROW: {unplaced}"
    assert not set(RUN_STATUSES) & NO_RUN_ROW
    assert RunRow.__dataclass_fields__["status"].default in RUN_STATUSES


def test_the_package_tests_take_the_macro_not_a_list_of_their_own() -> None:
    values = re.findall(r"^\s*values: (.*)$", PACKAGE_TESTS.read_text(encoding="utf-8"), re.M)
    assert sorted(values) == [
        '"{{ moengage._moengage_run_statuses() }}"',
        '"{{ moengage._moengage_run_statuses() }}"',
        "['add', 'mirror']",
    ]

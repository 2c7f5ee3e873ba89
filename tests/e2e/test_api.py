"""The Python API (dbt_moengage.sync) end to end: dbt's project, the emulator, a typed report."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import dbt_moengage
from dbt_moengage import ConfigError, RunReport
from dbt_moengage.testing.emulator import Emulator

from ..conftest import API_KEY, COHORTS, BuiltProject, sync_env


def test_the_public_api_is_re_exported_once() -> None:
    assert set(dbt_moengage.__all__) >= {"sync", "RunReport", "CohortResult", "ConfigError"}
    for name in dbt_moengage.__all__:
        assert getattr(dbt_moengage, name) is not None, name


def test_sync_returns_a_typed_report_and_writes_the_json(
    project: BuiltProject, emulator: Emulator
) -> None:
    report = dbt_moengage.sync(
        project.project_dir,
        profiles_dir=project.project_dir,
        environ=sync_env(project, emulator),
    )
    assert isinstance(report, RunReport)
    assert report.ok and report.exit_code == 0 and report.failure_summary() == ""
    by_cohort = {r.cohort_id: r for r in report.results}
    for cohort_id in COHORTS:
        expected = project.expected_members(cohort_id)
        assert emulator.members(cohort_id) == expected, cohort_id
        assert by_cohort[cohort_id].added == len(expected)
    written = json.loads((project.target_dir / "moengage_sync_results.json").read_text())
    assert written["run_id"] == report.run_id

    # Selection as one string, as on the command line; nothing changed, so nothing is sent.
    again = dbt_moengage.sync(
        project.project_dir,
        profiles_dir=project.project_dir,
        select="high_value_users",
        environ=sync_env(project, emulator),
        write_report=False,
    )
    selected = [r for r in again.results if not r.unselected]
    assert [(r.model, r.added, r.requests) for r in selected] == [("high_value_users", 0, 0)]


def test_a_failing_cohort_is_in_the_report_not_raised(
    project: BuiltProject, emulator: Emulator
) -> None:
    # A body over the server's limit is a 413: the cohorts that need one fail, the others sync.
    emulator.config.max_body_bytes = 10_000
    report = dbt_moengage.sync(
        project.project_dir,
        profiles_dir=project.project_dir,
        environ=sync_env(project, emulator),
    )
    assert not report.ok and report.exit_code == 1
    failed = [r for r in report.results if r.status == "failed"]
    assert failed
    summary = report.failure_summary().splitlines()
    assert len(summary) == len(failed)
    for result, line in zip(failed, summary, strict=True):
        assert line.startswith(
            f"{result.model}: failed: MoEngage rejected the request with HTTP 413"
        )
    assert API_KEY not in report.failure_summary()
    for r in report.results:
        if r.status == "synced" and r.cohort_id:
            assert emulator.members(r.cohort_id) == project.expected_members(r.cohort_id)


def test_a_run_that_cannot_start_raises_config_error(tmp_path: Path) -> None:
    (tmp_path / "dbt_project.yml").write_text("name: x\nprofile: x\n")
    with pytest.raises(ConfigError, match="manifest"):
        dbt_moengage.sync(tmp_path, environ={})


def test_a_set_stop_event_starts_nothing(project: BuiltProject, emulator: Emulator) -> None:
    stop = threading.Event()
    stop.set()
    report = dbt_moengage.sync(
        project.project_dir,
        profiles_dir=project.project_dir,
        environ=sync_env(project, emulator),
        stop=stop,
    )
    assert not report.ok
    assert {r.status for r in report.results} == {"interrupted"}
    assert emulator.requests() == []

"""status: health per cohort, the exit code, the JSON shape, and a table readable at 80
columns whose names and numbers are never cut or read as markup."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest
from rich.console import Console

from dbt_moengage.cohorts import CohortSpec
from dbt_moengage.report.status import ago, print_status
from dbt_moengage.state.health import (
    FAILING,
    NEVER_SYNCED,
    NO_HISTORY,
    OK,
    RUNNING,
    STOPPED,
    SYNC_RUNNING,
    UNKNOWN,
    CohortStatus,
    StatusReport,
)
from dbt_moengage.state.history import RunRecord

NOW = datetime(2026, 11, 30, 12, 0)


def spec(model: str, **more: object) -> CohortSpec:
    fields: dict[str, object] = {
        "model": model,
        "unique_id": f"model.unit.{model}",
        "relation_name": f"main.{model}",
        "cohort_name": model.replace("_", " ").title(),
        "cohort_id": model,
        "description": "",
        "uid_column": "uid",
        **more,
    }
    return CohortSpec(**fields)  # type: ignore[arg-type]


def run(status: str, hours_ago: float, error: str | None = None, **more: int) -> RunRecord:
    started = NOW - timedelta(hours=hours_ago)
    return RunRecord(
        run_id=f"run-{status}",
        cohort_id="x",
        model="x",
        mode="add",
        full_refresh=False,
        started_at=started,
        finished_at=started + timedelta(minutes=2),
        status=status,
        added=more.get("added", 0),
        removed=more.get("removed", 0),
        resent=more.get("resent", 0),
        requests=more.get("requests", 1),
        retries=0,
        error=error,
        members_after=more.get("members_after"),
    )


def sample() -> StatusReport:
    healthy = CohortStatus(
        spec("high_value_users_with_a_rather_long_model_name"),
        members=12_345_678,
        last_run=run("synced", 5, added=1_234_567, resent=987_654),
        last_success=NOW - timedelta(hours=5),
    )
    guarded = CohortStatus(
        spec("messy[/x]_signups", mode="mirror", destination="eu"),
        members=95,
        last_run=run("guarded", 0.5, error="model 'messy[/x]_signups': guarded [bold]no[/bold]"),
        last_success=NOW - timedelta(days=3),
    )
    never = CohortStatus(spec("enterprise_accounts"))
    return StatusReport(NOW, "main", True, [healthy, guarded, never])


def render(report: StatusReport, width: int) -> str:
    out = io.StringIO()
    print_status(report, Console(file=out, width=width, color_system=None))
    return out.getvalue()


@pytest.mark.parametrize(
    ("status", "health"),
    [
        ("synced", OK),
        ("failed", FAILING),
        ("guarded", FAILING),
        ("interrupted", FAILING),
        ("not_built", FAILING),  # its model failed in dbt: --only-built did not sync it
        ("running", RUNNING),
    ],
)
def test_health_follows_the_last_run(status: str, health: str) -> None:
    cohort = CohortStatus(spec("a"), last_run=run(status, 1))
    assert cohort.health == health
    report = StatusReport(NOW, "main", True, [cohort])
    assert report.exit_code == (1 if health == FAILING else 0)
    assert (cohort.error is not None) == (health == FAILING)


def test_a_running_row_without_its_lock_is_a_stopped_run() -> None:
    cohort = CohortStatus(spec("a"), last_run=run("running", 1), stopped=True)
    assert cohort.health == STOPPED
    assert StatusReport(NOW, "main", True, [cohort]).exit_code == 1
    assert cohort.error is not None
    assert "run-running stopped without finishing" in cohort.error
    assert "the next sync resumes" in cohort.error
    shown = render(StatusReport(NOW, "main", True, [cohort]), 80)
    assert "stopped" in shown and "killed" in shown


def test_never_synced_and_unknown_do_not_fail_but_invalid_configs_do() -> None:
    never = CohortStatus(spec("a"))
    unknown = CohortStatus(spec("b", destination="eu"), problem="set MOENGAGE_EU_WORKSPACE_ID")
    assert (never.health, unknown.health) == (NEVER_SYNCED, UNKNOWN)
    assert StatusReport(NOW, "main", False, [never, unknown]).exit_code == 0
    invalid = StatusReport(NOW, "main", True, [never], problems=["model 'c': bad"])
    assert invalid.exit_code == 1


def test_members_without_a_run_row_are_no_history_not_never_synced() -> None:
    cohort = CohortStatus(spec("a"), members=3_000)
    assert cohort.health == NO_HISTORY
    report = StatusReport(NOW, "main", True, [cohort], notes=["no moengage_sync_runs table"])
    assert report.exit_code == 0
    assert report.to_json()["cohorts"][0]["members"] == 3_000
    shown = render(report, 80)
    assert "no history" in shown and "members 3,000" in shown and "never synced" not in shown


def test_a_held_duckdb_file_is_a_sync_running_not_a_failure() -> None:
    held = CohortStatus(spec("a"), held=True)
    assert held.health == SYNC_RUNNING
    report = StatusReport(NOW, "main", None, [held], notes=["a sync is running"], state_held=True)
    assert report.exit_code == 0
    data = report.to_json()
    assert data["state_held"] is True and data["state_found"] is None
    assert data["cohorts"][0]["members"] is None and data["cohorts"][0]["health"] == SYNC_RUNNING
    for width in (80, 200):
        shown = render(report, width)
        assert "sync running" in shown and "never" not in shown


def test_ago_uses_the_largest_whole_unit() -> None:
    assert ago(NOW - timedelta(seconds=42), NOW) == "42s ago"
    assert ago(NOW - timedelta(minutes=61), NOW) == "1h ago"
    assert ago(NOW - timedelta(days=3, hours=23), NOW) == "3d ago"
    assert ago(None, NOW) == "never"


def test_json_shape() -> None:
    data = sample().to_json()
    assert set(data) == {
        "generated_at",
        "state_schema",
        "state_found",
        "state_held",
        "exit_code",
        "cohorts",
        "left_behind",
        "problems",
        "notes",
    }
    assert data["left_behind"] == []
    assert data["exit_code"] == 1
    healthy, guarded, never = data["cohorts"]
    assert healthy["health"] == "ok" and healthy["members"] == 12_345_678
    assert healthy["last_run"]["added"] == 1_234_567
    assert healthy["last_run"]["seconds_ago"] == 5 * 3600
    assert healthy["last_run"]["started_at"] == "2026-11-30T07:00:00Z"
    assert guarded["health"] == "failing" and guarded["destination"] == "eu"
    assert guarded["error"].startswith("model 'messy[/x]_signups'")
    assert never["last_run"] is None and never["last_success"] is None
    assert never["health"] == "never synced"


@pytest.mark.parametrize("width", [60, 80, 100])
def test_narrow_console_stacks_and_cuts_nothing(width: int) -> None:
    text = render(sample(), width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert "…" not in text
    for whole in (
        "high_value_users_with_a_rather_long_model_name",
        "12,345,678",
        "1,234,567",
        "987,654",
        "messy[/x]_signups",
        "[bold]no[/bold]",  # the error as stored, never read as markup
        "enterprise_accounts",
    ):
        assert whole in text, whole
    assert "last run never" in text


def test_wide_console_gets_one_table_row_per_cohort() -> None:
    text = render(sample(), 300)
    assert "┃ model" in text and "last success" in text
    rows = [line for line in text.splitlines() if "enterprise_accounts" in line]
    assert len(rows) == 1 and "never" in rows[0]
    assert "error messy[/x]_signups: model 'messy[/x]_signups': guarded [bold]no[/bold]" in text

"""report: the summary a person reads (every number and name whole, at any width) and the
exit code a scheduler reads."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from dbt_moengage.report import (
    DRY_RUN,
    FAILED,
    GUARDED,
    INVALID,
    SKIPPED,
    SYNCED,
    CohortResult,
    RunReport,
    print_summary,
)


def sample(dry_run: bool = False) -> RunReport:
    report = RunReport(run_id="r", started_at="now", dry_run=dry_run)
    report.results = [
        CohortResult(
            model="high_value_users_with_a_rather_long_model_name",
            cohort_id="high_value_users_with_a_rather_long_model_name",
            cohort_name="High Value",
            status=DRY_RUN if dry_run else SYNCED,
            uids_total=12_345_678,
            added=1_234_567,
            resent=987_654,
            unchanged=10_123_457,
            requests=4_321,
            planned_add=1_234_567,
            planned_resend=987_654,
            planned_requests=4_321,
            renamed=True,
            seconds=321.5,
        ),
        CohortResult(
            model="messy[/x]_signups",
            cohort_id="messy_signups",
            cohort_name="Messy",
            mode="mirror",
            status=GUARDED,
            uids_total=5,
            planned_remove=95,
            dropped={"null": 1, "empty": 2, "whitespace": 3, "duplicate": 44},
            error="model 'messy[/x]_signups': guarded [bold]nothing sent[/bold]",
        ),
    ]
    return report


def render(report: RunReport, width: int) -> str:
    out = io.StringIO()
    print_summary(report, Console(file=out, width=width, color_system=None), None)
    return out.getvalue()


@pytest.mark.parametrize("width", [60, 80, 100, 250])
@pytest.mark.parametrize("dry_run", [False, True])
def test_no_number_or_model_name_is_ever_cut(width: int, dry_run: bool) -> None:
    report = sample(dry_run)
    text = render(report, width)
    assert "…" not in text
    # Error lines are printed whole (the terminal wraps them); the summary fits.
    summary = [line for line in text.splitlines() if not line.startswith("error ")]
    assert all(len(line) <= width for line in summary), text
    words = set(text.split())
    for r in report.results:
        assert any(r.model in word for word in words), r.model
        planned = r.planned_requests or 0  # None: not a dry run's cohort
        for number in (r.uids_total, r.requests, planned, r.resent, r.planned_resend):
            assert f"{number:,}" in words or f"{number:,}" in text
    # Outside text is printed as it is, never read as markup.
    assert "[bold]nothing sent[/bold]" in text and "messy[/x]_signups" in text
    joined = " ".join(text.split())
    assert "renamed" in joined
    assert "3 whitespace" in joined and "44 duplicate" in joined


def test_a_wide_console_gets_the_table_and_a_narrow_one_stacked_lines() -> None:
    assert "┃ model" in render(sample(), 250)
    narrow = render(sample(), 80)
    assert "┃" not in narrow
    assert "high_value_users_with_a_rather_long_model_name -> " in narrow
    assert "added 1,234,567" in narrow and "resent 987,654" in narrow
    assert "to resend 987,654" in render(sample(dry_run=True), 80)


@pytest.mark.parametrize(
    ("status", "unselected", "code"),
    [
        (SYNCED, False, 0),
        (DRY_RUN, False, 0),
        (SKIPPED, True, 0),
        (SKIPPED, False, 1),
        (FAILED, False, 1),
        (INVALID, False, 1),
        (GUARDED, False, 1),
    ],
)
def test_exit_code(status: str, unselected: bool, code: int) -> None:
    report = RunReport(run_id="r", started_at="now", dry_run=False)
    report.results = [
        CohortResult("a", "a", "A", status=SYNCED),
        CohortResult("b", "b", "B", status=status, unselected=unselected),
    ]
    assert report.exit_code == code
    assert report.to_json()["exit_code"] == code

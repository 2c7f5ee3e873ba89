"""report.html: one self-contained page (plotly.js inlined, nothing fetched), one chart
per cohort with runs, and every text from the state escaped, in the HTML and in the charts.
Chromium renders it in tests/e2e/test_status_report.py."""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from dbt_moengage.cli import main
from dbt_moengage.cohorts import CohortSpec
from dbt_moengage.report.html import render_report, write_report
from dbt_moengage.state.health import CohortStatus, StatusReport
from dbt_moengage.state.history import RunRecord

NOW = datetime(2026, 11, 30, 12, 0)
HOSTILE_MODEL = "evil<script>alert(1)</script>"
HOSTILE_NAME = '<img src=x onerror="alert(2)">'
HOSTILE_ERROR = "HTTP 413: <b>too big</b> <a href='javascript:alert(3)'>x</a> </script><script>"


def run(n: int, status: str = "synced", error: str | None = None) -> RunRecord:
    started = NOW - timedelta(days=10 - n)
    return RunRecord(
        run_id=f"run-{n}",
        cohort_id="c",
        model="m",
        mode="add",
        full_refresh=False,
        started_at=started,
        finished_at=started + timedelta(minutes=1),
        status=status,
        added=10 * n,
        removed=0,
        resent=n,
        requests=1,
        retries=0,
        error=error,
        members_after=None if n < 3 else 10 * n * (n + 1) // 2,
    )


def cohort(model: str, name: str, runs: list[RunRecord]) -> CohortStatus:
    spec = CohortSpec(
        model=model,
        unique_id=f"model.unit.{model}",
        relation_name="main.x",
        cohort_name=name,
        cohort_id=model.lower(),
        description="",
        uid_column="uid",
    )
    last = runs[-1] if runs else None
    return CohortStatus(spec, members=150 if runs else 0, last_run=last, runs=runs)


def sample() -> StatusReport:
    runs = [run(1), run(2), run(3), run(4, "failed", HOSTILE_ERROR), run(5)]
    return StatusReport(
        NOW,
        "main",
        True,
        [
            cohort(HOSTILE_MODEL, HOSTILE_NAME, runs),
            cohort("steady", "Steady", [run(1), run(2)]),
            cohort("fresh", "Fresh", []),
        ],
        notes=["a note with <i>markup</i>"],
    )


def test_one_chart_per_cohort_with_runs() -> None:
    page = render_report(sample())
    assert len(re.findall(r'<div id="chart-\d+" class="plotly-graph-div"', page)) == 2
    assert "Never synced" in page
    assert "Failures and guards" in page


def test_the_page_needs_no_network() -> None:
    page = render_report(sample())
    assert "Plotly.newPlot" in page
    # plotly.js is inlined: no script, stylesheet or image is loaded from anywhere.
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=", page)
    assert not re.search(r"<img[^>]+src=", page)
    assert "cdn.plot.ly/plotly" not in page.split("<script", 2)[1][:500]


def test_text_from_the_state_is_escaped_everywhere() -> None:
    page = render_report(sample())
    for raw in (HOSTILE_MODEL, HOSTILE_NAME, HOSTILE_ERROR, "<i>markup</i>", "alert(1)</script>"):
        assert raw not in page, raw
    # In the HTML: entities.
    assert "evil&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in page
    assert "&lt;b&gt;too big&lt;/b&gt;" in page
    # In the charts' data: escaped for plotly's labels (&lt;), inside JSON that plotly
    # writes with <, > and / as \\u escapes, so no tag can close the script.
    assert "&lt;b&gt;too big&lt;\\u002fb&gt;" in page
    # Only the page's own scripts: plotly.js, and one per chart.
    assert len(re.findall(r"<script\b", page)) == len(re.findall(r"</script\b", page)) == 3


def test_write_report_creates_the_folder(tmp_path: Path) -> None:
    path = write_report(sample(), tmp_path / "target" / "moengage_report.html")
    assert path.read_text(encoding="utf-8").startswith("<!doctype html>")


def test_without_the_extra_the_command_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if plotly were not installed: importing it fails.
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.delitem(sys.modules, "dbt_moengage.report.html")
    result = CliRunner().invoke(main, ["report"])
    assert result.exit_code == 2
    assert 'pip install "dbt-moengage[report]"' in result.output

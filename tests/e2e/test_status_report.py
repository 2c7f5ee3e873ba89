"""`status` and `report` end to end: integration_tests synced through the emulator a few
times (a failure, a recovery, audiences growing and shrinking, a failure again, a recovery),
then the status read back from the state against the emulator's members, and the report
rendered in a real headless Chromium.

The report's screenshot, page and DOM, and the status at 80 columns after the second
failure, are kept in tests/artifacts/ (gitignored) for a look; the test prints where.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dbt_moengage.state.schema import STATE_TABLES
from dbt_moengage.testing.emulator import Emulator, Faults

from ..conftest import API_KEY, COHORTS, ROOT, BuiltProject, run_cli, sync_args, sync_env
from .test_crash import crash_env, start_sync, wait_for_requests

ARTIFACTS = ROOT / "tests" / "artifacts"
MIRROR_MODEL = "recently_active"
MIRROR_COHORT = "recently_active_30d"
# Bodies above this are refused by the emulator (413): the larger cohorts fail.
SMALL_SERVER_LIMIT = 10_000
CHROMIUM_HINT = (
    "chromium is not installed, and the report must be checked in a real browser: "
    "apt-get update && apt-get install -y chromium (Debian's package; .ci/run installs it)"
)


def args(command: str, project: BuiltProject, *extra: str) -> list[str]:
    """`status` or `report` arguments pointing at integration_tests."""
    return [command, *sync_args(project, *extra)[1:]]


def make_mirror(project: BuiltProject, model: str) -> None:
    """Sync the model in mirror mode, as its config would say."""
    path = project.target_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    node = manifest["nodes"][f"model.moengage_integration_tests.{model}"]
    node["config"]["meta"]["moengage"]["mode"] = "mirror"
    path.write_text(json.dumps(manifest))


def change_audiences(project: BuiltProject, new_high: int, drop_recent: int, tag: str) -> None:
    """New high-value users join; a few recently active users leave."""
    with duckdb.connect(str(project.database)) as conn:
        conn.executemany(
            "insert into main.high_value_users (uid) values (?)",
            [[f"late-joiner-{tag}-{i:04d}"] for i in range(new_high)],
        )
        conn.execute(
            "delete from main.recently_active where user_id in "
            "(select user_id from main.recently_active order by user_id limit ?)",
            [drop_recent],
        )


def sync(project: BuiltProject, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(sync_args(project), env)


def status_json(project: BuiltProject, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    done = run_cli(args("status", project, "--output", "json"), env)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


def status_at_80(project: BuiltProject, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`status` as a person at an 80-column terminal sees it."""
    return subprocess.run(
        [sys.executable, "-m", "dbt_moengage", *args("status", project)],
        cwd=ROOT,
        env={**env, "COLUMNS": "80"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def by_cohort(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["cohort_id"]: c for c in data["cohorts"]}


def assert_members_match(data: dict[str, Any], emulator: Emulator) -> None:
    for cohort_id, row in by_cohort(data).items():
        assert row["members"] == len(emulator.members(cohort_id)), cohort_id
        # The count each run keeps (from its plan and its checkpoints, or counted after a
        # failure) agrees with the state counted now.
        assert row["last_run"]["members_after"] == row["members"], cohort_id


def test_status_before_any_sync_reads_nothing_and_creates_nothing(
    project: BuiltProject, emulator: Emulator
) -> None:
    env = sync_env(project, emulator)
    code, data = status_json(project, env)
    assert code == 0
    assert data["state_found"] is False
    assert {c["health"] for c in data["cohorts"]} == {"never synced"}
    assert set(by_cohort(data)) == set(COHORTS)
    assert any("no sync state" in note for note in data["notes"])
    with duckdb.connect(str(project.database), read_only=True) as conn:
        rows = conn.execute("select table_name from information_schema.tables").fetchall()
    tables = {str(name) for (name,) in rows}
    assert not tables & set(STATE_TABLES)
    text = status_at_80(project, env)
    assert text.returncode == 0, text.stdout + text.stderr
    assert "never synced" in text.stdout and "no sync state" in text.stdout


def test_status_and_report_follow_failures_and_recoveries(
    project: BuiltProject, emulator: Emulator
) -> None:
    make_mirror(project, MIRROR_MODEL)
    env = sync_env(project, emulator)
    server_limit = emulator.config.max_body_bytes

    # 1. The larger cohorts fail: the server refuses their bodies (413).
    emulator.config.max_body_bytes = SMALL_SERVER_LIMIT
    first = sync(project, env)
    assert first.returncode == 1, first.stdout + first.stderr
    code, data = status_json(project, env)
    assert code == 1
    failed = {cid for cid, row in by_cohort(data).items() if row["health"] == "failing"}
    assert failed and failed != set(COHORTS), data
    for cid in failed:
        assert "413" in by_cohort(data)[cid]["error"]
    assert_members_match(data, emulator)

    # 2. Recovery, with new members; 3. audiences grow and shrink (mirror removes).
    emulator.config.max_body_bytes = server_limit
    change_audiences(project, new_high=40, drop_recent=0, tag="a")
    assert sync(project, env).returncode == 0
    change_audiences(project, new_high=25, drop_recent=6, tag="b")
    assert sync(project, env).returncode == 0
    code, data = status_json(project, env)
    assert code == 0
    assert {row["health"] for row in data["cohorts"]} == {"ok"}
    assert by_cohort(data)[MIRROR_COHORT]["last_run"]["removed"] == 6
    assert by_cohort(data)["high_value_users"]["last_run"]["added"] == 25
    assert_members_match(data, emulator)

    # 4. Every member is due for a re-send, and the larger cohorts fail again.
    resend = sync_env(project, emulator, MOENGAGE_RESEND_AFTER="0")
    emulator.config.max_body_bytes = SMALL_SERVER_LIMIT
    assert sync(project, resend).returncode == 1
    code, data = status_json(project, resend)
    assert code == 1
    assert_members_match(data, emulator)
    failing = [row for row in data["cohorts"] if row["health"] == "failing"]
    assert failing
    for row in failing:
        assert row["last_run"]["status"] == "failed"
        assert "413" in row["error"]
        assert row["last_success"] is not None
        assert row["last_success"]["seconds_ago"] >= 0
    assert_json_shape(data)
    text = status_at_80(project, resend)
    assert text.returncode == 1
    lines = text.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    assert "413" in text.stdout and "…" not in text.stdout
    for cohort_id, row in by_cohort(data).items():
        assert cohort_id in text.stdout
        assert f"members {row['members']:,}" in text.stdout
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "status-80-columns.txt").write_text(text.stdout)

    # 5. Recovery: everything re-sent.
    emulator.config.max_body_bytes = server_limit
    assert sync(project, resend).returncode == 0
    code, data = status_json(project, resend)
    assert code == 0
    assert_members_match(data, emulator)
    assert all(row["last_run"]["resent"] == row["members"] for row in data["cohorts"])

    # The report, rendered in a real browser.
    done = run_cli(args("report", project), resend)
    assert done.returncode == 0, done.stdout + done.stderr
    page = project.target_dir / "moengage_report.html"
    assert f"report written to {page}" in done.stdout
    html = page.read_text(encoding="utf-8")
    assert API_KEY not in html
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", html)
    check_rendered(page, expected_charts=len(COHORTS), runs=5)


def assert_json_shape(data: dict[str, Any]) -> None:
    assert set(data) >= {"generated_at", "state_schema", "state_found", "exit_code", "cohorts"}
    assert data["state_found"] is True and data["exit_code"] == 1
    for row in data["cohorts"]:
        assert set(row) >= {
            "model",
            "cohort_id",
            "cohort_name",
            "destination",
            "mode",
            "health",
            "members",
            "last_run",
            "last_success",
            "error",
        }
        run = row["last_run"]
        assert set(run) >= {"status", "started_at", "added", "removed", "resent", "error"}
        assert run["started_at"].endswith("Z")
        assert isinstance(run["members_after"], int)
    assert by_cohort(data)[MIRROR_COHORT]["mode"] == "mirror"


def chromium(*extra: str, page: Path, profile: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail(CHROMIUM_HINT, pytrace=False)
    return subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            # The page must need no network: every host name fails to resolve.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=10000",
            *extra,
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


def check_rendered(page: Path, expected_charts: int, runs: int) -> None:
    """Each cohort's chart drew its members line and its bars; keep a screenshot."""
    profile = page.parent / "chromium-profile"
    dom = chromium("--dump-dom", page=page, profile=profile)
    assert dom.returncode == 0, dom.stderr[-2000:]
    charts = re.split(r'<div id="chart-\d+"', dom.stdout)[1:]
    assert len(charts) == expected_charts, dom.stdout[-2000:]
    for chart in charts:
        assert 'class="main-svg"' in chart
        # The members line (plotly draws collinear points as one segment) and a marker
        # for each run.
        lines = re.findall(r'class="js-line" d="(M[^"]+)"', chart)
        assert any("L" in d for d in lines), lines
        markers = re.findall(r'<path class="point" transform="translate\(', chart)
        assert len(markers) >= runs, chart[:2000]
        # Bars: at least one drawn with an area (adds, removes or re-sends).
        bars = re.findall(r'<g class="point"><path d="(M[^"]+)"', chart)
        assert any("Z" in d for d in bars), chart[:2000]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(page, ARTIFACTS / "moengage_report.html")
    (ARTIFACTS / "moengage_report.dom.html").write_text(dom.stdout)
    shot = ARTIFACTS / "moengage_report.png"
    done = chromium(f"--screenshot={shot}", "--window-size=1200,1600", page=page, profile=profile)
    assert done.returncode == 0 and shot.stat().st_size > 10_000, done.stderr[-2000:]
    print(f"report screenshot kept in {shot}")


# -- status tells the truth (issue 21 §2) ---------------------------------------------------


def test_status_during_a_duckdb_sync_says_a_sync_is_running(
    project: BuiltProject, emulator: Emulator
) -> None:
    env = sync_env(project, emulator)
    assert sync(project, env).returncode == 0
    # Every member due again, answered slowly: the sync holds the DuckDB file a while.
    slow = {**crash_env(project, emulator), "MOENGAGE_RESEND_AFTER": "0"}
    emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=0.3))
    proc = start_sync(project, slow)
    try:
        requests = len(emulator.requests())
        wait_for_requests(emulator, requests + 2, proc)
        started = time.monotonic()
        done = run_cli(args("status", project, "--output", "json"), env)
        took = time.monotonic() - started
        text = run_cli(args("status", project), env)
        assert proc.poll() is None, "the sync ended before status ran"
    finally:
        emulator.set_faults(Faults())
        output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output
    # Said at once, not waited out, and a running sync is no failure.
    assert done.returncode == 0, done.stdout + done.stderr
    assert took < 15, took
    data = json.loads(done.stdout)
    assert data["state_held"] is True and data["state_found"] is None
    assert {c["health"] for c in data["cohorts"]} == {"sync running"}
    assert all(c["members"] is None and c["last_run"] is None for c in data["cohorts"])
    (note,) = data["notes"]
    assert "held for writing by another process: a sync is running" in note
    assert text.returncode == 0 and "sync running" in text.stdout, text.stdout + text.stderr
    assert "held by another process" not in text.stdout + text.stderr

    # Once it let go, the state reads as usual.
    code, after = status_json(project, env)
    assert code == 0 and after["state_held"] is False
    assert {c["health"] for c in after["cohorts"]} == {"ok"}
    assert_members_match(after, emulator)


def test_status_names_the_setting_when_the_state_is_for_another_endpoint(
    project: BuiltProject, emulator: Emulator
) -> None:
    env = sync_env(project, emulator)
    assert sync(project, env).returncode == 0
    production = {k: v for k, v in env.items() if k != "MOENGAGE_BASE_URL"}
    production["MOENGAGE_DATA_CENTER"] = "01"
    code, data = status_json(project, production)
    assert code == 0
    assert {c["health"] for c in data["cohorts"]} == {"never synced"}
    (note,) = data["notes"]
    assert "no sync state for endpoint https://api-01.moengage.com and workspace" in note
    assert emulator.url.rstrip("/") in note and f"({len(COHORTS)} cohorts)" in note
    assert "check MOENGAGE_DATA_CENTER (or MOENGAGE_BASE_URL)" in note
    # Another workspace on the same endpoint names the workspace setting instead.
    _, other = status_json(project, {**env, "MOENGAGE_WORKSPACE_ID": "WS_SOMEONE_ELSE"})
    (note,) = other["notes"]
    assert "check MOENGAGE_WORKSPACE_ID" in note and "DATA_CENTER" not in note


def test_status_without_the_runs_table_reads_members_and_names_what_is_missing(
    project: BuiltProject, emulator: Emulator
) -> None:
    env = sync_env(project, emulator)
    assert sync(project, env).returncode == 0
    with duckdb.connect(str(project.database)) as conn:
        conn.execute("drop table main.moengage_sync_runs")
    code, data = status_json(project, env)
    assert code == 0
    assert data["state_found"] is True
    for cohort_id, row in by_cohort(data).items():
        assert row["health"] == "no history", row
        assert row["members"] == len(emulator.members(cohort_id)) > 0, cohort_id
    (note,) = data["notes"]
    assert "no moengage_sync_runs table" in note
    assert "members are read from moengage_cohort_members" in note
    text = status_at_80(project, env)
    assert text.returncode == 0 and "no history" in text.stdout
    assert "never synced" not in text.stdout

    # The next sync creates the table again.
    assert sync(project, env).returncode == 0
    code, data = status_json(project, env)
    assert code == 0 and {c["health"] for c in data["cohorts"]} == {"ok"}
    assert data["notes"] == []

"""End to end over loopback: real dbt build on DuckDB, the runner as a subprocess, the emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbt_moengage.testing.emulator import Emulator, Faults

from ..conftest import API_KEY, COHORTS, BuiltProject, results, run_cli, sync_args, sync_env


def assert_exact(project: BuiltProject, emulator: Emulator) -> None:
    """Every cohort in the emulator holds exactly the model's distinct uids."""
    for cohort_id in COHORTS:
        expected = project.expected_members(cohort_id)
        assert expected, cohort_id
        assert emulator.members(cohort_id) == expected, cohort_id


def test_first_sync_is_exact(project: BuiltProject, emulator: Emulator) -> None:
    done = run_cli(sync_args(project), sync_env(project, emulator))
    assert done.returncode == 0, done.stdout + done.stderr
    assert_exact(project, emulator)

    report = results(project)
    assert set(report) == set(COHORTS)
    for cohort_id, row in report.items():
        assert row["status"] == "synced"
        assert row["uids_sent"] == len(project.expected_members(cohort_id))
        assert row["requests"] == 1  # every demo cohort fits one 128 KB request
    messy = report["messy_signups"]["dropped"]
    assert isinstance(messy, dict)
    assert messy["null"] > 0 and messy["empty"] > 0 and messy["duplicate"] > 0
    high = emulator.cohorts()["high_value_users"]
    assert high["cohort_name"] == ".High Value Users"
    assert "MoEngage cohort sync" in done.stdout
    assert "enterprise_accounts" in done.stdout


def test_many_requests_fill_the_body_limit(project: BuiltProject, emulator: Emulator) -> None:
    env = sync_env(project, emulator, MOENGAGE_MAX_BODY_BYTES="2000")
    done = run_cli(sync_args(project, "--select", "high_value_users recently_active"), env)
    assert done.returncode == 0, done.stdout + done.stderr
    for cohort_id in ("high_value_users", "recently_active_30d"):
        assert emulator.members(cohort_id) == project.expected_members(cohort_id)
    bodies = [r for r in emulator.requests() if r.status == 200]
    assert len(bodies) > 20
    assert all(r.body_bytes <= 2000 for r in bodies)
    # All but each cohort's last body are close to full (a member is < 60 bytes).
    near_full = [r for r in bodies if r.body_bytes > 2000 - 60]
    assert len(near_full) >= len(bodies) - 2
    assert set(results(project)) == {"high_value_users", "recently_active_30d"}


@pytest.mark.parametrize(
    "faults",
    [
        Faults(error_before_rate=0.3, seed=1),
        Faults(error_after_rate=0.3, seed=2),
        Faults(drop_before_rate=0.2, drop_after_rate=0.2, seed=3),
        Faults(storm_429=6, retry_after=True),
        Faults(storm_429=6, retry_after=False),
        Faults(error_before_rate=0.1, error_after_rate=0.1, drop_after_rate=0.1, seed=4),
    ],
    ids=["5xx-before", "5xx-after", "dropped", "429-retry-after", "429-bare", "mixed"],
)
def test_faults_still_exact(project: BuiltProject, emulator: Emulator, faults: Faults) -> None:
    emulator.set_faults(faults)
    env = sync_env(project, emulator, MOENGAGE_MAX_BODY_BYTES="3000", MOENGAGE_MAX_ATTEMPTS="12")
    done = run_cli(sync_args(project), env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_exact(project, emulator)
    retries = sum(int(str(row["retries"])) for row in results(project).values())
    assert retries > 0


def test_slow_answers_time_out_and_retry(project: BuiltProject, emulator: Emulator) -> None:
    emulator.set_faults(Faults(slow_rate=0.3, slow_seconds=1.5, seed=5))
    env = sync_env(
        project, emulator, MOENGAGE_MAX_BODY_BYTES="4000", MOENGAGE_TIMEOUT_SECONDS="0.5"
    )
    done = run_cli(sync_args(project, "--select", "high_value_users"), env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert emulator.members("high_value_users") == project.expected_members("high_value_users")
    assert int(str(results(project)["high_value_users"]["retries"])) > 0


def test_wrong_key_stops_after_one_request(project: BuiltProject, emulator: Emulator) -> None:
    wrong = "sk-wrong-key-0123456789abcdef"
    env = sync_env(project, emulator, MOENGAGE_API_KEY=wrong, MOENGAGE_MAX_BODY_BYTES="3000")
    done = run_cli(sync_args(project), env)
    assert done.returncode == 1
    assert len(emulator.requests()) <= 2
    assert "MOENGAGE_API_KEY" in done.stdout
    report_text = (project.target_dir / "moengage_sync_results.json").read_text()
    for text in (done.stdout, done.stderr, report_text):
        assert wrong not in text
        assert API_KEY not in text
    statuses = {row["status"] for row in results(project).values()}
    assert statuses == {"failed", "skipped"}


def test_cohort_rejected_by_api_fails_alone(project: BuiltProject, emulator: Emulator) -> None:
    # A body over the server's limit is a 413: that cohort fails, the others sync.
    emulator.config.max_body_bytes = 10_000
    env = sync_env(project, emulator)
    done = run_cli(sync_args(project), env)
    assert done.returncode == 1
    report = results(project)
    failed = {cid for cid, row in report.items() if row["status"] == "failed"}
    assert failed, report
    assert any("413" in str(report[cid]["error"]) for cid in failed)
    for cid in set(COHORTS) - failed:
        assert emulator.members(cid) == project.expected_members(cid)


def edit_manifest(project: BuiltProject, model: str, **meta: object) -> None:
    """Change a model's meta.moengage in the copied manifest, as a user's config would."""
    path = project.target_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    node = manifest["nodes"][f"model.moengage_integration_tests.{model}"]
    node["config"]["meta"]["moengage"].update(meta)
    path.write_text(json.dumps(manifest))


def test_invalid_cohort_is_reported_and_others_sync(
    project: BuiltProject, emulator: Emulator
) -> None:
    edit_manifest(project, "high_value_users", cohort_name="High|Value")
    edit_manifest(project, "recently_active", uid_column="no_such_column")
    done = run_cli(sync_args(project), sync_env(project, emulator))
    assert done.returncode == 1
    out = done.stdout
    assert "high_value_users" in out and "cohort_name" in out and "High|Value" in out
    assert "recently_active" in out and "uid_column" in out and "no_such_column" in out
    report = results(project)
    assert report["high_value_users"]["status"] == "invalid"
    assert report["recently_active_30d"]["status"] == "invalid"
    assert emulator.members("high_value_users") == set()
    for cid in ("enterprise_accounts", "messy_signups"):
        assert emulator.members(cid) == project.expected_members(cid)


def test_dry_run_sends_nothing(project: BuiltProject, emulator: Emulator) -> None:
    env = sync_env(project, emulator)
    del env["MOENGAGE_API_KEY"]
    done = run_cli(sync_args(project, "--dry-run"), env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert emulator.requests() == []
    report = results(project)
    for cohort_id, row in report.items():
        assert row["status"] == "dry_run"
        assert row["uids_total"] == len(project.expected_members(cohort_id))
        assert row["planned_requests"] == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"MOENGAGE_API_KEY": ""}, "MOENGAGE_API_KEY"),
        ({"MOENGAGE_BASE_URL": "", "MOENGAGE_DATA_CENTER": "1"}, "MOENGAGE_DATA_CENTER"),
        ({"MOENGAGE_BASE_URL": "http://moengage.example.com"}, "plain http://"),
    ],
)
def test_configuration_errors_exit_2(
    project: BuiltProject, emulator: Emulator, change: dict[str, str], message: str
) -> None:
    env = {**sync_env(project, emulator), **change}
    done = run_cli(sync_args(project), env)
    assert done.returncode == 2
    assert message in done.stderr
    assert API_KEY not in done.stdout + done.stderr
    assert emulator.requests() == []


def test_missing_manifest_exits_2(project: BuiltProject, emulator: Emulator) -> None:
    (project.target_dir / "manifest.json").unlink()
    done = run_cli(sync_args(project), sync_env(project, emulator))
    assert done.returncode == 2
    assert "dbt build" in done.stderr


def test_unknown_selection_exits_2(project: BuiltProject, emulator: Emulator) -> None:
    done = run_cli(sync_args(project, "--select", "no_such_model"), sync_env(project, emulator))
    assert done.returncode == 2
    assert "no_such_model" in done.stderr


def test_results_file_fields(project: BuiltProject, emulator: Emulator) -> None:
    done = run_cli(sync_args(project), sync_env(project, emulator))
    assert done.returncode == 0
    data = json.loads(Path(project.target_dir, "moengage_sync_results.json").read_text())
    assert data["exit_code"] == 0
    row = data["cohorts"][0]
    for key in (
        "model",
        "cohort_id",
        "cohort_name",
        "status",
        "uids_sent",
        "dropped",
        "requests",
        "retries",
        "seconds",
        "error",
    ):
        assert key in row

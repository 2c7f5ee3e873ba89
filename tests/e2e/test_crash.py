"""Crash safety and concurrent runners: SIGKILL mid-sync, then re-run; two runners at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import duckdb
import pytest

from dbt_moengage.testing.emulator import Emulator, Faults

from ..conftest import COHORTS, ROOT, BuiltProject, run_cli, sync_args, sync_env

IN_FLIGHT = 4


def crash_env(project: BuiltProject, emulator: Emulator) -> dict[str, str]:
    """Small bodies so the demo cohorts take a few hundred requests."""
    return sync_env(
        project,
        emulator,
        MOENGAGE_MAX_BODY_BYTES="700",
        MOENGAGE_MAX_IN_FLIGHT=str(IN_FLIGHT),
        MOENGAGE_LOCK_WAIT_SECONDS="120",
    )


def start_sync(project: BuiltProject, env: dict[str, str]) -> subprocess.Popen[str]:
    """The runner as a separate process, so it can be killed."""
    return subprocess.Popen(
        [sys.executable, "-m", "dbt_moengage", *sync_args(project)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_requests(emulator: Emulator, count: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while len(emulator.requests()) < count:
        assert proc.poll() is None, "the runner finished before the kill point"
        assert time.monotonic() < deadline
        time.sleep(0.002)


def planned_requests(project: BuiltProject, env: dict[str, str]) -> int:
    """Requests a whole sync takes, as a dry run counts them."""
    done = run_cli(sync_args(project, "--dry-run"), env)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((project.target_dir / "moengage_sync_results.json").read_text())
    return sum(int(c["planned_requests"]) for c in report["cohorts"])


def resent_uids(emulator: Emulator) -> int:
    """Uid deliveries beyond the first, over every cohort."""
    return sum(emulator.delivered(c) - len(emulator.members(c)) for c in COHORTS)


@pytest.mark.parametrize("kill_after", [1, 15, 60, 120, 200])
def test_sigkill_then_rerun_is_exact_with_bounded_resends(
    project: BuiltProject, emulator: Emulator, kill_after: int
) -> None:
    emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=0.01))
    env = crash_env(project, emulator)
    full_sync = planned_requests(project, env)
    proc = start_sync(project, env)
    wait_for_requests(emulator, kill_after, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = len(emulator.requests())
    assert before >= kill_after
    biggest = max(r.members for r in emulator.requests())

    emulator.set_faults(Faults())
    done = run_cli(sync_args(project), env)
    assert done.returncode == 0, done.stdout + done.stderr
    for cohort_id in COHORTS:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id), cohort_id
    # At least once: only the requests in flight at the kill may be delivered twice.
    assert resent_uids(emulator) <= IN_FLIGHT * biggest
    # The re-run resumed: it sent what had not been accepted, repacked (one partial body
    # per cohort at most), not the whole audience again.
    assert len(emulator.requests()) - before <= full_sync - before + IN_FLIGHT + len(COHORTS)


def test_two_runners_started_together_deliver_each_uid_once(
    project: BuiltProject, emulator: Emulator
) -> None:
    env = crash_env(project, emulator)
    first = start_sync(project, env)
    second = start_sync(project, env)
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == 0, outputs[0]
    assert second.returncode == 0, outputs[1]
    for cohort_id in COHORTS:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id)
        assert emulator.delivered(cohort_id) == len(emulator.members(cohort_id)), cohort_id


def status_json(project: BuiltProject, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    done = run_cli(
        [
            "status",
            "--project-dir",
            str(project.project_dir),
            "--profiles-dir",
            str(project.project_dir),
            "--output",
            "json",
        ],
        env,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


def test_a_killed_sync_shows_as_stopped_until_the_next_sync(
    project: BuiltProject, emulator: Emulator
) -> None:
    emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=0.01))
    env = crash_env(project, emulator)
    proc = start_sync(project, env)
    wait_for_requests(emulator, 15, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    # Its run row still says 'running', but nothing holds the database: it was killed.
    code, data = status_json(project, env)
    assert code == 1
    health = {row["cohort_id"]: row["health"] for row in data["cohorts"]}
    stopped = [row for row in data["cohorts"] if row["health"] == "stopped"]
    assert stopped and "running" not in health.values(), health
    for row in stopped:
        assert row["last_run"]["status"] == "running"
        assert "stopped without finishing" in row["error"]

    emulator.set_faults(Faults())
    assert run_cli(sync_args(project), env).returncode == 0
    code, data = status_json(project, env)
    assert code == 0
    assert {row["health"] for row in data["cohorts"]} == {"ok"}


def test_sigkill_mid_resend_then_rerun_resends_the_rest_and_compacts(
    project: BuiltProject, emulator: Emulator
) -> None:
    """A run killed while re-sending leaves each uid it recorded a newer row beside the
    older one: the next run re-sends only the members it did not record, and compacts
    what it left, one row per member again."""
    env = {**crash_env(project, emulator), "MOENGAGE_RESEND_AFTER": "1d"}
    first = run_cli(sync_args(project), env)
    assert first.returncode == 0, first.stdout + first.stderr
    members = sum(len(project.expected_members(c)) for c in COHORTS)
    with duckdb.connect(str(project.database)) as conn:
        conn.execute(
            "update main.moengage_cohort_members set synced_at = synced_at - interval 2 day"
        )
    emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=0.01))
    before = len(emulator.requests())
    proc = start_sync(project, env)
    wait_for_requests(emulator, before + 40, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with duckdb.connect(str(project.database)) as conn:
        (killed,) = conn.execute(
            "select count(*) from main.moengage_cohort_members "
            "where synced_at > (select min(synced_at) from main.moengage_cohort_members) "
            "+ interval 1 day"
        ).fetchone() or (0,)
        (rows,) = conn.execute("select count(*) from main.moengage_cohort_members").fetchone() or (
            0,
        )
    assert 0 < killed < members and rows > members

    emulator.set_faults(Faults())
    done = run_cli(sync_args(project), env)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((project.target_dir / "moengage_sync_results.json").read_text())
    # Due: every member the killed run did not record (those in flight at the kill too).
    assert sum(int(c["resent"]) for c in report["cohorts"]) == members - killed
    for cohort_id in COHORTS:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id), cohort_id
    with duckdb.connect(str(project.database)) as conn:
        counts = conn.execute(
            "select count(*), count(distinct (cohort_id, uid)) from main.moengage_cohort_members"
        ).fetchall()
    assert counts == [(members, members)]

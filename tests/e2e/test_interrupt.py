"""Ctrl-C and SIGTERM mid-sync: the requests in flight finish and are recorded, run rows say
`interrupted`, the report is written, the exit code is 128 + the signal, all within
seconds; a second signal exits at once; the next run resumes exactly."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any

import duckdb
import pytest

from dbt_moengage.testing.emulator import Emulator, Faults

from ..conftest import COHORTS, ROOT, BuiltProject, run_cli, sync_args
from .test_crash import IN_FLIGHT, crash_env, resent_uids, start_sync, wait_for_requests


def state_members(project: BuiltProject, cohort_id: str) -> set[str]:
    with duckdb.connect(str(project.database), read_only=True) as conn:
        rows = conn.execute(
            "select uid from main.moengage_cohort_members where cohort_id = ?", [cohort_id]
        ).fetchall()
    return {uid for (uid,) in rows}


def run_statuses(project: BuiltProject) -> list[str]:
    with duckdb.connect(str(project.database), read_only=True) as conn:
        rows = conn.execute("select status from main.moengage_sync_runs").fetchall()
    return [status for (status,) in rows]


def report(project: BuiltProject) -> dict[str, Any]:
    return dict(json.loads((project.target_dir / "moengage_sync_results.json").read_text()))


def read_until(proc: subprocess.Popen[str], text: str, seconds: float = 30) -> str:
    """The process's output up to `text`, read from the pipe's fd (communicate() reads on)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + seconds
    while text.encode() not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {text!r} within {seconds} s: {seen.decode(errors='replace')}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"the runner exited before {text!r}: {seen.decode(errors='replace')}"
            seen += chunk
    return seen.decode(errors="replace")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_cleanly_and_the_next_run_resumes_exactly(
    project: BuiltProject, emulator: Emulator, signum: int
) -> None:
    # Slow answers: the run is still sending when the signal comes.
    emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=0.2))
    env = {**crash_env(project, emulator), "MOENGAGE_REQUEST_DEADLINE_SECONDS": "5"}
    proc = start_sync(project, env)
    wait_for_requests(emulator, 30, proc)
    proc.send_signal(signum)
    signalled = time.monotonic()
    output, _ = proc.communicate(timeout=60)
    stopped_in = time.monotonic() - signalled
    assert proc.returncode == 128 + signum, output
    assert stopped_in < 20, stopped_in  # seconds: the requests in flight, not the whole run
    assert "finishing the requests in flight" in output

    written = report(project)
    assert written["exit_code"] == 128 + signum and written["interrupted_by"] == signum
    statuses = {c["cohort_id"]: c["status"] for c in written["cohorts"]}
    assert "interrupted" in statuses.values()
    assert set(statuses.values()) <= {"synced", "interrupted"}
    # No run row is left 'running'; the one that was sending says it was interrupted.
    rows = run_statuses(project)
    assert "running" not in rows and "interrupted" in rows
    # Every uid the state holds, MoEngage accepted: what finished in flight was recorded.
    for cohort_id in COHORTS:
        assert state_members(project, cohort_id) <= emulator.members(cohort_id)
    assert "interrupted" in output

    emulator.set_faults(Faults())
    before = resent_uids(emulator)
    done = run_cli(sync_args(project), env)
    assert done.returncode == 0, done.stdout + done.stderr
    for cohort_id in COHORTS:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id), cohort_id
    # A clean stop records everything accepted: the re-run sends nothing twice.
    assert resent_uids(emulator) == before == 0


def test_a_second_signal_exits_at_once_and_the_state_stays_sound(
    project: BuiltProject, emulator: Emulator
) -> None:
    # Answers so slow that the first signal's clean stop would take a while.
    emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=3.0))
    env = {**crash_env(project, emulator), "MOENGAGE_REQUEST_DEADLINE_SECONDS": "30"}
    proc = start_sync(project, env)
    wait_for_requests(emulator, 2, proc)
    proc.send_signal(signal.SIGINT)
    # Sent before the first is handled, two signals would count as one.
    first = read_until(proc, "finishing the requests in flight")
    proc.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    output = first + proc.communicate(timeout=60)[0]
    assert proc.returncode == 128 + signal.SIGINT, output
    assert time.monotonic() - signalled < 2.5  # before the requests in flight could answer
    assert "exiting now" in output

    emulator.set_faults(Faults())
    biggest = max(r.members for r in emulator.requests())
    done = run_cli(sync_args(project), env)
    assert done.returncode == 0, done.stdout + done.stderr
    for cohort_id in COHORTS:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id), cohort_id
    # As after a crash: at most the requests in flight were delivered twice.
    assert resent_uids(emulator) <= IN_FLIGHT * biggest


def test_json_events_end_with_every_cohort_and_a_summary(
    project: BuiltProject, emulator: Emulator
) -> None:
    emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=0.2))
    env = crash_env(project, emulator)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbt_moengage", *sync_args(project, "--log-format", "json")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_requests(emulator, 30, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    events = [json.loads(line) for line in out.splitlines()]
    finished = [e for e in events if e["event"] == "cohort_finished"]
    assert sorted(e["cohort_id"] for e in finished) == sorted(COHORTS)
    assert events[-1]["event"] == "summary"
    assert events[-1]["exit_code"] == 143 and events[-1]["interrupted_by"] == signal.SIGTERM
    assert events[-1]["results_path"].endswith("moengage_sync_results.json")

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
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dbt_moengage.testing.emulator import Emulator, Faults

from ..conftest import COHORTS, ROOT, BuiltProject, run_cli, sync_args
from .test_crash import IN_FLIGHT, crash_env, resent_uids, start_sync, wait_for_requests
from .test_workflow import build_args, build_env, project_copy  # noqa: F401


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


def run_requests(project: BuiltProject) -> dict[str, int]:
    """cohort_id -> the requests its run row records (one run here)."""
    with duckdb.connect(str(project.database), read_only=True) as conn:
        rows = conn.execute("select cohort_id, requests from main.moengage_sync_runs").fetchall()
    return {cohort_id: requests for cohort_id, requests in rows}


def summary_requests(output: str) -> dict[str, int]:
    """model -> the `req` column of the summary table."""
    header = next(line for line in output.splitlines() if line.startswith("┃ model"))
    column = [name.strip() for name in header.split("┃")].index("req")
    rows = [line.split("│") for line in output.splitlines() if line.startswith("│ ")]
    return {row[1].strip(): int(row[column].strip().replace(",", "")) for row in rows}


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
    # Requests are those that reached MoEngage, the same in the summary, the results file
    # and the run rows; a real run plans none (a dry run counts them).
    received = Counter(r.cohort_id for r in emulator.requests())
    recorded = run_requests(project)
    table = summary_requests(output)
    for c in written["cohorts"]:
        assert c["requests"] == received[c["cohort_id"]], (c, received)
        assert c["planned_requests"] is None
        assert table[c["model"]] == c["requests"]
        if c["cohort_id"] in recorded:
            assert recorded[c["cohort_id"]] == c["requests"]
    assert sum(recorded.values()) == len(emulator.requests())

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


def test_a_second_signal_leaves_no_semaphore_behind(
    project: BuiltProject, emulator: Emulator
) -> None:
    # --select runs `dbt ls` in the runner's process: dbt's adapter and manifest hold named
    # semaphores, which an exit at once must still unlink.
    emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=3.0))
    env = {**crash_env(project, emulator), "MOENGAGE_REQUEST_DEADLINE_SECONDS": "30"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbt_moengage", *sync_args(project, "--select", "high_value_users")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for_requests(emulator, 2, proc)
    proc.send_signal(signal.SIGINT)
    first = read_until(proc, "finishing the requests in flight")
    proc.send_signal(signal.SIGINT)
    # communicate() reads until multiprocessing's resource tracker, which inherited the
    # pipe, has exited too: its warnings would be here.
    output = first + proc.communicate(timeout=60)[0]
    assert proc.returncode == 128 + signal.SIGINT, output
    assert "exiting now" in output
    assert "leaked semaphore" not in output and "resource_tracker" not in output, output


@pytest.mark.parametrize(
    ("signum", "times"),
    [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGINT, 2)],
    ids=["SIGINT", "SIGTERM", "SIGINT-twice"],
)
def test_a_signal_during_the_dbt_phase_of_build_exits_with_one_line(
    project_copy: Path,  # noqa: F811
    emulator: Emulator,
    signum: int,
    times: int,
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbt_moengage", *build_args(project_copy)],
        cwd=ROOT,
        env=build_env(project_copy, emulator),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = read_until(proc, "START sql", seconds=180)
    proc.send_signal(signum)
    if times == 2:
        seen += read_until(proc, "dbt build stopped")
        proc.send_signal(signum)
    output = seen + proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signum, output
    name = signal.Signals(signum).name
    said = f"{name}: dbt build stopped (dbt cancels its queries); nothing is synced"
    assert output.count(said) == 1, output
    assert ("exiting now" in output) == (times == 2)
    # dbt's stack trace and an error without a reason are not shown; nothing is synced.
    for text in ("Traceback", "KeyboardInterrupt", "did not run", "error:", "leaked semaphore"):
        assert text not in output, (text, output)
    assert "MoEngage cohort sync" not in output and emulator.requests() == []

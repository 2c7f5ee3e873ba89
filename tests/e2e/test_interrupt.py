"""Ctrl-C and SIGTERM mid-sync: the requests in flight finish and are recorded, run rows say
`interrupted`, the report is written, the exit code is 128 + the signal, all within
seconds, also when a warehouse query over a slow model was running (it is cancelled, on
DuckDB and on a real Postgres); a second signal exits at once, unless it comes within a
moment of the first (`timeout` sends two); the next run resumes exactly."""

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

from dbt_moengage.interrupt import SAME_STOP_SECONDS
from dbt_moengage.testing.emulator import Emulator, Faults
from dbt_moengage.warehouse.cancel import CANCELLED

from ..conftest import COHORTS, ROOT, BuiltProject, run_cli, sync_args
from .test_crash import IN_FLIGHT, crash_env, resent_uids, start_sync, wait_for_requests
from .test_postgres import PgProject, env_for, pg, pg_built  # noqa: F401
from .test_postgres import args as pg_args
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
    emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=10.0))
    env = {**crash_env(project, emulator), "MOENGAGE_REQUEST_DEADLINE_SECONDS": "30"}
    proc = start_sync(project, env)
    wait_for_requests(emulator, 2, proc)
    proc.send_signal(signal.SIGINT)
    first = read_until(proc, "finishing the requests in flight")
    # Within a moment of the first, a signal is the first one again.
    time.sleep(SAME_STOP_SECONDS)
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
    emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=10.0))
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
    time.sleep(SAME_STOP_SECONDS)
    proc.send_signal(signal.SIGINT)
    # communicate() reads until multiprocessing's resource tracker, which inherited the
    # pipe, has exited too: its warnings would be here.
    output = first + proc.communicate(timeout=60)[0]
    assert proc.returncode == 128 + signal.SIGINT, output
    assert "exiting now" in output
    assert "leaked semaphore" not in output and "resource_tracker" not in output, output


@pytest.mark.parametrize(
    ("signum", "times"),
    [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGTERM, 2)],
    # Twice a moment apart (`timeout` on `build`): one stop. dbt stops within that moment,
    # so a second signal that exits at once is tested in the sync phase (above).
    ids=["SIGINT", "SIGTERM", "SIGTERM-twice-at-once"],
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
        time.sleep(0.05)
        proc.send_signal(signum)
    output = seen + proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signum, output
    name = signal.Signals(signum).name
    said = f"{name}: dbt build stopped (dbt cancels its queries); nothing is synced"
    assert output.count(said) == 1, output
    assert "exiting now" not in output
    # dbt's stack trace and an error without a reason are not shown; nothing is synced.
    for text in ("Traceback", "KeyboardInterrupt", "did not run", "error:", "leaked semaphore"):
        assert text not in output, (text, output)
    assert "MoEngage cohort sync" not in output and emulator.requests() == []


# -- two signals at once are one (GNU `timeout` sends SIGTERM to the process and its group) ----


def test_two_sigterms_a_moment_apart_stop_cleanly_as_one(
    project: BuiltProject, emulator: Emulator
) -> None:
    emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=0.2))
    env = {**crash_env(project, emulator), "MOENGAGE_REQUEST_DEADLINE_SECONDS": "5"}
    proc = start_sync(project, env)
    wait_for_requests(emulator, 30, proc)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, output
    assert "exiting now" not in output
    assert output.count("SIGTERM: finishing the requests in flight") == 1, output
    written = report(project)
    assert written["exit_code"] == 143 and written["interrupted_by"] == signal.SIGTERM
    assert "interrupted" in {c["status"] for c in written["cohorts"]}
    assert "running" not in run_statuses(project)


def test_a_signal_two_seconds_after_a_double_one_still_exits_at_once(
    project: BuiltProject, emulator: Emulator
) -> None:
    # Answers so slow that the clean stop is still waiting for them 2 s on.
    emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=10.0))
    env = {**crash_env(project, emulator), "MOENGAGE_REQUEST_DEADLINE_SECONDS": "30"}
    proc = start_sync(project, env)
    wait_for_requests(emulator, 2, proc)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    seen = read_until(proc, "finishing the requests in flight")
    time.sleep(2)
    assert proc.poll() is None, "the double signal did not stop cleanly"
    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    output = seen + proc.communicate(timeout=60)[0]
    assert proc.returncode == 143, output
    assert time.monotonic() - signalled < 2.5
    assert output.count("exiting now") == 1, output


# -- a signal during a long warehouse query cancels it ----------------------------------------

# The cohort synced last (cohorts sync in unique_id order), and the line of the one before.
SLOW_MODEL, SLOW_COHORT = "recently_active", "recently_active_30d"
BEFORE_SLOW = "synced messy_signups -> messy_signups"
# Seconds from the signal to the exit, the cancelled query's cohort and run row written.
CANCEL_EXIT_SECONDS = 5.0


def slow_duckdb_model(project: BuiltProject) -> None:
    """Make the model a view with the same rows whose every read counts 10^11 pairs first:
    minutes of DuckDB's time (its describe stays instant)."""
    with duckdb.connect(str(project.database)) as conn:
        conn.execute(f"alter table main.{SLOW_MODEL} rename to {SLOW_MODEL}_rows")
        conn.execute(
            f"create view main.{SLOW_MODEL} as select r.* from main.{SLOW_MODEL}_rows r "
            "where (select count(*) from range(1000000) a, range(100000) b "
            "where (a.range * 7 + b.range) % 13 = 5) > 0"
        )


def stop_mid_query(proc: subprocess.Popen[str], signum: int) -> tuple[str, float]:
    """Signal the runner once it reads the slow model; its output and how long it took to
    exit after the signal."""
    seen = read_until(proc, BEFORE_SLOW, seconds=180)
    time.sleep(2)  # its snapshot of the slow model is reading now
    assert proc.poll() is None, seen
    proc.send_signal(signum)
    signalled = time.monotonic()
    output = seen + proc.communicate(timeout=120)[0]
    return output, time.monotonic() - signalled


def assert_cancelled(written: dict[str, Any], signum: int, output: str) -> None:
    assert written["exit_code"] == 128 + signum and written["interrupted_by"] == signum
    cohorts = {c["cohort_id"]: c for c in written["cohorts"]}
    assert cohorts[SLOW_COHORT]["status"] == "interrupted", output
    assert cohorts[SLOW_COHORT]["error"] == CANCELLED
    assert {c["status"] for i, c in cohorts.items() if i != SLOW_COHORT} == {"synced"}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_cancels_a_long_query_on_duckdb(
    project: BuiltProject, emulator: Emulator, signum: int
) -> None:
    slow_duckdb_model(project)
    proc = start_sync(project, crash_env(project, emulator))
    output, took = stop_mid_query(proc, signum)
    print(f"DuckDB, {signal.Signals(signum).name}: exited {took:.2f} s after the signal")
    assert proc.returncode == 128 + signum, output
    assert took < CANCEL_EXIT_SECONDS, output
    assert_cancelled(report(project), signum, output)
    # The run row says how its run ended; the database file is free again.
    assert "running" not in run_statuses(project) and "interrupted" in run_statuses(project)


def slow_postgres_model(project: PgProject) -> None:
    """Make the model a view with the same rows whose every read sleeps 120 s first (its
    `select ... limit 0` does not)."""
    project.query(f"alter table main.{SLOW_MODEL} rename to {SLOW_MODEL}_rows")
    project.query(
        f"create view main.{SLOW_MODEL} as select r.* from main.{SLOW_MODEL}_rows r "
        "where (select count(*) from pg_sleep(120)) > 0"
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_cancels_a_long_query_on_postgres(
    pg: PgProject,  # noqa: F811
    emulator: Emulator,
    signum: int,
) -> None:
    slow_postgres_model(pg)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbt_moengage", *pg_args()],
        cwd=ROOT,
        env=env_for(pg, emulator),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, took = stop_mid_query(proc, signum)
    print(f"Postgres, {signal.Signals(signum).name}: exited {took:.2f} s after the signal")
    assert proc.returncode == 128 + signum, output
    assert took < CANCEL_EXIT_SECONDS, output
    assert_cancelled(
        json.loads((pg.target_dir / "moengage_sync_results.json").read_text()), signum, output
    )
    rows = pg.query(
        "select status from main.moengage_sync_runs where cohort_id = %s", (SLOW_COHORT,)
    )
    assert rows == [("interrupted",)]
    # Nothing of the run is left on the server: no query, no snapshot table.
    active = pg.query(
        "select count(*) from pg_stat_activity where state = 'active' and query like %s "
        "and pid <> pg_backend_pid()",
        (f"%{SLOW_MODEL}%",),
    )
    assert active == [(0,)]
    snapshots = pg.query(
        "select count(*) from pg_tables where tablename like %s", ("moengage_snapshot_%",)
    )
    assert snapshots == [(0,)]

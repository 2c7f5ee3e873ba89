"""End to end on BigQuery: tests/bigquery/project built once per module with a real
`dbt build --target bigquery` on the BigQuery emulator (tests/bigquery_emulator.py), then
synced to the MoEngage emulator: exact membership with awkward STRING and INT64 uids, an
unchanged re-run, mirror mode and its guard, re-sends, a rename, kill -9 and resume, two
runners at once, the profile's token never written, status, report and validate, and uid
columns of types the runner refuses.

Each test gets its own copy of the target folder (so its manifest edits and reports stay
its own) and its own state dataset (MOENGAGE_STATE_SCHEMA); a test that changes a model's
rows copies that table into a dataset of its own and points its manifest at the copy.
Syncs run in this process (the Python API, the CLI through click's runner); real
processes only where the process is the point: kill -9, and what a process prints.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dbt_moengage import api, uids
from dbt_moengage.cli import main
from dbt_moengage.pipeline import SyncOptions, run_sync
from dbt_moengage.report import CohortResult, RunReport
from dbt_moengage.testing.emulator import Emulator, Faults

from ..bigquery_emulator import TOKEN, BigQueryEmulator
from ..conftest import API_KEY, ROOT, WORKSPACE
from .test_crash import wait_for_requests

PROJECT_DIR = ROOT / "tests" / "bigquery" / "project"
NODE = "model.moengage_bigquery_e2e.{}"
RESULTS_FILE = "moengage_sync_results.json"

STRINGS, INTS, MIRROR, MANY = "bq_strings", "bq_ints", "bq_mirror", "bq_many"
MODEL = {
    STRINGS: "awkward_strings",
    INTS: "awkward_ints",
    MIRROR: "mirror_members",
    MANY: "many_users",
}
COLUMN = {STRINGS: "uid", INTS: "customer_number", MIRROR: "user_id", MANY: "uid"}
# models/bad_types: the uid column and its type as SQL names it.
BAD_TYPES = {
    "float_uids": ("bq_float", "uid", "FLOAT64"),
    "date_uids": ("bq_date", "signup_day", "DATE"),
    "array_uids": ("bq_array", "uid_list", "ARRAY<INT64>"),
}

# models/awkward_strings.sql, row for row, in Python: what MoEngage must get, and what
# the runner must drop and count (by reason).
AWKWARD_SENDABLE = [
    "abc",
    "ABC",
    "Abc",
    "\u00e9",
    "e\u0301",
    "用户",
    "Ünïcödé-ß",
    "\U0001f389",
    "emoji\U0001f468\u200d\U0001f4bb",
    "quo'te",
    '"double"',
    "back\\slash",
    "\\u0041",
    "\\\\\\",
    "tab\tinside",
    "line\ninside",
    '{"json": [1, 2]}',
    "<b>&amp;</b> %20+",
    "L" * 5000,
    "007",
    "7",
    "0",
    "-1",
]
STRING_DUPLICATES = ["abc", "007"]
STRING_NULLS: list[str | None] = [None, None, None]
STRING_BLANKS = ["", "", "   ", "\t\n", "\xa0", "\u200b"]
STRING_PADDED = [" lead", "trail ", "nbsp\xa0", "\ufeffbom", "zw\u200b", "\nnewline"]
STRING_BULK = [f"user-{n:05d}" for n in range(1, 401)]
STRING_SENDABLE = {*AWKWARD_SENDABLE, *STRING_BULK}

# models/awkward_ints.sql.
INT_SPECIAL = [7, 0, -1, -(2**63), 2**63 - 1, 123456789012345678, 42]
INT_DUPLICATES = [42]
INT_NULLS = 2
INT_BULK = [n * 1000 for n in range(1, 301)]
INT_SENDABLE = {str(n) for n in [*INT_SPECIAL, *INT_BULK]}

MIRROR_SIZE = 200
MANY_SIZE = 3000
MANY_UIDS = {f"many-{n:05d}" for n in range(1, MANY_SIZE + 1)}

# The kill -9 and race tests: small bodies so many_users takes about 80 requests.
SMALL_BODIES = "700"
IN_FLIGHT = 4
KILL_AFTER = 20
# A killed runner's lock row is stale after this (MOENGAGE_LOCK_STALE_SECONDS).
STALE = 2.0
WRONG_KEY = "sk-bq-wrong-1a2b3c4d5e-never-printed"

# -- the project, built once; a copy per test ---------------------------------------------


@dataclass(frozen=True)
class BqBuilt:
    """tests/bigquery/project after `dbt build --target bigquery`: its models' dataset."""

    emulator: BigQueryEmulator
    dataset: str
    target_dir: Path
    env: dict[str, str]


@dataclass(frozen=True)
class BqProject:
    """One test's copy: its target folder, its state dataset and its environment."""

    built: BqBuilt
    target_dir: Path
    state: str
    env: dict[str, str]

    @property
    def bq(self) -> BigQueryEmulator:
        return self.built.emulator

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return self.bq.query(sql)

    def state_table(self, table: str) -> str:
        return f"`{self.bq.project}`.`{self.state}`.`{table}`"

    @property
    def manifest_path(self) -> Path:
        return self.target_dir / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.manifest_path.read_text())
        return data

    def relation(self, model: str) -> str:
        return str(self.manifest()["nodes"][NODE.format(model)]["relation_name"])

    def column_values(self, cohort_id: str) -> list[Any]:
        """The model's uid column as the BigQuery client reads it (Python values)."""
        rows = self.query(f"select `{COLUMN[cohort_id]}` from {self.relation(MODEL[cohort_id])}")
        return [value for (value,) in rows]

    def expected_members(self, cohort_id: str) -> set[str]:
        """The cohort's uids computed here, in Python, from the model's rows."""
        texts = (None if v is None else str(v) for v in self.column_values(cohort_id))
        return {text for text in texts if text is not None and not uids.problem(text)}


def dbt(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run dbt from the virtualenv in tests/bigquery/project (conftest.dbt's pattern)."""
    exe = Path(sys.executable).with_name("dbt")
    return subprocess.run(
        [str(exe), *args, "--profiles-dir", str(PROJECT_DIR)],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def bq_built(
    bigquery_emulator: BigQueryEmulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> BqBuilt:
    """`dbt build --target bigquery` of the project, once, into a fresh dataset."""
    dataset = bigquery_emulator.new_dataset(f"bq_e2e_models_{os.getpid()}")
    work = tmp_path_factory.mktemp("bq_e2e")
    env = {
        **os.environ,
        **bigquery_emulator.profile_env(dataset),
        "DBT_TARGET_PATH": str(work / "target"),
        "DBT_LOG_PATH": str(work / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    done = dbt(["build", "--target", "bigquery"], env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return BqBuilt(bigquery_emulator, dataset, work / "target", env)


def copy_project(built: BqBuilt, folder: Path, state: str) -> BqProject:
    """A copy of the built target folder in `folder`, syncing to state dataset `state`."""
    target = folder / "target"
    shutil.copytree(built.target_dir, target)
    env = {
        **built.env,
        "DBT_TARGET_PATH": str(target),
        "DBT_LOG_PATH": str(folder / "logs"),
        "MOENGAGE_STATE_SCHEMA": state,
    }
    return BqProject(built, target, state, env)


@pytest.fixture
def bq(bq_built: BqBuilt, bigquery_dataset: str, tmp_path: Path) -> BqProject:
    """A copy of the target folder, and a state dataset of the test's own."""
    return copy_project(bq_built, tmp_path, bigquery_dataset)


# -- helpers -------------------------------------------------------------------------------


def edit_nodes(project: BqProject, edit: Callable[[str, dict[str, Any]], None]) -> None:
    """Change the copied manifest's nodes, as a parse of a changed project would."""
    manifest = project.manifest()
    for unique_id, node in manifest["nodes"].items():
        edit(unique_id.rsplit(".", 1)[-1], node)
    project.manifest_path.write_text(json.dumps(manifest))


def metas(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The node's meta blocks that hold `moengage` (dbt copies config.meta to meta)."""
    found = ((node.get("config") or {}).get("meta") or {}, node.get("meta") or {})
    return [meta for meta in found if "moengage" in meta]


def only(project: BqProject, *models: str) -> None:
    """Keep the cohorts of `models`: the other models lose their meta.moengage."""

    def edit(name: str, node: dict[str, Any]) -> None:
        if name not in models:
            for meta in metas(node):
                del meta["moengage"]

    edit_nodes(project, edit)


def edit_meta(project: BqProject, model: str, **changes: Any) -> None:
    """Change a model's meta.moengage, as its dbt config would."""

    def edit(name: str, node: dict[str, Any]) -> None:
        if name == model:
            for meta in metas(node):
                meta["moengage"].update(changes)

    edit_nodes(project, edit)


def point_at(project: BqProject, model: str, relation: str) -> None:
    """The model's relation in the manifest becomes `relation`."""

    def edit(name: str, node: dict[str, Any]) -> None:
        if name == model:
            node["relation_name"] = relation

    edit_nodes(project, edit)


def own_table(project: BqProject, model: str) -> str:
    """A copy of the model's table that only this test changes; the manifest reads it."""
    data = f"{project.state}_models"
    where = f"`{project.bq.project}`.`{data}`"
    project.query(f"create schema if not exists {where}")
    table = f"{where}.`{model}`"
    project.query(f"create table {table} as select * from {project.relation(model)}")
    point_at(project, model, table)
    return table


def env_for(project: BqProject, emulator: Emulator, **extra: str) -> dict[str, str]:
    """conftest.sync_env for this project: the emulator, its credentials, fast retries."""
    return {
        **project.env,
        "MOENGAGE_WORKSPACE_ID": WORKSPACE,
        "MOENGAGE_API_KEY": API_KEY,
        "MOENGAGE_BASE_URL": emulator.url,
        "MOENGAGE_RETRY_INITIAL_SECONDS": "0.05",
        "MOENGAGE_RETRY_MAX_SECONDS": "0.5",
        **extra,
    }


def sync(
    project: BqProject, emulator: Emulator, env: dict[str, str] | None = None, **kw: Any
) -> RunReport:
    """A sync in this process, through the Python API (it writes the results JSON)."""
    return api.sync(
        PROJECT_DIR,
        profiles_dir=PROJECT_DIR,
        environ=env or env_for(project, emulator),
        **kw,
    )


def by_cohort(report: RunReport) -> dict[str, CohortResult]:
    return {r.cohort_id or r.model: r for r in report.results}


def failures(report: RunReport) -> str:
    return report.failure_summary() or "no failure"


def project_args(*extra: str) -> list[str]:
    return ["--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR), *extra]


def cli(env: dict[str, str], *args: str) -> Result:
    """`dbt-moengage <args>` in this process (click's runner), with the project's options."""
    return CliRunner().invoke(
        main, [*args, *project_args()], env={**env, "COLUMNS": "200"}, catch_exceptions=False
    )


def status_json(env: dict[str, str]) -> tuple[int, dict[str, dict[str, Any]]]:
    """`status --output json`: its exit code and each cohort's row, by cohort id."""
    done = cli(env, "status", "--output", "json")
    assert done.exit_code in (0, 1), done.output
    data = json.loads(done.stdout)
    return done.exit_code, {row["cohort_id"]: row for row in data["cohorts"]}


def state_uids(project: BqProject, cohort_id: str, run_id: str | None = None) -> list[str]:
    """The uids the state holds for the cohort (those a run wrote, given its run id)."""
    where = f"cohort_id = '{cohort_id}'" + (f" and run_id = '{run_id}'" if run_id else "")
    rows = project.query(
        f"select uid from {project.state_table('moengage_cohort_members')} where {where}"
    )
    return [uid for (uid,) in rows]


def sent_after(emulator: Emulator, before: int) -> int:
    """uids carried by the requests after the first `before`."""
    return sum(r.members for r in emulator.requests()[before:])


def uids_sql(values: Iterable[str]) -> str:
    """Plain uids (letters, digits, dashes) as a SQL list."""
    return ", ".join(f"'{value}'" for value in values)


# -- 1, 2: exact membership, then an unchanged re-run --------------------------------------


def test_the_models_hold_the_awkward_values_listed_here(bq: BqProject) -> None:
    """The expected sets below are only as good as this: the emulator built, byte for
    byte, the rows listed in Python (chr(), concat and raw characters in literals)."""
    rows = [
        *AWKWARD_SENDABLE,
        *STRING_DUPLICATES,
        *STRING_NULLS,
        *STRING_BLANKS,
        *STRING_PADDED,
        *STRING_BULK,
    ]
    assert Counter(bq.column_values(STRINGS)) == Counter(rows)
    ints = [*INT_SPECIAL, *INT_DUPLICATES, *([None] * INT_NULLS), *INT_BULK]
    assert Counter(bq.column_values(INTS)) == Counter(ints)
    # The Python rule agrees with the groups: each dropped row for its reason.
    assert {uids.problem(u) for u in STRING_BLANKS} == {uids.BLANK}
    assert {uids.problem(u) for u in STRING_PADDED} == {uids.PADDED}
    assert bq.expected_members(STRINGS) == STRING_SENDABLE
    assert bq.expected_members(INTS) == INT_SENDABLE


def test_awkward_string_and_int64_uids_sync_exactly_then_a_rerun_sends_nothing(
    bq: BqProject, emulator: Emulator
) -> None:
    only(bq, MODEL[STRINGS], MODEL[INTS])
    report = sync(bq, emulator)
    assert report.ok, failures(report)
    results = by_cohort(report)

    assert emulator.members(STRINGS) == STRING_SENDABLE
    assert emulator.members(INTS) == INT_SENDABLE
    members = emulator.members(STRINGS)
    # Case variants and normal forms stay apart; '007' is not 7; nothing is trimmed.
    assert {"abc", "ABC", "Abc", "\u00e9", "e\u0301", "007", "7"} <= members
    assert "L" * 5000 in members and "back\\slash" in members and "quo'te" in members
    assert {"-9223372036854775808", "9223372036854775807", "0", "-1"} <= emulator.members(INTS)

    strings, ints = results[STRINGS], results[INTS]
    assert (strings.added, strings.uids_total) == (len(STRING_SENDABLE), len(STRING_SENDABLE))
    assert strings.dropped == {
        uids.NULL: len(STRING_NULLS),
        uids.BLANK: len(STRING_BLANKS),
        uids.PADDED: len(STRING_PADDED),
        uids.DUPLICATE: len(STRING_DUPLICATES),
        uids.TOO_LONG: 0,
    }
    assert (ints.added, ints.uids_total) == (len(INT_SENDABLE), len(INT_SENDABLE))
    assert ints.dropped == {
        uids.NULL: INT_NULLS,
        uids.BLANK: 0,
        uids.PADDED: 0,
        uids.DUPLICATE: len(INT_DUPLICATES),
        uids.TOO_LONG: 0,
    }
    # Each uid delivered once, and the state holds exactly what MoEngage got.
    for cohort_id in (STRINGS, INTS):
        assert emulator.delivered(cohort_id) == len(emulator.members(cohort_id))
        held = state_uids(bq, cohort_id)
        assert len(held) == len(set(held)) and set(held) == emulator.members(cohort_id)
    written = json.loads((bq.target_dir / RESULTS_FILE).read_text())
    assert written["exit_code"] == 0 and len(written["cohorts"]) == 2

    # 2. Nothing changed: the re-run sends nothing (the state matched every uid exactly).
    before = len(emulator.requests())
    again = sync(bq, emulator)
    assert again.ok, failures(again)
    assert len(emulator.requests()) == before
    for cohort_id, expected in ((STRINGS, STRING_SENDABLE), (INTS, INT_SENDABLE)):
        row = by_cohort(again)[cohort_id]
        assert (row.requests, row.added, row.resent, row.removed) == (0, 0, 0, 0), cohort_id
        assert row.unchanged == len(expected), cohort_id
        assert emulator.members(cohort_id) == expected

    # 3. A max_uid_length below the 5,000-character uid: it is dropped and counted, no
    # longer in the model's uids (an add-mode cohort keeps the member), nothing is sent.
    edit_meta(bq, MODEL[STRINGS], max_uid_length=4999)
    limited = by_cohort(sync(bq, emulator))[STRINGS]
    assert limited.status == "synced", limited.error
    assert (limited.dropped[uids.TOO_LONG], limited.left_but_kept) == (1, 1)
    assert (limited.uids_total, limited.requests) == (len(STRING_SENDABLE) - 1, 0)
    assert len(emulator.requests()) == before


# -- 3: mirror, the guard, re-sends, a rename ----------------------------------------------


def test_mirror_removes_exactly_who_left_and_the_guard_holds_a_mass_removal(
    bq: BqProject, emulator: Emulator
) -> None:
    only(bq, MODEL[MIRROR])
    table = own_table(bq, MODEL[MIRROR])
    first = sync(bq, emulator)
    assert first.ok, failures(first)
    assert len(emulator.members(MIRROR)) == MIRROR_SIZE

    # Ten members leave: exactly they are removed.
    gone = {f"m-{n:04d}" for n in range(1, 11)}
    bq.query(f"delete from {table} where `rank` <= 10")
    before = len(emulator.requests())
    done = sync(bq, emulator)
    assert done.ok, failures(done)
    row = by_cohort(done)[MIRROR]
    assert (row.removed, row.added, row.resent) == (len(gone), 0, 0)
    assert emulator.members(MIRROR) == bq.expected_members(MIRROR)
    assert emulator.members(MIRROR) == {f"m-{n:04d}" for n in range(11, MIRROR_SIZE + 1)}
    new = emulator.requests()[before:]
    assert {r.action for r in new} == {"remove_members"} and sent_after(emulator, before) == 10
    assert set(state_uids(bq, MIRROR)) == emulator.members(MIRROR)

    # 130 of the 190 would leave (68%, above max_remove_fraction 0.5): held, nothing sent.
    bq.query(f"delete from {table} where `rank` <= 140")
    before = len(emulator.requests())
    guarded = sync(bq, emulator)
    assert guarded.exit_code == 1
    row = by_cohort(guarded)[MIRROR]
    assert row.status == "guarded" and row.requests == 0
    assert "max_remove_fraction = 0.5" in (row.error or "")
    assert "130 of 190 members" in (row.error or "")
    assert len(emulator.requests()) == before
    assert len(emulator.members(MIRROR)) == MIRROR_SIZE - len(gone)
    assert len(state_uids(bq, MIRROR)) == MIRROR_SIZE - len(gone)
    runs = bq.query(
        f"select status from {bq.state_table('moengage_sync_runs')} order by started_at"
    )
    assert [status for (status,) in runs] == ["synced", "synced", "guarded"]


def test_resends_send_exactly_the_due_members(bq: BqProject, emulator: Emulator) -> None:
    """mirror_members re-sends after 1h: members whose last acceptance is aged 2 hours
    (in the state, by SQL) are due, the rest are not."""
    only(bq, MODEL[MIRROR])
    first = sync(bq, emulator)
    assert first.ok, failures(first)
    due = {f"m-{n:04d}" for n in range(5, MIRROR_SIZE + 1, 5)}
    bq.query(
        f"update {bq.state_table('moengage_cohort_members')} "
        "set synced_at = timestamp_sub(synced_at, interval 7200 second) "
        f"where cohort_id = '{MIRROR}' and uid in ({uids_sql(sorted(due))})"
    )
    before, delivered = len(emulator.requests()), emulator.delivered(MIRROR)

    again = sync(bq, emulator)
    assert again.ok, failures(again)
    row = by_cohort(again)[MIRROR]
    assert (row.resent, row.added, row.removed) == (len(due), 0, 0)
    assert row.unchanged == MIRROR_SIZE - len(due)
    assert sent_after(emulator, before) == len(due)
    assert emulator.delivered(MIRROR) - delivered == len(due)
    # Exactly the due members were re-sent: the run refreshed their rows and no other.
    assert set(state_uids(bq, MIRROR, again.run_id)) == due
    assert emulator.members(MIRROR) == bq.expected_members(MIRROR)
    # Each re-send was a newer row; the run's end compacted the older ones.
    assert len(state_uids(bq, MIRROR)) == MIRROR_SIZE

    # A run that died after recording re-sends left newer rows beside the older ones: the
    # next run's plan finds them, and its end keeps each uid's newest row only.
    table = bq.state_table("moengage_cohort_members")
    dead = sorted(due)[:3]
    bq.query(
        f"insert into {table} (endpoint, workspace_id, cohort_id, uid, synced_at, run_id) "
        "select endpoint, workspace_id, cohort_id, uid, current_timestamp(), 'dead-run' "
        f"from {table} where cohort_id = '{MIRROR}' and uid in ({uids_sql(dead)})"
    )
    assert len(state_uids(bq, MIRROR)) == MIRROR_SIZE + len(dead)
    third = sync(bq, emulator)
    assert third.ok, failures(third)
    assert (by_cohort(third)[MIRROR].resent, by_cohort(third)[MIRROR].removed) == (0, 0)
    assert len(state_uids(bq, MIRROR)) == MIRROR_SIZE
    assert sorted(state_uids(bq, MIRROR, "dead-run")) == dead


def test_a_rename_reaches_moengage(bq: BqProject, emulator: Emulator) -> None:
    only(bq, MODEL[INTS])
    first = sync(bq, emulator)
    assert first.ok, failures(first)
    assert emulator.cohorts()[INTS]["cohort_name"] == ".BQ Awkward Ints"

    edit_meta(bq, MODEL[INTS], cohort_name="BQ Awkward Ints (renamed)")
    before = len(emulator.requests())
    done = sync(bq, emulator)
    assert done.ok, failures(done)
    row = by_cohort(done)[INTS]
    assert row.renamed and row.added == 0
    new = emulator.requests()[before:]
    # One small add of current members carries the name; nothing else is sent.
    assert len(new) == 1 and new[0].action == "add_members" and new[0].cohort_id == INTS
    assert 0 < new[0].members <= 100
    assert emulator.cohorts()[INTS]["cohort_name"] == "BQ Awkward Ints (renamed)"
    assert emulator.members(INTS) == INT_SENDABLE
    # The state keeps the name MoEngage now has: the next run has nothing to rename.
    names = bq.query(f"select cohort_name from {bq.state_table('moengage_cohorts')}")
    assert names == [("BQ Awkward Ints (renamed)",)]


# -- 4, 5: kill -9 and resume; two runners at once -----------------------------------------


def crash_env(project: BqProject, emulator: Emulator, **extra: str) -> dict[str, str]:
    """Small bodies, a few in flight."""
    return env_for(
        project,
        emulator,
        **{
            "MOENGAGE_MAX_BODY_BYTES": SMALL_BODIES,
            "MOENGAGE_MAX_IN_FLIGHT": str(IN_FLIGHT),
            "MOENGAGE_LOCK_WAIT_SECONDS": "60",
            **extra,
        },
    )


def test_kill_9_mid_sync_then_the_next_run_resumes_exactly(
    bq: BqProject, emulator: Emulator
) -> None:
    only(bq, MODEL[MANY])
    env = crash_env(bq, emulator, MOENGAGE_LOCK_STALE_SECONDS=f"{STALE:g}")
    emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=0.1))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbt_moengage", "sync", *project_args()],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_requests(emulator, KILL_AFTER, proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # Killed: its lock row is no longer beaten, and goes stale; the requests it had in
    # flight are answered (to no one) and logged meanwhile.
    time.sleep(STALE + 0.5)
    before, delivered = len(emulator.requests()), emulator.delivered(MANY)
    accepted = len(emulator.members(MANY))
    # Every body but a cohort's last is full: `biggest` uids.
    biggest = max(r.members for r in emulator.requests())
    assert before >= KILL_AFTER and accepted < MANY_SIZE - IN_FLIGHT * biggest

    # It left its run row 'running' and its lock row: status says it stopped.
    runs = bq.query(f"select run_id, status from {bq.state_table('moengage_sync_runs')}")
    locks = bq.query(f"select run_id from {bq.state_table('moengage_sync_locks')}")
    assert len(runs) == 1 and runs[0][1] == "running"
    assert locks == [(runs[0][0],)]
    code, rows = status_json(env)
    assert code == 1 and rows[MANY]["health"] == "stopped", rows
    assert "stopped without finishing" in rows[MANY]["error"]

    # The next run takes the stale lock over and sends what was not accepted.
    emulator.set_faults(Faults())
    done = sync(bq, emulator, env)
    assert done.ok, failures(done)
    assert emulator.members(MANY) == MANY_UIDS == bq.expected_members(MANY)
    # At least once: only the requests in flight at the kill may be delivered twice.
    resent = emulator.delivered(MANY) - MANY_SIZE
    assert resent <= IN_FLIGHT * biggest
    # It resumed: what MoEngage had not accepted, plus at most what was in flight, in
    # full bodies (one partial one), not the whole audience again.
    row = by_cohort(done)[MANY]
    assert row.added == emulator.delivered(MANY) - delivered
    resumed = len(emulator.requests()) - before
    assert resumed <= -(-(MANY_SIZE - accepted) // biggest) + IN_FLIGHT + 1
    # The lock row went with the run; the state holds every uid once.
    assert bq.query(f"select count(*) from {bq.state_table('moengage_sync_locks')}") == [(0,)]
    assert sorted(state_uids(bq, MANY)) == sorted(MANY_UIDS)
    statuses = bq.query(f"select status from {bq.state_table('moengage_sync_runs')}")
    assert sorted(status for (status,) in statuses) == ["running", "synced"]


def test_two_runners_at_once_deliver_each_uid_once(bq: BqProject, emulator: Emulator) -> None:
    """Two runners in threads, each with its own engine and run, on one cohort."""
    only(bq, MODEL[MANY])
    env = crash_env(bq, emulator, MOENGAGE_MAX_BODY_BYTES="4000")
    start = threading.Barrier(2)
    reports: list[RunReport] = []
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            start.wait(timeout=30)
            options = SyncOptions(project_dir=PROJECT_DIR, profiles_dir=PROJECT_DIR, environ=env)
            reports.append(run_sync(options))
        except BaseException as exc:  # shown by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(reports) == 2 and all(r.ok for r in reports), [failures(r) for r in reports]
    assert reports[0].run_id != reports[1].run_id
    assert emulator.members(MANY) == MANY_UIDS
    assert emulator.delivered(MANY) == MANY_SIZE
    # One sent everyone; the other waited for the lock, then found nothing to send.
    added = sorted(by_cohort(r)[MANY].added for r in reports)
    assert added == [0, MANY_SIZE]
    assert bq.query(f"select count(*) from {bq.state_table('moengage_sync_locks')}") == [(0,)]
    assert len(state_uids(bq, MANY)) == MANY_SIZE


# -- 6: the profile's token is never written -----------------------------------------------


def everything_written(project: BqProject) -> str:
    """Every text file the runs left (target folder, logs) and every state table's rows."""
    texts = [
        path.read_text(errors="replace")
        for folder in (project.target_dir, project.target_dir.parent / "logs")
        if folder.exists()
        for path in folder.rglob("*")
        if path.is_file() and path.suffix in (".json", ".txt", ".log", ".csv", ".md", ".html")
    ]
    client = project.bq.client()
    for table in client.list_tables(f"{project.bq.project}.{project.state}"):
        rows = project.query(f"select * from {project.state_table(table.table_id)}")
        texts.append(repr(rows))
    return "\n".join(texts)


def start_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """`dbt-moengage <args>` as a process of its own, as a user runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "dbt_moengage", *args],
        cwd=ROOT,
        env={**env, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_profile_token_is_never_written(
    bq: BqProject, emulator: Emulator, tmp_path: Path
) -> None:
    # A failing sync: uid columns of refused types, a relation that does not exist, and a
    # MoEngage key the workspace refuses; as JSON events, the most verbose output there is.
    only(bq, MODEL[MIRROR], MODEL[INTS], *BAD_TYPES)
    point_at(bq, MODEL[INTS], f"`{bq.bq.project}`.`{bq.built.dataset}`.`no_such_table`")
    failing = start_cli(
        ["sync", *project_args("--log-format", "json")],
        env_for(bq, emulator, MOENGAGE_API_KEY=WRONG_KEY),
    )
    # A succeeding one, printed as text, at the same time (a project copy of its own).
    fine = copy_project(bq.built, tmp_path / "ok", bq.bq.new_dataset(f"{bq.state}_ok"))
    only(fine, MODEL[MIRROR])
    succeeding = start_cli(["sync", *project_args()], env_for(fine, emulator))
    outputs = [proc.communicate(timeout=300) for proc in (failing, succeeding)]

    assert failing.returncode == 1, outputs[0]
    statuses = {c["model"]: c["status"] for c in json_results(bq)["cohorts"]}
    assert statuses[MODEL[INTS]] == "invalid" and statuses[MODEL[MIRROR]] == "failed"
    assert {statuses[model] for model in BAD_TYPES} == {"invalid"}
    assert "does not exist" in "".join(outputs[0]) and "401" in "".join(outputs[0])
    assert succeeding.returncode == 0, outputs[1]
    assert json_results(fine)["exit_code"] == 0
    assert emulator.members(MIRROR) == fine.expected_members(MIRROR)

    written = everything_written(bq) + everything_written(fine)
    # The failed run's error is in its results and in its run row.
    assert "401" in written
    for secret in (TOKEN, WRONG_KEY, API_KEY):
        for stdout, stderr in outputs:
            assert secret not in stdout
            assert secret not in stderr
        assert secret not in written


def json_results(project: BqProject) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((project.target_dir / RESULTS_FILE).read_text())
    return data


# -- 7: status, report, validate --warehouse -----------------------------------------------


def test_status_report_and_validate_on_bigquery(bq: BqProject, emulator: Emulator) -> None:
    only(bq, MODEL[INTS], MODEL[MIRROR])
    table = own_table(bq, MODEL[MIRROR])
    env = env_for(bq, emulator)

    first = sync(bq, emulator, env)
    assert first.ok, failures(first)
    code, rows = status_json(env)
    assert code == 0 and set(rows) == {INTS, MIRROR}, rows
    for cohort_id, row in rows.items():
        assert row["health"] == "ok"
        assert row["members"] == len(emulator.members(cohort_id)) == row["last_run"]["added"]
        assert row["last_run"]["members_after"] == row["members"]
    assert rows[MIRROR]["mode"] == "mirror"

    # A mass removal is guarded: status says the mirror cohort is failing, and why.
    bq.query(f"delete from {table} where `rank` <= 150")
    guarded = sync(bq, emulator, env)
    assert guarded.exit_code == 1
    code, rows = status_json(env)
    assert code == 1
    assert rows[INTS]["health"] == "ok"
    assert rows[MIRROR]["health"] == "failing" and rows[MIRROR]["last_run"]["status"] == "guarded"
    assert "max_remove_fraction" in rows[MIRROR]["error"]
    assert rows[MIRROR]["members"] == MIRROR_SIZE

    report = cli(env, "report")
    assert report.exit_code == 0, report.output
    page = bq.target_dir / "moengage_report.html"
    assert f"report written to {page}" in report.stdout
    html = page.read_text(encoding="utf-8")
    for cohort_id, model in ((INTS, MODEL[INTS]), (MIRROR, MODEL[MIRROR])):
        assert cohort_id in html and model in html
    assert f"members now <b>{len(INT_SENDABLE):,}</b>" in html
    assert f"members now <b>{MIRROR_SIZE:,}</b>" in html
    assert ".BQ Mirror Members" in html and "guarded" in html
    assert TOKEN not in html

    checked = cli(env, "validate", "--warehouse")
    assert checked.exit_code == 0, checked.output
    assert "ok: 2 cohort(s) valid" in checked.stdout
    assert "not checked" not in checked.stdout


# -- a uid column of a type the runner refuses ---------------------------------------------


def test_a_uid_column_of_a_refused_type_fails_only_its_cohort(
    bq: BqProject, emulator: Emulator
) -> None:
    only(bq, MODEL[INTS], *BAD_TYPES)
    env = env_for(bq, emulator)
    checked = cli(env, "validate", "--warehouse")
    assert checked.exit_code == 1, checked.output
    assert "3 problem(s); 1 cohort(s) valid" in checked.stdout

    report = sync(bq, emulator, env)
    assert report.exit_code == 1
    results = {r.model: r for r in report.results}
    for model, (cohort_id, column, kind) in BAD_TYPES.items():
        row = results[model]
        assert row.status == "invalid", model
        message = row.error or ""
        assert f"model '{model}'" in message, message
        assert f"uid_column = '{column}'" in message, message
        assert f"has type {kind};" in message, message
        assert message in checked.stdout
        assert emulator.members(cohort_id) == set()
    assert results[MODEL[INTS]].status == "synced"
    assert emulator.members(INTS) == INT_SENDABLE
    assert {r.cohort_id for r in emulator.requests()} == {INTS}
    written = json_results(bq)
    assert written["exit_code"] == 1

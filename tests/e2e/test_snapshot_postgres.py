"""One snapshot of the model per cohort run, on a real PostgreSQL: what is sent is what was
planned, however the model changes meanwhile, and the model is read exactly once per sync
(counted by the server itself in pg_stat_user_tables).

The cohort high_value_users is turned into a mirror view over a table the test changes
from another session, as an EL tool reloading a source would.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from dbt_moengage.pipeline import SyncOptions, run_sync
from dbt_moengage.report import GUARDED, SYNCED, RunReport
from dbt_moengage.testing.emulator import Emulator, Faults

from ..conftest import INTEGRATION
from .test_postgres import PgProject, env_for, pg, pg_built  # noqa: F401

COHORT = "high_value_users"
NODE = f"model.moengage_integration_tests.{COHORT}"
SOURCE = "main.hv_source"


def as_mirror_view(project: PgProject, uids: list[str]) -> None:
    """high_value_users becomes a view over SOURCE, holding `uids`; the manifest says mirror."""
    project.query(f"drop table main.{COHORT} cascade")
    project.query(f"create table {SOURCE} (uid text)")
    project.query(f"create view main.{COHORT} as select uid from {SOURCE}")
    set_source(project, uids)
    manifest = project.target_dir / "manifest.json"
    doc = json.loads(manifest.read_text())
    node = doc["nodes"][NODE]
    node["config"]["meta"]["moengage"]["mode"] = "mirror"
    manifest.write_text(json.dumps(doc))


def set_source(project: PgProject, uids: list[str]) -> None:
    project.query(f"truncate {SOURCE}")
    if uids:
        values = ", ".join(f"('{uid}')" for uid in uids)
        project.query(f"insert into {SOURCE} (uid) values {values}")


def sync(project: PgProject, emulator: Emulator) -> RunReport:
    env = env_for(project, emulator, MOENGAGE_MAX_BODY_BYTES="2000", MOENGAGE_MAX_IN_FLIGHT="1")
    return run_sync(
        SyncOptions(
            project_dir=INTEGRATION,
            profiles_dir=INTEGRATION,
            target="postgres",
            target_path=project.target_dir,
            environ=env,
        )
    )


def cohort(report: RunReport) -> dict[str, object]:
    found = [r for r in report.results if r.model == COHORT]
    assert len(found) == 1, report.results
    return vars(found[0])


def reads(project: PgProject) -> int:
    """Scans of SOURCE the server has counted (sequential and index), once stats settle."""
    last = -1
    for _ in range(50):
        project.query("select pg_stat_clear_snapshot()")
        ((count,),) = project.query(
            "select coalesce(seq_scan, 0) + coalesce(idx_scan, 0) from pg_stat_user_tables "
            "where schemaname = 'main' and relname = 'hv_source'"
        )
        if count == last:
            return int(count)
        last = int(count)
        time.sleep(0.2)
    return last


@pytest.fixture
def project(pg: PgProject) -> PgProject:  # noqa: F811
    as_mirror_view(pg, [f"u-{i:05d}" for i in range(1000)])
    return pg


def test_the_model_is_read_once_per_sync(project: PgProject, emulator: Emulator) -> None:
    """A first sync, an unchanged re-run and a mirror run each scan the model's table once."""
    before = reads(project)
    first = cohort(sync(project, emulator))
    assert first["status"] == SYNCED and first["added"] == 1000
    after_first = reads(project)
    assert after_first - before == 1

    again = cohort(sync(project, emulator))
    assert again["status"] == SYNCED and again["requests"] == 0
    after_noop = reads(project)
    assert after_noop - after_first == 1

    set_source(project, [f"u-{i:05d}" for i in range(200, 1100)])
    mirror = cohort(sync(project, emulator))
    assert (mirror["status"], mirror["added"], mirror["removed"]) == (SYNCED, 100, 200)
    assert reads(project) - after_noop == 1
    assert emulator.members(COHORT) == {f"u-{i:05d}" for i in range(200, 1100)}


def test_a_model_changing_mid_run_is_sent_as_planned(
    project: PgProject, emulator: Emulator
) -> None:
    """1000 members; 300 leave and 600 join; while the run sends, the source shrinks to 50.
    The run sends exactly its plan (300 removed, 600 added), and the next run is judged by
    the guard on what the model has become."""
    first = cohort(sync(project, emulator))
    assert first["added"] == 1000
    planned = [f"u-{i:05d}" for i in range(300, 1600)]
    set_source(project, planned)
    emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=0.05))
    shrunk = threading.Event()

    def sent() -> int:
        return sum(1 for r in emulator.requests() if r.cohort_id == COHORT)

    before = sent()

    def shrink_once_sending() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sent() > before:
                set_source(project, planned[:50])
                shrunk.set()
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=shrink_once_sending)
    watcher.start()
    run = cohort(sync(project, emulator))
    watcher.join()
    assert shrunk.is_set()
    assert (run["status"], run["planned_add"], run["planned_remove"]) == (SYNCED, 600, 300)
    assert (run["added"], run["removed"]) == (600, 300)
    # The shrink landed while the run was sending, not after it: most requests came after.
    assert sent() - before > 10
    assert emulator.members(COHORT) == set(planned)

    emulator.set_faults(Faults())
    judged = cohort(sync(project, emulator))
    assert judged["status"] == GUARDED
    assert judged["planned_remove"] == len(planned) - 50
    assert emulator.members(COHORT) == set(planned)


def test_the_snapshot_is_gone_after_the_run(project: PgProject, emulator: Emulator) -> None:
    """The run-scoped table lives in the state schema only while its cohort syncs."""
    cohort(sync(project, emulator))
    left = project.query(
        "select table_name from information_schema.tables "
        "where left(table_name, 18) = 'moengage_snapshot_'"
    )
    assert left == []


def test_a_large_change_refreshes_the_planners_statistics(
    project: PgProject, emulator: Emulator
) -> None:
    """A mirror run soon after a first sync was planned as if the state were empty (never
    analyzed yet): a nested loop over every member. A run that changed much of the state
    analyzes it."""
    set_source(project, [f"u-{i:05d}" for i in range(12_000)])
    first = cohort(sync(project, emulator))
    assert first["added"] == 12_000
    ((manual,),) = project.query(
        "select analyze_count from pg_stat_user_tables where relname = 'moengage_cohort_members'"
    )
    assert manual >= 1

"""Bytes billed per cohort, on a warehouse whose jobs report them (BigQuery): a stand-in
engine (DuckDB billing every statement PER_JOB bytes) runs real cohort syncs against the
emulator. Every statement of a cohort's run, its checkpoints from the send threads included,
is billed to it, and the figure reaches the results file, the summary, the run row, `status`
and the HTML report. On an engine that bills nothing, none of them shows a cost."""

from __future__ import annotations

import contextlib
import io
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pytest
from rich.console import Console

from dbt_moengage.client import MoEngageClient
from dbt_moengage.cohorts import CohortSpec
from dbt_moengage.pipeline import CohortSync
from dbt_moengage.report import DRY_RUN, SYNCED, RunReport, byte_size, print_summary
from dbt_moengage.report.html import render_report
from dbt_moengage.report.progress import result_text
from dbt_moengage.report.status import print_status
from dbt_moengage.settings import MoEngageSettings, Secret
from dbt_moengage.state import StateStore, utcnow
from dbt_moengage.state.health import CohortStatus, StatusReport
from dbt_moengage.state.history import StateHistory
from dbt_moengage.state.schema import RUNS, StateKey, normalize_endpoint
from dbt_moengage.testing.emulator import Emulator, EmulatorConfig
from dbt_moengage.warehouse.duckdb import DuckDBWarehouse

WORKSPACE = "WS_BILLING"
KEY = "sk-billing-test-key"
PER_JOB = 100
UIDS = 3_000


class BillingDuckDB(DuckDBWarehouse):
    """DuckDB as a warehouse that bills PER_JOB bytes for every statement, each counted
    under the account it was billed to (kept apart from the engine's own books), with the
    threads it ran in and, for each run row written, the statements billed before it."""

    BILLS_BYTES = True

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.jobs: Counter[str] = Counter()
        self.threads: defaultdict[str, set[str]] = defaultdict(set)
        self.insert_members: Counter[str] = Counter()
        # (bytes_billed written, statements billed to the cohort before the row's delete)
        self.run_rows: list[tuple[int | None, int]] = []
        self._books = threading.Lock()
        self._where = threading.local()

    @contextlib.contextmanager
    def billing(self, account: str) -> Iterator[None]:
        before = getattr(self._where, "account", "")
        self._where.account = account
        try:
            with super().billing(account):
                yield
        finally:
            self._where.account = before

    def execute_sql(
        self,
        sql: str,
        params: Sequence[Any] = (),
        name: str = "statement",
        cohort: CohortSpec | None = None,
    ) -> Any:
        cursor = super().execute_sql(sql, params, name, cohort)
        account = getattr(self._where, "account", "")
        with self._books:
            if name == "insert_run":
                # save_run is a delete, then this insert: the row counts what came before.
                self.run_rows.append((params[-1], self.jobs[account] - 1))
            if name == "insert_members":
                self.insert_members[threading.current_thread().name] += 1
            self.jobs[account] += 1
            self.threads[account].add(threading.current_thread().name)
        self.charge(PER_JOB)
        return cursor

    def reset_books(self) -> None:
        with self._books:
            self.jobs.clear()
            self.threads.clear()
            self.insert_members.clear()
            self.run_rows.clear()


@pytest.fixture
def server() -> Iterator[Emulator]:
    config = EmulatorConfig(workspace_id=WORKSPACE, api_key=KEY, rate_limit_per_min=None)
    with Emulator(config) as emulator:
        yield emulator


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "billing.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute(f"create table main.aud as select 'u-' || i as uid from range({UIDS}) t(i)")
    return path


def cohort(db: Path) -> CohortSpec:
    return CohortSpec(
        model="aud",
        unique_id="model.unit.aud",
        relation_name=f'"{db.stem}"."main"."aud"',
        cohort_name="Aud",
        cohort_id="aud",
        description="billing test",
        uid_column="uid",
        mode="mirror",
        max_remove_fraction=1.0,
    )


def settings(server: Emulator) -> MoEngageSettings:
    # Small bodies: many requests in flight, so checkpoints come from several send threads.
    return MoEngageSettings(
        workspace_id=WORKSPACE,
        api_key=Secret(KEY),
        base_url=server.url,
        max_body_bytes=4_000,
        backoff_initial=0.01,
        backoff_max=0.05,
    )


def prepared(engine: DuckDBWarehouse) -> StateStore:
    state = StateStore(engine)
    assert state.prepare(create=True).ready
    return state


def sync(state: StateStore, db: Path, server: Emulator, run_id: str) -> CohortSync:
    """One real cohort run, as sync_destination makes it."""
    with MoEngageClient(settings(server)) as client:
        job = CohortSync(cohort(db), state.engine, state, client, settings(server), run_id)
        job.run(full_refresh=False)
    return job


def status_of(engine: DuckDBWarehouse, db: Path, server: Emulator) -> StatusReport:
    """What `status` and `report` read from the state for the cohort."""
    key = StateKey(normalize_endpoint(server.url), WORKSPACE)
    history = StateHistory(engine)
    runs = history.runs(key, 10)["aud"]
    found = CohortStatus(
        cohort(db), members=history.member_count(key, "aud"), last_run=runs[-1], runs=runs
    )
    return StatusReport(
        generated_at=utcnow(), state_schema="main", state_found=True, cohorts=[found]
    )


def printed(show: Callable[[Console], None], width: int) -> str:
    """What `show` prints on a console `width` columns wide."""
    out = io.StringIO()
    show(Console(file=out, width=width, color_system=None))
    return out.getvalue()


def test_every_job_of_a_cohort_is_billed_to_it(db: Path, server: Emulator) -> None:
    with BillingDuckDB(str(db)) as engine:
        state = prepared(engine)
        engine.reset_books()
        job = sync(state, db, server, "run-1")
        result = job.result
        assert result.status == SYNCED, result.error
        assert result.added == UIDS and result.requests > 3

        # Nothing of the run was billed to the run at large: the lock, the snapshot, the
        # plan, the checkpoints and the run rows were all the cohort's.
        assert set(engine.jobs) == {"model.unit.aud"}
        assert result.bytes_billed == PER_JOB * engine.jobs["model.unit.aud"]
        # The checkpoints came from the send threads, and each was billed to the cohort.
        assert sum(engine.insert_members.values()) > 0
        assert threading.current_thread().name not in engine.insert_members
        assert len(engine.threads["model.unit.aud"]) > 1

        # The run row holds what was billed before it was written (the first, 'running'
        # row, nothing yet); the result adds the row's own write and the lock's release.
        (running, _), (written, before) = engine.run_rows
        assert running is None
        assert written == PER_JOB * before
        assert 0 < written < result.bytes_billed
        rows = engine.conn.execute(f"select status, bytes_billed from main.{RUNS}").fetchall()
        assert rows == [(SYNCED, written)]

        # A second run on the same engine counts its own jobs only.
        engine.conn.execute("delete from main.aud where uid like 'u-1%'")
        engine.reset_books()
        second = sync(state, db, server, "run-2").result
        assert second.status == SYNCED and second.removed > 0, second.error
        assert set(engine.jobs) == {"model.unit.aud"}
        assert second.bytes_billed == PER_JOB * engine.jobs["model.unit.aud"]
        last_row = engine.run_rows[-1]
        assert last_row[0] == PER_JOB * last_row[1]

        found = status_of(engine, db, server)
        page = render_report(found)

    cost = byte_size(result.bytes_billed)
    # The results file and the summary.
    report = RunReport(run_id="run-1", started_at="", dry_run=False, results=[result])
    assert report.to_json()["cohorts"][0]["bytes_billed"] == result.bytes_billed
    assert "billed" in printed(lambda console: print_summary(report, console, None), 250)
    assert f"billed {cost}" in printed(lambda console: print_summary(report, console, None), 80)
    assert result_text(result).plain.endswith(f", billed {cost}")

    # status: the last run's bytes billed, in JSON and on the console, wide and narrow.
    assert found.to_json()["cohorts"][0]["last_run"]["bytes_billed"] == last_row[0]
    last_cost = byte_size(last_row[0])
    wide = printed(lambda console: print_status(found, console), 250)
    assert "billed" in wide and last_cost in wide
    assert f"billed {last_cost}" in printed(lambda console: print_status(found, console), 80)

    # The HTML report: each run's cost, the last run's, and their total over the runs shown.
    assert "<th>billed</th>" in page and "<th>last run billed</th>" in page
    assert f"billed <b>{byte_size(written + last_row[0])}</b> over the last 2 run(s)" in page


def test_a_dry_run_reports_what_planning_it_billed(db: Path, server: Emulator) -> None:
    with BillingDuckDB(str(db)) as engine:
        state = prepared(engine)
        engine.reset_books()
        job = CohortSync(cohort(db), engine, state, None, settings(server), "dry")
        result = job.dry_run()
        assert result.status == DRY_RUN, result.error
        assert set(engine.jobs) == {"model.unit.aud"}
        assert result.bytes_billed == PER_JOB * engine.jobs["model.unit.aud"] > 0
    assert result_text(result).plain.endswith(f", billed {byte_size(result.bytes_billed)}")


def test_an_engine_that_bills_nothing_shows_no_cost(db: Path, server: Emulator) -> None:
    with DuckDBWarehouse(str(db)) as engine:
        result = sync(prepared(engine), db, server, "run-1").result
        assert result.status == SYNCED, result.error
        assert result.bytes_billed is None
        rows = engine.conn.execute(f"select status, bytes_billed from main.{RUNS}").fetchall()
        assert rows == [(SYNCED, None)]
        found = status_of(engine, db, server)
        page = render_report(found)

    report = RunReport(run_id="run-1", started_at="", dry_run=False, results=[result])
    assert report.to_json()["cohorts"][0]["bytes_billed"] is None
    for width in (250, 80):
        assert "billed" not in printed(lambda console: print_summary(report, console, None), width)
        assert "billed" not in printed(lambda console: print_status(found, console), width)
    assert "billed" not in result_text(result).plain
    assert found.to_json()["cohorts"][0]["last_run"]["bytes_billed"] is None
    assert "<th>billed</th>" not in page and "last run billed" not in page
    assert "over the last" not in page


@pytest.mark.parametrize(
    ("count", "shown"),
    [
        (None, "-"),
        (0, "0 B"),
        (1_023, "1,023 B"),
        (1_024, "1.0 KB"),
        (10 * 1024**2, "10.0 MB"),  # BigQuery's least bill per query
        (12_900_000, "12.3 MB"),
        (1024**2 - 1, "1.0 MB"),  # never "1,024.0 KB"
        (5 * 1024**4, "5.0 TB"),
    ],
)
def test_bytes_read_as_bigquery_shows_them(count: int | None, shown: str) -> None:
    assert byte_size(count) == shown

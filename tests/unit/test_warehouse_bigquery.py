"""The BigQuery engine without a server: every statement as rendered, parameters, the
retry of DML that BigQuery aborts for a concurrent change, bytes billed, and messages.

The emulator the end-to-end tests use (tests/bigquery_emulator.py) has no collations,
reports no bytes billed and never aborts concurrent DML: what BigQuery does there is
driven here through the engine's seams (Jobs, DmlRetry) with a client that does it.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from google.api_core import exceptions as api_errors
from google.cloud import bigquery

from dbt_moengage import uids
from dbt_moengage.cohorts import CohortSpec
from dbt_moengage.errors import Interrupted
from dbt_moengage.state.schema import ALIASES, STATE_COLUMNS, StateKey
from dbt_moengage.state.store import StateStore
from dbt_moengage.warehouse import bigquery_jobs
from dbt_moengage.warehouse.bigquery import SQL, STATE_TYPES, WHITESPACE_SET, BigQueryWarehouse
from dbt_moengage.warehouse.bigquery_jobs import DmlRetry, Jobs, parameter
from dbt_moengage.warehouse.cancel import CANCELLED

KEY = StateKey("https://api-01.moengage.com", "WS_BQ")
COLUMN = "User Id"
CONFLICT = "Transaction is aborted due to concurrent update against table p.d.moengage_sync_locks"


def cohort(**changes: Any) -> CohortSpec:
    spec = CohortSpec(
        model="audience",
        unique_id="model.p.audience",
        relation_name="`proj`.`analytics`.`audience`",
        cohort_name=".Audience",
        cohort_id="audience",
        description="d",
        uid_column=COLUMN,
    )
    return spec if not changes else CohortSpec(**{**spec.__dict__, **changes})


class FakeJob:
    """A finished query job: its rows, its bytes billed, or the error BigQuery raised."""

    def __init__(self, rows: list[dict[str, Any]], billed: int | None, error: Exception | None):
        self.rows, self.total_bytes_billed, self.error = rows, billed, error
        self.session_info = type("Session", (), {"session_id": "session-1"})()

    def result(self, timeout: float | None = None, page_size: int | None = None) -> Any:
        if self.error is not None:
            raise self.error
        return [bigquery.Row(tuple(r.values()), {k: i for i, k in enumerate(r)}) for r in self.rows]


class FakeClient:
    """Records every job; answers from `answers` (sql fragment -> rows), failing the first
    `conflicts` jobs whose SQL holds `conflict_on` as BigQuery does under DML contention."""

    def __init__(self, conflicts: int = 0, conflict_on: str = "merge", billed: int = 0) -> None:
        self.jobs: list[tuple[str, Any]] = []
        self.conflicts, self.conflict_on, self.billed = conflicts, conflict_on, billed
        self.answers: dict[str, list[dict[str, Any]]] = {}

    def query(self, sql: str, job_config: Any = None, **kwargs: Any) -> FakeJob:
        self.jobs.append((sql, job_config))
        if self.conflict_on in sql.lower() and self.conflicts:
            self.conflicts -= 1
            return FakeJob([], self.billed, api_errors.BadRequest(CONFLICT))
        rows = next((rows for part, rows in self.answers.items() if part in sql), [])
        return FakeJob(rows, self.billed, None)


def engine(client: FakeClient, **jobs: Any) -> BigQueryWarehouse:
    retry = DmlRetry(sleep=lambda seconds: None)
    return BigQueryWarehouse(
        Jobs(client, location="EU", retry=retry, **jobs), "proj", "moengage_state", "EU"
    )


def rendered(name: str, spec: CohortSpec | None = None) -> str:
    wh = engine(FakeClient())
    extra = {"due": "1 = 1", "since": wh.AGO.format("?"), "snapshot": "`p`.`d`.`snap`"}
    return wh.format(name, spec, extra)


# -- every statement, as BigQuery gets it ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SQL))
def test_every_statement_renders_in_bigquery_terms(name: str) -> None:
    sql = rendered(name, cohort())
    # Identifiers in backticks: a double-quoted name would be a string literal here.
    assert '"' not in sql
    assert "%" not in sql, "BigQuery has no % operator (mod())"
    # No placeholder left unfilled, and uids only ever arrive as parameters.
    assert not re.search(r"\{[a-z_]+\}", sql)
    for table, alias in ALIASES.items():
        if f"{{{alias}}}" in SQL[name]:
            assert f"`proj`.`moengage_state`.`{table}`" in sql


def test_the_model_column_is_read_only_through_the_exact_text() -> None:
    """MoEngage compares uids as exact bytes; a column (or its dataset's default) may carry
    `und:ci`. Outside null checks and counts, the model's column appears only inside
    collate(cast(... as string), ''), which drops any collation: 'abc' never meets 'ABC'."""
    column = f"`{COLUMN}`"
    exact = f"collate(cast({column} as string), '')"
    for name in ("stats", "model_uids", "create_snapshot", "count_model", "add_delta", "plan"):
        sql = rendered(name, cohort())
        rest = sql.replace(exact, "EXACT")
        rest = re.sub(rf"{re.escape(column)} is (not )?null", "", rest)
        rest = rest.replace(f"count({column})", "")
        assert column not in rest, (name, rest)


def test_the_state_uid_is_read_only_through_the_exact_text() -> None:
    """The state tables are created in the state dataset, whose default collation they
    take: every statement that compares the state's uid strips it too."""
    for name in ("state_uids", "delete_members", "compact_run", "compact_members"):
        sql = rendered(name, cohort())
        # compact_members reads two rows' uids (`m`, `d`): each through the exact text.
        sql = re.sub(r"collate\([md]\.uid, ''\)", "collate(uid, '')", sql)
        assert "collate(uid, '')" in sql
        # What is left once the exact reads, the select's alias and the request's own uids
        # (the ARRAY parameter's) are taken out names no state uid.
        rest = sql.replace("collate(uid, '')", "EXACT").replace(" as uid", "")
        rest = rest.replace(SQL["json_uids"].replace(" as uid", ""), "REQUEST")
        assert re.search(r"(?<![.\w])uid\b", rest) is None, rest


def test_the_whitespace_set_is_the_uid_rule() -> None:
    codes = [int(n) for n in re.findall(r"\d+", WHITESPACE_SET)]
    assert "".join(map(chr, codes)) == uids.WHITESPACE


def test_inserts_cast_every_parameter_to_its_column_type() -> None:
    """A null parameter is a STRING on BigQuery: each value is cast to its column's type."""
    for name, table in (
        ("insert_run", "moengage_sync_runs"),
        ("insert_cohort", "moengage_cohorts"),
        ("insert_notified", "moengage_notifications"),
        ("insert_webhook_run", "moengage_webhook_runs"),
    ):
        sql = rendered(name)
        casts = re.findall(r"cast\(\? as (\w+)\)", sql)
        assert casts == [STATE_TYPES[kind] for _, kind, _ in STATE_COLUMNS[table]]


def test_the_state_dataset_is_made_in_the_profiles_project_and_location() -> None:
    assert rendered("create_schema") == (
        "create schema if not exists `proj`.`moengage_state` options(location = 'EU')"
    )


def test_identifiers_are_quoted_whatever_they_hold() -> None:
    wh = engine(FakeClient())
    assert wh.quote("a`b\\c") == "`a\\`b\\\\c`"
    assert wh.state_table("moengage_sync_locks") == "`proj`.`moengage_state`.`moengage_sync_locks`"


def test_resend_phases_use_mod() -> None:
    wh = engine(FakeClient())
    due = StateStore(wh).due(cohort(resend_after=7 * 86400), datetime(2026, 1, 1))
    assert "mod(farm_fingerprint(s.uid), 529200)" in due
    assert "unix_seconds(s.synced_at)" in due


# -- parameters --------------------------------------------------------------------------------


def test_parameters_are_typed_from_their_values() -> None:
    batch = parameter(["a", "B", "ä"])
    assert isinstance(batch, bigquery.ArrayQueryParameter)
    assert (batch.array_type, batch.values) == ("STRING", ["a", "B", "ä"])
    assert parameter(True).type_ == "BOOL"
    assert parameter(3).type_ == "INT64"
    assert parameter(2.5).type_ == "FLOAT64"
    assert (parameter(None).type_, parameter(None).value) == ("STRING", None)
    naive = parameter(datetime(2026, 1, 2, 3, 4, 5))
    assert naive.type_ == "TIMESTAMP"
    assert naive.value == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_checkpoints_bind_uids_as_one_array_parameter() -> None:
    client = FakeClient()
    wh = engine(client)
    awkward = ["it's", 'a"b', "back\\slash", "line\nbreak", "ABC", "abc"]
    StateStore(wh).record_added(cohort(), KEY, awkward, "run-1")
    sql, config = client.jobs[-1]
    assert "unnest(?)" in sql
    for uid in awkward:
        assert uid not in sql
    arrays = [p for p in config.query_parameters if isinstance(p, bigquery.ArrayQueryParameter)]
    assert [p.values for p in arrays] == [awkward]


def test_profile_job_settings_reach_every_job() -> None:
    client = FakeClient()
    wh = engine(client, priority="batch", maximum_bytes_billed=10**9, timeout_seconds=30)
    wh.one("state_version")
    _, config = client.jobs[-1]
    assert config.priority == bigquery.QueryPriority.BATCH
    assert config.maximum_bytes_billed == 10**9
    assert int(config.job_timeout_ms) == 30_000
    assert config.labels == {"dbt_moengage": "sync"}


# -- DML that BigQuery aborts for a concurrent change ------------------------------------------


def test_a_merge_aborted_for_a_concurrent_update_runs_again() -> None:
    client = FakeClient(conflicts=3, conflict_on="merge")
    wh = engine(client)
    wh.run("take_lock", (*KEY.params, "audience", "run-1", 120.0))
    merges = [sql for sql, _ in client.jobs if "merge" in sql.lower()]
    assert len(merges) == 4


def test_the_lock_is_taken_through_conflicts() -> None:
    """Two runners' MERGEs on the lock table: BigQuery aborts one, and it is tried again."""
    client = FakeClient(conflicts=2, conflict_on="merge")
    client.answers["select run_id, locked_at"] = [{"run_id": "run-1", "locked_at": None}]
    wh = engine(client)
    with StateStore(wh).lock(cohort(), KEY, "run-1", wait_seconds=0):
        pass
    assert sum("merge" in sql.lower() for sql, _ in client.jobs) == 3


def test_other_errors_and_exhausted_retries_are_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    retry = DmlRetry(attempts=3, sleep=sleeps.append)
    # The jitter (x0.5 to x1.5) at its middle: the pauses are the steps, which double.
    monkeypatch.setattr(bigquery_jobs.random, "random", lambda: 0.5)
    with pytest.raises(api_errors.BadRequest):
        retry.run(lambda: (_ for _ in ()).throw(api_errors.BadRequest(CONFLICT)))
    assert sleeps == [DmlRetry.first_pause, 2 * DmlRetry.first_pause]
    calls = []

    def not_a_conflict() -> None:
        calls.append(1)
        raise api_errors.BadRequest("Syntax error: Unexpected keyword")

    with pytest.raises(api_errors.BadRequest):
        DmlRetry(sleep=sleeps.append).run(not_a_conflict)
    assert calls == [1]


# -- bytes billed ------------------------------------------------------------------------------


def test_each_jobs_bytes_billed_are_charged_to_the_cohort_that_ran_it() -> None:
    client = FakeClient(billed=10_485_760)
    wh = engine(client)
    with wh.billing("model.p.audience"):
        wh.one("state_version")
        wh.one("state_version")
    wh.one("state_version")
    assert wh.billed("model.p.audience") == 2 * 10_485_760
    assert wh.billed("model.p.other") == 0


def test_a_failed_job_still_counts_what_it_billed() -> None:
    client = FakeClient(conflicts=1, conflict_on="merge", billed=100)
    wh = engine(client)
    with wh.billing("c"):
        wh.run("take_lock", (*KEY.params, "audience", "run-1", 120.0))
    assert wh.billed("c") == 200


# -- messages ----------------------------------------------------------------------------------


def test_the_byte_limit_is_named_with_the_way_out() -> None:
    wh = engine(FakeClient())
    error = api_errors.BadRequest(
        "Query exceeded limit for bytes billed: 1000000. 10485760 or higher required.\n\n"
        "Location: EU\nJob ID: dbt_moengage_123"
    )
    text = wh.explain(error)
    assert "maximum_bytes_billed" in text
    assert "Job ID" not in text


def test_unsupported_uid_types_are_refused_naming_the_column() -> None:
    class Catalog(FakeClient):
        def get_table(self, name: str) -> Any:
            assert name == "proj.analytics.audience"
            fields = [
                bigquery.SchemaField("User Id", "FLOAT"),
                bigquery.SchemaField("tags", "STRING", mode="REPEATED"),
                bigquery.SchemaField("n", "BIGNUMERIC"),
                bigquery.SchemaField("i", "INTEGER"),
            ]
            return type("Table", (), {"schema": fields})()

    wh = engine(Catalog())
    from dbt_moengage.errors import WarehouseError

    with pytest.raises(WarehouseError, match=r"'User Id' has type FLOAT64;.*as string\)"):
        wh.check_uid_column(cohort())
    with pytest.raises(WarehouseError, match=r"'tags' has type ARRAY<STRING>"):
        wh.check_uid_column(cohort(uid_column="tags"))
    assert wh.check_uid_column(cohort(uid_column="N")).type == "BIGNUMERIC"
    assert wh.check_uid_column(cohort(uid_column="i")).type == "INT64"


# -- a stop cancels the job reading a model (issue "Hardening, round three", item 2) -----------


class RunningJob(FakeJob):
    """A job that runs until cancelled; then waiting for its result raises, as BigQuery's
    job does once stopped."""

    def __init__(self) -> None:
        super().__init__([], 0, None)
        self.cancels = threading.Event()

    def cancel(self) -> bool:
        self.cancels.set()
        return True

    def result(self, timeout: float | None = None, page_size: int | None = None) -> Any:
        if not self.cancels.wait(30):
            raise AssertionError("never cancelled")
        raise api_errors.BadRequest("Job execution was cancelled: User requested cancellation")


def test_a_stop_cancels_the_job_reading_the_model() -> None:
    class Slow(FakeClient):
        def __init__(self) -> None:
            super().__init__()
            self.running: list[RunningJob] = []

        def query(self, sql: str, job_config: Any = None, **kwargs: Any) -> FakeJob:
            if "create or replace table" not in sql:
                return super().query(sql, job_config, **kwargs)
            self.jobs.append((sql, job_config))
            self.running.append(RunningJob())
            return self.running[-1]

    client = Slow()
    wh = engine(client)
    stop = threading.Event()
    with wh.cancelled_on(stop):
        threading.Timer(0.3, stop.set).start()
        with pytest.raises(Interrupted) as caught:
            wh.execute_sql("create or replace table t as select 1", (), "reading_the_model")
        assert str(caught.value) == CANCELLED
        (job,) = client.running
        assert job.cancels.is_set()
        # Not a read: it runs, and nothing cancels it.
        wh.execute_sql("insert into t values (1)", (), "insert_members").close()
    assert wh.jobs.running is None
    assert [sql for sql, _ in client.jobs][-1] == "insert into t values (1)"

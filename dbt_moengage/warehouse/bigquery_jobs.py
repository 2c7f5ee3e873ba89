"""BigQuery's query jobs: every statement the BigQuery engine runs is one job (`Jobs`)
that carries the profile's priority, maximum_bytes_billed and job timeout, and reports
the bytes it billed. Parameters are typed from their Python values (`parameter`); DML
that BigQuery aborted for a concurrent change to its table runs again (`DmlRetry`); a
job's rows are read through a DB-API-like cursor (`JobCursor`).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from google.api_core import exceptions as api_errors
from google.cloud import bigquery

JOB_LABELS = {"dbt_moengage": "sync"}

# BigQuery's words for "another job changed this table first": the job was aborted and
# can run again (DML concurrency: https://cloud.google.com/bigquery/docs/data-manipulation-language).
CONFLICT_MARKS = ("concurrent update", "could not serialize access", "transaction is aborted")


@dataclasses.dataclass
class DmlRetry:
    """Mutating DML that BigQuery aborted for a concurrent change to its table runs again,
    after a jittered pause that doubles, up to `attempts` times in all.

    BigQuery runs at most a couple of mutating DML jobs per table at once, and aborts one
    of two that conflict; the emulator the tests use never does, so a test drives this
    class with a client that does (tests/unit/test_warehouse_bigquery.py).
    """

    attempts: int = 8
    first_pause: float = 0.5
    max_pause: float = 8.0
    sleep: Callable[[float], None] = time.sleep

    @staticmethod
    def conflict(exc: BaseException) -> bool:
        """Whether BigQuery aborted the job for a concurrent change (worth running again)."""
        text = str(exc).lower()
        return isinstance(exc, api_errors.GoogleAPICallError) and any(
            mark in text for mark in CONFLICT_MARKS
        )

    def run(self, job: Callable[[], Any]) -> Any:
        """`job()`, run again while BigQuery aborts it for a conflict."""
        pause = self.first_pause
        for attempt in range(1, self.attempts + 1):
            try:
                return job()
            except api_errors.GoogleAPICallError as exc:
                if attempt == self.attempts or not self.conflict(exc):
                    raise
            self.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, self.max_pause)
        raise AssertionError("unreachable")  # pragma: no cover


@dataclasses.dataclass
class Jobs:
    """Runs each statement as one query job with the profile's job settings, and reports
    its bytes billed to `charge`."""

    client: Any
    location: str | None = None
    priority: str | None = None
    maximum_bytes_billed: int | None = None
    timeout_seconds: float | None = None
    retry: DmlRetry = dataclasses.field(default_factory=DmlRetry)
    charge: Callable[[int], None] = lambda nbytes: None
    # The job `query` is waiting for, if any (what a stop cancels).
    running: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def config(self, params: Sequence[Any], session: str | None = None) -> Any:
        """The job's configuration: its parameters and the profile's job settings."""
        config = bigquery.QueryJobConfig(
            query_parameters=[parameter(value) for value in params],
            labels=dict(JOB_LABELS),
            use_legacy_sql=False,
        )
        if self.priority == "batch":
            config.priority = bigquery.QueryPriority.BATCH
        if self.maximum_bytes_billed:
            config.maximum_bytes_billed = int(self.maximum_bytes_billed)
        if self.timeout_seconds:
            config.job_timeout_ms = int(self.timeout_seconds * 1000)
        if session is not None:
            config.connection_properties = [bigquery.ConnectionProperty("session_id", session)]
        return config

    def query(self, sql: str, params: Sequence[Any], session: str | None = None) -> Any:
        """Run the statement to its end; the finished job (DML conflicts run again)."""

        def once() -> Any:
            job = self.client.query(
                sql,
                job_config=self.config(params, session),
                location=self.location,
                job_id_prefix="dbt_moengage_",
            )
            self.running = job
            try:
                job.result(timeout=self.timeout_seconds)
            finally:
                self.running = None
                self.charge(int(getattr(job, "total_bytes_billed", None) or 0))
            return job

        return self.retry.run(once)

    def open_session(self) -> str:
        """A new session, in a transaction: its id (the statements that follow pass it)."""
        config = self.config(())
        config.create_session = True
        job = self.client.query("begin transaction", job_config=config, location=self.location)
        job.result(timeout=self.timeout_seconds)
        return str(job.session_info.session_id)


def parameter(value: Any) -> Any:
    """A positional query parameter typed from its Python value: a list is an ARRAY<STRING>
    (a request's uids), a naive datetime a TIMESTAMP in UTC; null is a STRING (casts in
    the SQL give it its column's type)."""
    if isinstance(value, list | tuple):
        return bigquery.ArrayQueryParameter(None, "STRING", [str(v) for v in value])
    if isinstance(value, bool):
        return bigquery.ScalarQueryParameter(None, "BOOL", value)
    if isinstance(value, int):
        return bigquery.ScalarQueryParameter(None, "INT64", value)
    if isinstance(value, float):
        return bigquery.ScalarQueryParameter(None, "FLOAT64", value)
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=UTC)
        return bigquery.ScalarQueryParameter(None, "TIMESTAMP", when)
    return bigquery.ScalarQueryParameter(None, "STRING", None if value is None else str(value))


def _plain(value: Any) -> Any:
    """A value as the other engines return it: timestamps naive in UTC."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


class JobCursor:
    """A DB-API-like cursor over one query job (what Engine.execute_sql expects), run on
    the engine's session `session` (None: outside a transaction), read `page_rows` rows
    a page."""

    def __init__(self, jobs: Jobs, session: str | None, page_rows: int) -> None:
        self.jobs = jobs
        self.session = session
        self.page_rows = page_rows
        self.rows: Iterator[Any] = iter(())

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        job = self.jobs.query(sql, params, self.session)
        self.rows = iter(job.result(page_size=self.page_rows))

    def fetchone(self) -> Any:
        row = next(self.rows, None)
        return None if row is None else tuple(_plain(v) for v in row.values())

    def fetchmany(self, size: int) -> list[Any]:
        batch = []
        for row in self.rows:
            batch.append(tuple(_plain(v) for v in row.values()))
            if len(batch) >= size:
                break
        return batch

    def fetchall(self) -> list[Any]:
        return [tuple(_plain(v) for v in row.values()) for row in self.rows]

    def close(self) -> None:
        self.rows = iter(())

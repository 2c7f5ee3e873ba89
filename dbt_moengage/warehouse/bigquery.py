"""BigQuery: cohort models and sync state in the user's BigQuery project.

The client is opened by dbt-bigquery's own connection manager, so every profile `method`
dbt supports (oauth, service-account, service-account-json, oauth-secrets, impersonation)
works here, with the profile's project, location and api_endpoint. Every statement is one
query job (`Jobs`) that carries the profile's priority, maximum_bytes_billed and job
timeout, and reports its bytes billed: the sync shows what each cohort cost.

Checkpoints bind a request's uids as one ARRAY<STRING> parameter, never pasted into SQL.
uids compare as exact bytes: `collate(..., '')` removes a collation that a column or the
dataset's default (`und:ci`) would bring, on the model's side and the state's. The cohort
lock is a row taken with MERGE on BigQuery's clock and beaten from the run's heartbeat;
BigQuery aborts one of two mutating DML jobs that touch a table at once, so DML that
conflicts is tried again (`DmlRetry`). A full refresh's delete and insert commit together
in a multi-statement transaction, on one session per engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from google.api_core import exceptions as api_errors
from google.auth import exceptions as auth_errors
from google.cloud import bigquery

from .. import uids
from ..cohorts import CohortSpec
from ..errors import ProfileError, RelationMissing, WarehouseError
from ..state.locks import HeldLock, row_lock
from ..state.schema import (
    COHORTS,
    NOTIFICATIONS,
    RUNS,
    STATE_COLUMNS,
    STATE_TABLES,
    WEBHOOK_RUNS,
    StateKey,
    state_ddl,
)
from ..state.sql import STATE_SQL, bigquery_compact_members, exact_state_sql
from .engine import (
    MODEL_SQL,
    OUTER_ANTI_JOINS,
    Engine,
    UidColumn,
    missing_column,
    snapshot_name,
    trimmed_uid_sql,
    unusable_type,
)
from .profiles import ProfileTarget, open_handle
from .redact import redact_path

# uid column types that cast to text without losing what MoEngage matches on (the REST
# API's legacy names first). FLOAT64 would print 1e+20; BYTES, DATE and the rest are no uid.
TEXT_TYPES = {"STRING": "STRING"}
NUMBER_TYPES = {
    "INTEGER": "INT64",
    "INT64": "INT64",
    "NUMERIC": "NUMERIC",
    "BIGNUMERIC": "BIGNUMERIC",
    "BIGDECIMAL": "BIGNUMERIC",
}
# The REST API's legacy type names, as SQL spells them (for messages).
SQL_NAMES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "RECORD": "STRUCT"}
JOB_LABELS = {"dbt_moengage": "sync"}
# The state tables' types; the dbt package's bigquery__ variant uses the same.
STATE_TYPES = {"string": "STRING", "timestamp": "TIMESTAMP", "bigint": "INT64", "boolean": "BOOL"}

# The one uid rule (dbt_moengage/uids.py). A collation is dropped with the empty
# specification; the whitespace set is built from its code points: a BigQuery string
# literal holds no raw line break, and escapes in it are not read alike everywhere.
_EXACT = "collate({}, '')"
_TEXT = _EXACT.format("cast({col} as string)")
WHITESPACE_SET = (
    "code_points_to_string([" + ", ".join(str(ord(ch)) for ch in uids.WHITESPACE) + "])"
)
_TRIMMED = f"trim({_TEXT}, {WHITESPACE_SET})"


def _typed_values(table: str) -> str:
    """`values (cast(? as T), ...)` for a state table: a null parameter has no type of its
    own on BigQuery, so each is cast to its column's."""
    return ", ".join(f"cast(? as {STATE_TYPES[kind]})" for _, kind, _ in STATE_COLUMNS[table])


def _insert(table: str, alias: str) -> str:
    columns = ", ".join(name for name, _, _ in STATE_COLUMNS[table])
    return f"insert into {{{alias}}} ({columns}) values ({_typed_values(table)})"


SQL: dict[str, str] = {
    **MODEL_SQL,
    **STATE_SQL,
    **exact_state_sql(_EXACT),
    **state_ddl(STATE_TYPES),
    **trimmed_uid_sql(_TEXT, _TRIMMED),
    "stats": f"""
        select count(*), count(*) - count({{col}}),
            countif({{col}} is not null and {_TRIMMED} = ''),
            countif({_TRIMMED} <> '' and {_TRIMMED} <> {_TEXT})
        from {{relation}}""",
    **OUTER_ANTI_JOINS,
    # A request's uids: one ARRAY<STRING> parameter (Engine.uid_batch).
    "json_uids": "select uid from unnest(?) as uid",
    # BigQuery's DELETE takes no USING.
    "compact_members": bigquery_compact_members(_EXACT.format("{}.uid")),
    "insert_run": _insert(RUNS, "runs"),
    "insert_cohort": _insert(COHORTS, "cohorts"),
    "insert_notified": _insert(NOTIFICATIONS, "notifications"),
    "insert_webhook_run": _insert(WEBHOOK_RUNS, "webhook_runs"),
    "insert_version": (
        "insert into {version} (version, upgraded_at, runner) "
        "values (cast(? as INT64), cast(? as TIMESTAMP), cast(? as STRING))"
    ),
}

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


class _Cursor:
    """A DB-API-like cursor over one query job (what Engine.execute_sql expects)."""

    def __init__(self, engine: BigQueryWarehouse) -> None:
        self.engine = engine
        self.rows: Iterator[Any] = iter(())

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        job = self.engine.jobs.query(sql, params, self.engine.session)
        self.rows = iter(job.result(page_size=self.engine.page_rows))

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


class BigQueryWarehouse(Engine):
    """Reads cohort models from, and keeps sync state in, BigQuery."""

    engine = "bigquery"
    BILLS_BYTES: ClassVar[bool] = True
    SQL: ClassVar[dict[str, str]] = SQL
    STATE_TYPES: ClassVar[dict[str, str]] = STATE_TYPES
    EPOCH: ClassVar[str] = "unix_seconds({})"
    # farm_fingerprint is a signed 64-bit number; mod() keeps its sign, and a negative
    # phase spreads re-sends as well as a positive one.
    UID_HASH: ClassVar[str] = "farm_fingerprint({})"
    MOD: ClassVar[str] = "mod({}, {})"
    NOW: ClassVar[str] = "current_timestamp()"
    # Each beat is a query and a DML job (billed at BigQuery's 10 MB minimum each).
    QUOTA_BEAT_SECONDS: ClassVar[float | None] = 10.0
    AGO: ClassVar[str] = (
        "timestamp_sub(current_timestamp(), interval cast({} * 1000 as int64) millisecond)"
    )
    ERRORS: ClassVar[tuple[type[BaseException], ...]] = (
        api_errors.GoogleAPIError,
        auth_errors.GoogleAuthError,
        TimeoutError,
    )

    def __init__(
        self,
        jobs: Jobs,
        project: str,
        state_schema: str,
        location: str | None = None,
        page_rows: int = 50_000,
    ) -> None:
        self.jobs = jobs
        jobs.charge = self.charge
        self.conn = jobs.client
        self.project = project
        self.state_schema = state_schema
        self.location = location
        self.page_rows = page_rows
        # The session of the engine's transactions (one per engine, opened on first use).
        self.session: str | None = None
        self._session_id: str | None = None

    @classmethod
    def from_profile(
        cls,
        target: ProfileTarget,
        project_dir: Path,
        *,
        state_schema: str | None = None,
        read_only: bool = False,
        wait_seconds: float = 0.0,
    ) -> BigQueryWarehouse:
        """Connect with the dbt-bigquery profile target, as dbt connects."""
        credentials = target.credentials
        project = str(credentials.database or "")
        dataset = state_schema or str(credentials.schema or "")
        if not project or not dataset:
            raise ProfileError(f"{target.where}: `project` and `dataset` are required for BigQuery")
        priority = getattr(credentials.priority, "value", credentials.priority)
        jobs = Jobs(
            client=open_client(target),
            location=credentials.location,
            priority=str(priority).lower() if priority else None,
            maximum_bytes_billed=credentials.maximum_bytes_billed,
            timeout_seconds=credentials.job_execution_timeout_seconds,
        )
        engine = cls(jobs, project, dataset, location=credentials.location)
        engine.read_only = read_only
        return engine

    # -- names -----------------------------------------------------------------------------

    def quote(self, identifier: str) -> str:
        """A BigQuery identifier in backticks (a backtick inside escaped)."""
        return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"

    def quote_column(self, name: str) -> str:
        """Column names quote like any identifier (a double-quoted name is a string here)."""
        return self.quote(name)

    def state_table(self, name: str) -> str:
        """`project`.`dataset`.`table`."""
        return f"{self.quote(self.project)}.{self.quote(self.state_schema)}.{self.quote(name)}"

    def format(
        self, name: str, cohort: CohortSpec | None = None, extra: Mapping[str, str] = {}
    ) -> str:
        """As Engine.format; the state dataset is made in the project, at the location."""
        if name == "create_schema":
            where = f"{self.quote(self.project)}.{self.quote(self.state_schema)}"
            options = f" options(location = '{self.location}')" if self.location else ""
            return f"create schema if not exists {where}{options}"
        return super().format(name, cohort, extra)

    # -- statements ------------------------------------------------------------------------

    def cursor(self) -> Any:
        """A cursor over one query job."""
        return _Cursor(self)

    def uid_batch(self, batch: Sequence[str]) -> Any:
        """A request's uids as one ARRAY<STRING> parameter."""
        return list(batch)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """The block's statements run in one multi-statement transaction, on the engine's
        session: they commit together or not at all."""
        with self.statements:
            try:
                if self._session_id is None:
                    self._session_id = self.jobs.open_session()
                else:
                    self.jobs.query("begin transaction", (), self._session_id)
            except self.ERRORS as exc:
                raise WarehouseError(f"begin failed: {self.explain(exc)}") from None
            self.session = self._session_id
            try:
                yield
            except BaseException:
                with contextlib.suppress(WarehouseError):
                    self.execute_sql("rollback transaction", (), "rollback").close()
                raise
            finally:
                self.session = None
            try:
                self.jobs.query("commit transaction", (), self._session_id)
            except self.ERRORS as exc:
                raise WarehouseError(f"commit failed: {self.explain(exc)}") from None

    def cancel(self, running: Any) -> None:
        """Cancel the query job the engine is waiting for (`Jobs.running`; statements run
        one at a time): BigQuery stops it, and waiting for its result raises. A job not yet
        created is cancelled by the next call (`CANCEL_AGAIN_SECONDS`)."""
        job = self.jobs.running
        if job is not None:
            job.cancel()

    def explain(self, exc: BaseException) -> str:
        """BigQuery's message on one line, without its job trailer, URLs redacted, and what
        to change when the profile's byte limit stopped the job."""
        message = getattr(exc, "message", None) or str(exc)
        text = " ".join(str(message).split("\n\nLocation:")[0].split())
        if "bytes billed" in text.lower() and "limit" in text.lower():
            text += (
                "; the profile's maximum_bytes_billed stopped the job: raise it, or make the "
                "model cheaper to read (partitioning, fewer columns)"
            )
        return redact_path(text)

    # -- the catalog -----------------------------------------------------------------------

    def state_columns(self) -> dict[str, set[str]]:
        """State tables present in the state dataset, with their columns (metadata calls,
        which bill nothing)."""
        dataset = f"{self.project}.{self.state_schema}"
        try:
            names = {t.table_id.lower(): t.table_id for t in self.conn.list_tables(dataset)}
            found: dict[str, set[str]] = {}
            for table in STATE_TABLES:
                if table in names:
                    schema = self.conn.get_table(f"{dataset}.{names[table]}").schema
                    found[table] = {field.name.lower() for field in schema}
            return found
        except api_errors.NotFound:
            return {}
        except self.ERRORS as exc:
            raise WarehouseError(
                f"cannot list the state tables in {dataset}: {self.explain(exc)}"
            ) from None

    def check_uid_column(self, cohort: CohortSpec) -> UidColumn:
        """The uid column from the model's table or view metadata (no query, no bytes
        billed); refuse types that do not cast to a uid cleanly."""
        name = cohort.relation_name.replace("`", "")
        try:
            schema = self.conn.get_table(name).schema
        except api_errors.NotFound:
            raise RelationMissing(
                f"model '{cohort.model}': relation {cohort.relation_name} does not exist or "
                f"cannot be read: build it with `dbt build --select {cohort.model}` and grant "
                "the runner roles/bigquery.dataViewer on its dataset"
            ) from None
        except self.ERRORS as exc:
            raise WarehouseError(
                f"model '{cohort.model}': cannot read {cohort.relation_name}: {self.explain(exc)}"
            ) from None
        by_name = {field.name.lower(): field for field in schema}
        field = by_name.get(cohort.uid_column.lower())
        if field is None:
            raise missing_column(cohort, (f.name for f in schema))
        kind = str(field.field_type).upper()
        if field.mode == "REPEATED":
            raise unusable_type(cohort, f"ARRAY<{SQL_NAMES.get(kind, kind)}>", "string")
        if kind not in TEXT_TYPES and kind not in NUMBER_TYPES:
            raise unusable_type(cohort, SQL_NAMES.get(kind, kind), "string")
        return UidColumn(name=field.name, type=TEXT_TYPES.get(kind) or NUMBER_TYPES[kind])

    # -- the lock, the snapshot ------------------------------------------------------------

    def cohort_lock(
        self,
        cohort: CohortSpec,
        key: StateKey,
        run_id: str,
        wait_seconds: float,
        stop: threading.Event | None = None,
    ) -> AbstractContextManager[HeldLock]:
        """The lock row, taken by MERGE on BigQuery's clock, beaten from the run's heartbeat
        and checked before each checkpoint (runners on other machines share it)."""
        return row_lock(self, cohort, key, run_id, wait_seconds, stop, self.heartbeat())

    def open_beside(self) -> BigQueryWarehouse:
        """Another engine on the same client (HTTP, thread-safe): the heartbeat's statements
        never wait behind this engine's."""
        beside = BigQueryWarehouse(
            dataclasses.replace(self.jobs), self.project, self.state_schema, self.location
        )
        beside.lock_stale_seconds = self.lock_stale_seconds
        return beside

    def snapshot_table(self, cohort: CohortSpec, key: StateKey) -> str | None:
        """A table in the state dataset that expires in a day if a killed run leaves it; a
        read-only run (a dry run) reads the model each time."""
        return None if self.read_only else self.state_table(snapshot_name(key, cohort))

    def create_snapshot(self, table: str, select: str) -> list[str]:
        """Replaced whole by the cohort's next run; gone within a day otherwise."""
        expires = "timestamp_add(current_timestamp(), interval 1 day)"
        return [
            f"create or replace table {table} options(expiration_timestamp = {expires}) as {select}"
        ]

    def close(self) -> None:
        """End the transactions' session, if one was opened (it would expire anyway)."""
        self.close_heartbeat()
        if self._session_id is not None:
            with contextlib.suppress(*self.ERRORS):
                self.jobs.query("call BQ.ABORT_SESSION()", (), self._session_id)
            self._session_id = None


def open_client(target: ProfileTarget) -> Any:
    """A google-cloud-bigquery client for the profile target, opened by dbt-bigquery."""
    from dbt.adapters.bigquery.connections import BigQueryConnectionManager

    return open_handle(target, BigQueryConnectionManager, lambda exc: _failure(target, exc))


def _secrets(credentials: Any) -> list[str]:
    """The values of dbt-bigquery's secret fields that are set."""
    keyfile = credentials.keyfile_json or {}
    values = (
        credentials.token,
        credentials.refresh_token,
        credentials.client_secret,
        keyfile.get("private_key"),
        keyfile.get("private_key_id"),
    )
    return [str(value) for value in values if value]


def _failure(target: ProfileTarget, exc: BaseException) -> str:
    """What went wrong opening the client, the settings to check, and no secret."""
    credentials = target.credentials
    text = " ".join(str(exc).split())
    for secret in _secrets(credentials):
        for line in secret.splitlines() or [secret]:
            if len(line.strip()) >= 4:
                text = text.replace(line.strip(), "***")
    method = getattr(credentials.method, "value", credentials.method)
    return (
        f"{target.where}: cannot open BigQuery for project '{credentials.database}' "
        f"(method {method}): {redact_path(text)}; check method and its credentials "
        "(keyfile, keyfile_json, token, refresh_token, impersonate_service_account), project "
        "and location"
    )

"""BigQuery: cohort models and sync state in the user's BigQuery project.

The client is opened by dbt-bigquery's own connection manager (bigquery_connect.py), so
every profile `method` dbt supports works here, with the profile's project, location and
api_endpoint. Every statement is one query job (bigquery_jobs.py) that carries the
profile's priority, maximum_bytes_billed and job timeout, and reports its bytes billed:
the sync shows what each cohort cost.

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
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from google.api_core import exceptions as api_errors
from google.auth import exceptions as auth_errors

from .. import uids
from ..cohorts import CohortSpec
from ..errors import RelationMissing, WarehouseError
from ..state.schema import COHORTS, NOTIFICATIONS, RUNS, STATE_COLUMNS, STATE_TABLES, WEBHOOK_RUNS
from ..state.sql import bigquery_compact_members, state_sql
from .audience import UidColumn, find_uid_column, unreadable, unusable_type
from .bigquery_connect import open_client
from .bigquery_jobs import JobCursor, Jobs
from .engine import Engine
from .profiles import ProfileTarget
from .redact import redact_path
from .sql import MODEL_SQL, OUTER_ANTI_JOINS, trimmed_uid_sql

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
    **state_sql(STATE_TYPES, _EXACT),
    **trimmed_uid_sql(_TEXT, _TRIMMED, "countif({})"),
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
        project, dataset = target.state_location(
            state_schema, "`project` and `dataset`", "BigQuery"
        )
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
        """A cursor over one query job, on the transaction's session while there is one."""
        return JobCursor(self.jobs, self.session, self.page_rows)

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
            raise unreadable(cohort, self.explain(exc)) from None
        field = find_uid_column(cohort, schema, lambda f: str(f.name))
        kind = str(field.field_type).upper()
        if field.mode == "REPEATED":
            raise unusable_type(cohort, f"ARRAY<{SQL_NAMES.get(kind, kind)}>", "string")
        if kind not in TEXT_TYPES and kind not in NUMBER_TYPES:
            raise unusable_type(cohort, SQL_NAMES.get(kind, kind), "string")
        return UidColumn(name=field.name, type=TEXT_TYPES.get(kind) or NUMBER_TYPES[kind])

    # -- the heartbeat, the snapshot -------------------------------------------------------

    def open_beside(self) -> BigQueryWarehouse:
        """Another engine on the same client (HTTP, thread-safe): the heartbeat's statements
        never wait behind this engine's. It beats the lock rows, taken by MERGE on
        BigQuery's clock and checked before each checkpoint (runners on other machines
        share them)."""
        beside = BigQueryWarehouse(
            dataclasses.replace(self.jobs), self.project, self.state_schema, self.location
        )
        beside.lock_stale_seconds = self.lock_stale_seconds
        return beside

    def create_snapshot(self, table: str, select: str) -> list[str]:
        """A table in the state dataset that expires in a day if a killed run leaves it:
        replaced whole by the cohort's next run; gone within a day otherwise."""
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

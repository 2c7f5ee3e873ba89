"""Stage 3: the interface every warehouse engine implements (DuckDB, Snowflake, Postgres,
BigQuery).

An engine is one DB-API connection to the user's warehouse plus the SQL that differs
between warehouses, kept beside the engine: how to read a model's uids, the anti-joins,
how to unpack a request's uids from one JSON parameter, how to read a timestamp and hash
a uid, its type names. The state stage (dbt_moengage/state/) runs its flow through this
interface; the sync reads audiences through it. Statements are written with `?`
parameters; an engine whose driver wants another style converts them in `render`.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Self

import orjson

from .. import uids
from ..cohorts import CohortSpec
from ..errors import Interrupted, WarehouseError
from ..interrupt import when_stopped

if TYPE_CHECKING:
    from ..state.locks import HeldLock
    from ..state.schema import StateKey

DEFAULT_FETCH_ROWS = 50_000

# What each distinct value of a model's uid column is in the snapshot (see Engine.snapshot).
VALID, NULL_UID, BLANK_UID, PADDED_UID = "valid", "null", "blank", "padded"

# Statements on the model alone, the same on every engine.
MODEL_SQL: dict[str, str] = {
    # Postgres requires the subquery's alias (`m`).
    "count_model": "select count(*) from ({model_uids}) m",
    # The uids to send, from the snapshot while there is one, within max_uid_length.
    "cohort_uids": "{model_uids}",
    # The valid uids longer than a limit (distinct, their rows, one of them), from the
    # snapshot or, without one, from the same grouping of the model.
    "long_uids": f"""
        select count(*), coalesce(sum(n), 0), min(uid) from {{audience}} a
        where kind = '{VALID}' and length(uid) > ?""",
    "create_schema": "create schema if not exists {schema}",
    # The snapshot's rows are the column's distinct values, each with its row count `n`.
    "snapshot_stats": f"""
        select coalesce(sum(n), 0),
            coalesce(sum(case when kind = '{NULL_UID}' then n else 0 end), 0),
            coalesce(sum(case when kind = '{BLANK_UID}' then n else 0 end), 0),
            coalesce(sum(case when kind = '{PADDED_UID}' then n else 0 end), 0)
        from {{snapshot}}""",
    "drop_snapshot": "drop table if exists {snapshot}",
}


# The statements that read a cohort's model, or join it with the state: minutes on a large
# model, and nothing a stopped run needs, so a stop cancels them (`Engine.cancelled_on`).
# Writes are never cancelled (checkpoints, run rows, locks, dropping the snapshot): what
# MoEngage accepted is still recorded, and each run row says how its run ended.
READS = frozenset(
    {
        "reading_the_model",
        "stats",
        "snapshot_stats",
        "count_model",
        "cohort_uids",
        "long_uids",
        "plan",
        "model_uids",
        "add_delta",
        "resend_delta",
        "rename_members",
        "remove_delta",
    }
)
# Once stopped, a read still running is cancelled again this often: a query the driver had
# not yet sent when the first cancel came (a BigQuery job being created) is caught by the next.
CANCEL_AGAIN_SECONDS = 0.5
CANCELLED = "the run was interrupted: the warehouse query reading the model was cancelled"


# The anti-joins as outer joins, for engines that plan them better than NOT EXISTS
# (Snowflake, BigQuery).
OUTER_ANTI_JOINS: dict[str, str] = {
    "add_delta": """
        select m.uid from ({model_uids}) m
        left join ({state_uids}) s on m.uid = s.uid where s.uid is null""",
    "remove_delta": """
        select s.uid from ({state_uids}) s
        left join ({model_uids}) m on s.uid = m.uid where m.uid is null""",
}


def trimmed_uid_sql(text: str, trimmed: str) -> dict[str, str]:
    """The model's uids and its snapshot for an engine whose exact text of a uid is `text`
    and whose trim of the uid rule's whitespace is `trimmed` (`{col}` the column): a uid is
    sent when not null, not empty, and equal to its trim (dbt_moengage/uids.py)."""
    valid = f"{{col}} is not null and {text} <> '' and {trimmed} = {text}"
    kind = f"""case when {{col}} is null then '{NULL_UID}' when {trimmed} = '' then '{BLANK_UID}'
    when {trimmed} <> {text} then '{PADDED_UID}' else '{VALID}' end"""
    return {
        **snapshot_sql(text, kind),
        "model_uids": f"select distinct {text} as uid from {{relation}} where {valid}",
    }


def snapshot_sql(text: str, kind: str) -> dict[str, str]:
    """An engine's snapshot statements, from its exact text of a uid (`{col}` is the column)
    and its `kind` expression (a CASE giving VALID, NULL_UID, BLANK_UID or PADDED_UID).

    `create_snapshot` is the select the engine wraps in its own CREATE: one read of the
    model, grouped by the exact text of each value. `snapshot_uids` stands in for the
    model's uids in every other statement while the snapshot exists.
    """
    exact_uid = text.replace("{col}", "uid")
    return {
        "create_snapshot": (
            f"select uid, n, {kind.replace('{col}', 'uid')} as kind from ("
            f"select {text} as uid, count(*) as n from {{relation}} group by 1) r"
        ),
        "snapshot_uids": f"select {exact_uid} as uid from {{snapshot}} where kind = '{VALID}'",
    }


@dataclass(frozen=True)
class AudienceStats:
    """Rows of the model's uid column that cannot be sent: null, blank or padded."""

    rows: int
    nulls: int
    empties: int
    padded: int = 0
    # Rows whose uid is longer than the cohort's max_uid_length.
    too_long: int = 0

    def dropped(self, distinct: int) -> dict[str, int]:
        """Dropped rows by reason, given the number of distinct uids to send."""
        duplicates = self.rows - self.nulls - self.empties - self.padded - self.too_long - distinct
        return {
            uids.NULL: self.nulls,
            uids.BLANK: self.empties,
            uids.PADDED: self.padded,
            uids.DUPLICATE: max(duplicates, 0),
            uids.TOO_LONG: self.too_long,
        }


@dataclass(frozen=True)
class LongUids:
    """The valid uids longer than a cohort's max_uid_length: distinct, their rows, and one."""

    distinct: int
    rows: int
    example: str

    def message(self, cohort: CohortSpec) -> str:
        return (
            f"model '{cohort.model}': {self.distinct:,} uids ({self.rows:,} rows) are longer than "
            f"meta.moengage.max_uid_length = {cohort.max_uid_length}, e.g. {self.example[:80]!r} "
            f"({len(self.example):,} characters): they are not sent, the rest of the cohort is"
        )


@dataclass(frozen=True)
class UidColumn:
    """The uid column as the warehouse spells it (case may differ from the config)."""

    name: str
    type: str


class Engine(ABC):
    """One connection to the user's warehouse; the declared interface of every engine.

    Engines implement the abstract methods and give their SQL (`SQL`), state type names
    (`STATE_TYPES`), the `EPOCH` and `UID_HASH` fragments and the driver's `ERRORS`.
    """

    engine: ClassVar[str] = ""
    SQL: ClassVar[dict[str, str]] = {}
    STATE_TYPES: ClassVar[dict[str, str]] = {}
    # `{}` is a timestamp column: its epoch seconds; a uid column: a non-negative integer.
    EPOCH: ClassVar[str] = "epoch({})"
    UID_HASH: ClassVar[str] = "hash({})"
    # `{}` modulo `{}` (BigQuery has no `%`).
    MOD: ClassVar[str] = "{} % {}"
    # The warehouse's clock as a naive UTC timestamp, and `{}` seconds before it (locks).
    NOW: ClassVar[str] = "current_timestamp"
    AGO: ClassVar[str] = "current_timestamp - {}"
    ERRORS: ClassVar[tuple[type[BaseException], ...]] = ()
    # How often a run beats its share of a workspace's quota (state/peers.py): a statement
    # pair each time. None: runners of this engine's state never send at once (DuckDB).
    QUOTA_BEAT_SECONDS: ClassVar[float | None] = 2.0

    conn: Any
    state_schema: str
    # Opened for reading only (a dry run): the state is never created or changed.
    read_only: bool = False
    lock_stale_seconds: float = 120.0

    # -- what each engine implements ---------------------------------------------------------

    @abstractmethod
    def quote(self, identifier: str) -> str:
        """Quote an identifier for this engine."""

    @abstractmethod
    def state_table(self, name: str) -> str:
        """The quoted, qualified name of a state table."""

    @abstractmethod
    def state_columns(self) -> dict[str, set[str]]:
        """Each state table present: its columns (lower-case names)."""

    @abstractmethod
    def check_uid_column(self, cohort: CohortSpec) -> UidColumn:
        """The uid column as the warehouse names it; WarehouseError if missing or unusable."""

    @abstractmethod
    def cohort_lock(
        self,
        cohort: CohortSpec,
        key: StateKey,
        run_id: str,
        wait_seconds: float,
        stop: threading.Event | None = None,
    ) -> AbstractContextManager[HeldLock]:
        """Hold the cohort's lock for the block; raises LockTimeout after `wait_seconds`."""

    def lock_alive(self, key: StateKey, cohort_id: str, run_id: str) -> bool:
        """Whether run `run_id` still holds the cohort's lock, read without taking it: its
        lock row was beaten within lock_stale_seconds (on the warehouse's clock)."""
        extra = {"since": self.AGO.format("?")}
        params = (*key.params, cohort_id, run_id, self.lock_stale_seconds)
        row = self.one("lock_alive", params, None, extra)
        return row is not None and int(row[0] or 0) > 0

    def compact_state(self, where: Sequence[Any], run_id: str | None) -> None:
        """Delete the member rows newer ones supersede, of the cohort `where` names: those
        of the uids run `run_id` wrote, or (`run_id` None) every uid's (StateStore.compact)."""
        if run_id is None:
            self.run("compact_members", (*where, *where))
        else:
            self.run("compact_run", (*where, run_id, *where, run_id))

    @abstractmethod
    def close(self) -> None:
        """Close the connection (and any the engine opened beside it)."""

    def cancel(self, running: Any) -> None:  # noqa: B027 - a no-op on purpose
        """Cancel the statement running on `running` (the connection a read runs on: the
        main one, or a stream's own), the driver's way; called from another thread when the
        run is stopped. The statement then raises the driver's error. Base: nothing, the
        statement runs to its end."""

    # -- stopping --------------------------------------------------------------------------

    @cached_property
    def _reads(self) -> _Reads:
        return _Reads()

    @contextlib.contextmanager
    def cancelled_on(self, stop: threading.Event) -> Iterator[None]:
        """While the block runs, setting `stop` cancels the reads of models running then
        (READS), and those that would start later raise Interrupted instead.

        A query over a large model takes minutes, and its driver call ignores the stop
        event: a stop would wait for it, holding the warehouse (a DuckDB file stays locked)
        and the orchestrator that asked the run to stop.
        """
        reads = self._reads
        reads.stop = stop
        try:
            with when_stopped(stop, self._cancel_reads, again=CANCEL_AGAIN_SECONDS):
                yield
        finally:
            reads.stop = threading.Event()

    def _cancel_reads(self) -> None:
        reads = self._reads
        with reads.lock:
            for running in reads.running.values():
                with contextlib.suppress(Exception):
                    self.cancel(running)

    @contextlib.contextmanager
    def cancellable(self, name: str, running: Any = None) -> Iterator[None]:
        """Run the block's driver call of statement `name` so that a stop cancels it when it
        is a read of a model (READS); `running` is the connection it runs on (default the
        main one). Its failure once stopped is Interrupted, not the driver's error."""
        if name not in READS:
            yield
            return
        reads = self._reads
        with reads.lock:
            if reads.stop.is_set():
                raise Interrupted(CANCELLED)
            token = next(reads.tokens)
            reads.running[token] = self.conn if running is None else running
        try:
            yield
        except self.ERRORS:
            if reads.stop.is_set():
                raise Interrupted(CANCELLED) from None
            raise
        finally:
            with reads.lock:
                del reads.running[token]

    # -- the run's heartbeat session ---------------------------------------------------------

    def open_beside(self) -> Engine | None:
        """Another session on the same warehouse, to beat the run's cohort locks from (None:
        this engine's locks need no heartbeat)."""
        return None

    def heartbeat(self) -> Engine | None:
        """The run's one heartbeat session, opened on first use: it beats every cohort lock
        of the run, so a long query here cannot starve a lock, and a profile that logs in
        through SSO or MFA prompts once per run, not once per cohort."""
        with self._beside:
            if "_beater" not in self.__dict__:
                self.__dict__["_beater"] = self.open_beside()
            beater: Engine | None = self.__dict__["_beater"]
            return beater

    def close_heartbeat(self) -> None:
        """Close the heartbeat session, if one was opened."""
        with self._beside:
            beater = self.__dict__.pop("_beater", None)
        if beater is not None:
            beater.close()

    @cached_property
    def _beside(self) -> threading.Lock:
        return threading.Lock()

    def state_indexes(self) -> dict[str, list[str]]:
        """The state's indexes that are missing, each with the statements (names in SQL)
        that create it; engines without indexes have none."""
        return {}

    def explain(self, exc: BaseException) -> str:
        """The engine's error as the user should read it (engines may add what to do)."""
        return str(exc)

    def ddl_lock(self) -> AbstractContextManager[None]:
        """Held while the state tables are created or upgraded (engines where dbt may create
        them at the same moment take a lock)."""
        return contextlib.nullcontext()

    def render(self, sql: str) -> str:
        """The statement as the driver takes it (`?` parameters by default)."""
        return sql

    def quote_column(self, name: str) -> str:
        """A column name in SQL: always quoted, so an engine that folds unquoted names
        (Snowflake) keeps its case."""
        return quote_identifier(name)

    def uid_batch(self, batch: Sequence[str]) -> Any:
        """A request's uids as the one parameter `{json_uids}` unpacks (a JSON array here;
        an engine with array parameters may bind a list)."""
        return uids_json(batch)

    # -- SQL text --------------------------------------------------------------------------

    def format(
        self, name: str, cohort: CohortSpec | None = None, extra: Mapping[str, str] = {}
    ) -> str:
        """The statement `name` with the state tables, the cohort's relation, its quoted uid
        column and model uids, and `extra` fields filled in."""
        from ..state.schema import ALIASES

        fields: dict[str, str] = {
            alias: self.state_table(table) for table, alias in ALIASES.items()
        }
        fields["schema"] = self.quote(self.state_schema)
        fields["json_uids"] = self.SQL["json_uids"]
        fields["now"], fields["ago"] = self.NOW, self.AGO.format("s.stale_seconds")
        # Seconds since a quota peer's last beat, and since it ended (state/peers.py).
        now = self.EPOCH.format(self.NOW)
        fields["age"] = f"{now} - {self.EPOCH.format('heartbeat_at')}"
        fields["ended_age"] = (
            f"case when ended_at is null then null else {now} - {self.EPOCH.format('ended_at')} end"
        )
        if cohort is not None:
            # The uid column's name as the catalog spells it (check_uid_column).
            column = self.quote_column(cohort.uid_column)
            fields["relation"] = cohort.relation_name
            fields["col"] = column
            snapshot = self._snapshots.get(cohort.unique_id)
            if snapshot is not None:
                fields["snapshot"] = fields["audience"] = snapshot
                fields["model_uids"] = self.SQL["snapshot_uids"].format(snapshot=snapshot)
            else:
                fields["audience"] = "({})".format(
                    self.SQL["create_snapshot"].format(relation=cohort.relation_name, col=column)
                )
                fields["model_uids"] = self.SQL["model_uids"].format(
                    relation=cohort.relation_name, col=column
                )
            if cohort.max_uid_length is not None:
                # A uid over the limit is left out of everything sent (counted: long_uids).
                fields["model_uids"] = (
                    f"select uid from ({fields['model_uids']}) l "
                    f"where length(uid) <= {int(cohort.max_uid_length)}"
                )
        fields.update(extra)
        fields["state_uids"] = self.SQL["state_uids"].format(**fields)
        return self.SQL[name].format(**fields)

    # -- the snapshot ----------------------------------------------------------------------

    @cached_property
    def _snapshots(self) -> dict[str, str]:
        """unique_id -> the snapshot table of each cohort being synced."""
        return {}

    def snapshot_table(self, cohort: CohortSpec, key: StateKey) -> str | None:
        """Where the cohort's snapshot goes (None: this engine reads the model each time,
        as a read-only Postgres or Snowflake session does, having nowhere to write it)."""
        return None

    def create_snapshot(self, table: str, select: str) -> list[str]:
        """The statements that write `select` to the snapshot `table` (engines vary)."""
        return [f"create table {table} as {select}"]

    @contextlib.contextmanager
    def snapshot(self, cohort: CohortSpec, key: StateKey) -> Iterator[None]:
        """Read the cohort's model once, into a run-scoped table of its distinct values;
        while the block runs, every statement on the cohort reads that table instead.

        So the plan, the guard and every stream come from one reading: a model that
        changes mid-run (a view over a table being reloaded, a concurrent `dbt run`) is
        sent as planned, and judged by the next run. The table's name is the cohort's
        lock key's, so it is never shared: two runs of one cohort never overlap.
        """
        table = self.snapshot_table(cohort, key)
        if table is None:
            yield
            return
        drop = self.format("drop_snapshot", extra={"snapshot": table})
        select = self.format("create_snapshot", cohort)
        try:
            self.execute_sql(drop, (), "drop_snapshot", cohort).close()
            for statement in self.create_snapshot(table, select):
                self.execute_sql(statement, (), "reading_the_model", cohort).close()
            self._snapshots[cohort.unique_id] = table
            yield
        finally:
            self._snapshots.pop(cohort.unique_id, None)
            with contextlib.suppress(WarehouseError):
                self.execute_sql(drop, (), "drop_snapshot", cohort).close()

    # -- what the warehouse bills ---------------------------------------------------------

    # Whether this engine's jobs report the bytes they bill (BigQuery): then each cohort's
    # cost is counted (`billing`, `billed`) and shown in the summary, results and history.
    BILLS_BYTES: ClassVar[bool] = False

    @cached_property
    def _billed(self) -> dict[str, int]:
        """account -> bytes billed so far (accounts: a cohort's unique_id, or '' for the run)."""
        return {}

    @cached_property
    def _accounts(self) -> threading.local:
        return threading.local()

    @cached_property
    def _charges(self) -> threading.Lock:
        return threading.Lock()

    @contextlib.contextmanager
    def billing(self, account: str) -> Iterator[None]:
        """Jobs this thread runs in the block are billed to `account` (a cohort's unique_id);
        checkpoints made from send threads enter it too, so every job of a cohort counts."""
        before = getattr(self._accounts, "name", "")
        self._accounts.name = account
        try:
            yield
        finally:
            self._accounts.name = before

    def charge(self, nbytes: int) -> None:
        """Add one job's bytes billed to the calling thread's account."""
        account = getattr(self._accounts, "name", "")
        with self._charges:
            self._billed[account] = self._billed.get(account, 0) + int(nbytes)

    def billed(self, account: str) -> int | None:
        """The bytes billed to `account` so far; None where the engine reports no cost."""
        if not self.BILLS_BYTES:
            return None
        with self._charges:
            return self._billed.get(account, 0)

    # -- running statements ----------------------------------------------------------------

    def cursor(self) -> Any:
        """A cursor for one statement on the main connection."""
        return self.conn.cursor()

    @cached_property
    def statements(self) -> threading.RLock:
        """One statement at a time on the connection (checkpoints come from send threads)."""
        return threading.RLock()

    def execute(
        self,
        name: str,
        params: Sequence[Any] = (),
        cohort: CohortSpec | None = None,
        extra: Mapping[str, str] = {},
    ) -> Any:
        """Run statement `name`; its cursor, to be read and closed by the caller."""
        return self.execute_sql(self.format(name, cohort, extra), params, name, cohort)

    def execute_sql(
        self,
        sql: str,
        params: Sequence[Any] = (),
        name: str = "statement",
        cohort: CohortSpec | None = None,
    ) -> Any:
        """Run a statement's text; WarehouseError naming it (and the model) if it fails."""
        with self.statements:
            cursor = self.cursor()
            try:
                with self.cancellable(name):
                    cursor.execute(self.render(sql), params)
            except self.ERRORS as exc:
                cursor.close()
                where = f"model '{cohort.model}': " if cohort else ""
                raise WarehouseError(
                    f"{where}{name.replace('_', ' ')} failed: {self.explain(exc)}"
                ) from None
            except Interrupted:
                cursor.close()
                raise
            return cursor

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """The block's statements commit together or not at all (no other thread's between)."""
        with self.statements:
            self.execute_sql("begin", (), "begin").close()
            try:
                yield
            except BaseException:
                with contextlib.suppress(WarehouseError):
                    self.execute_sql("rollback", (), "rollback").close()
                raise
            self.execute_sql("commit", (), "commit").close()

    def one(
        self,
        name: str,
        params: Sequence[Any] = (),
        cohort: CohortSpec | None = None,
        extra: Mapping[str, str] = {},
    ) -> Any:
        """The first row of statement `name` (None when it returns none)."""
        with self.statements:
            cursor = self.execute(name, params, cohort, extra)
            try:
                return cursor.fetchone()
            finally:
                cursor.close()

    def all(self, name: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of statement `name`."""
        with self.statements:
            cursor = self.execute(name, params)
            try:
                return list(cursor.fetchall())
            finally:
                cursor.close()

    def run(self, name: str, params: Sequence[Any] = (), cohort: CohortSpec | None = None) -> None:
        """Run statement `name` for its effect."""
        with self.statements:
            self.execute(name, params, cohort).close()

    def stream(
        self,
        name: str,
        params: Sequence[Any],
        cohort: CohortSpec,
        extra: Mapping[str, str] = {},
        batch_rows: int = DEFAULT_FETCH_ROWS,
    ) -> Iterator[list[str]]:
        """The first column of statement `name`, `batch_rows` at a time, from a cursor of its
        own: checkpoints may write on the connection meanwhile."""
        cursor = self.execute(name, params, cohort, extra)
        try:
            while True:
                try:
                    with self.statements:
                        rows = cursor.fetchmany(batch_rows)
                except self.ERRORS as exc:
                    raise read_failed(cohort, self.explain(exc)) from None
                if not rows:
                    return
                yield [row[0] for row in rows]
        finally:
            cursor.close()

    # -- the audience ----------------------------------------------------------------------

    def audience_stats(self, cohort: CohortSpec) -> AudienceStats:
        """Count rows, nulls, blank, padded and too long uids (from the snapshot, when
        there is one)."""
        name = "snapshot_stats" if cohort.unique_id in self._snapshots else "stats"
        rows, nulls, empties, padded = (int(v or 0) for v in self.one(name, (), cohort))
        long = self.long_uids(cohort)
        return AudienceStats(
            rows=rows,
            nulls=nulls,
            empties=empties,
            padded=padded,
            too_long=long.rows if long is not None else 0,
        )

    def count_model(self, cohort: CohortSpec) -> int:
        """The model's distinct uids to send."""
        return int(self.one("count_model", (), cohort)[0])

    def long_uids(self, cohort: CohortSpec) -> LongUids | None:
        """The valid uids longer than the cohort's max_uid_length (None: no limit, or none)."""
        if cohort.max_uid_length is None:
            return None
        distinct, rows, example = self.one("long_uids", (cohort.max_uid_length,), cohort)
        if not int(distinct or 0):
            return None
        return LongUids(int(distinct), int(rows), str(example))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Reads:
    """The reads of models running on an engine (token -> the connection each runs on), and
    the stop that cancels them; `lock` makes starting, ending and cancelling one at a time,
    so a cancel never reaches a statement that is not a read."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.running: dict[int, Any] = {}
        self.tokens = itertools.count()


def snapshot_name(key: StateKey, cohort: CohortSpec) -> str:
    """The snapshot table's name for one cohort of one state key (its lock's key)."""
    text = "|".join((*key.params, cohort.cohort_id, cohort.unique_id))
    return f"moengage_snapshot_{hashlib.sha1(text.encode()).hexdigest()[:16]}"


def uids_json(batch: Sequence[str]) -> str:
    """A request's uids as one bound parameter: a JSON array every engine's SQL unpacks
    (DuckDB parses it faster than it converts a list of Python strings)."""
    return orjson.dumps(list(batch)).decode()


def read_failed(cohort: CohortSpec, reason: str) -> WarehouseError:
    """Reading a cohort's uids failed mid-way (a lost connection, a dropped table)."""
    return WarehouseError(
        f"model '{cohort.model}': reading uids from {cohort.relation_name} failed: {reason}"
    )


def missing_column(cohort: CohortSpec, columns: Iterable[str]) -> WarehouseError:
    """The configured uid column is not in the model."""
    return WarehouseError(
        f"model '{cohort.model}': meta.moengage.uid_column = {cohort.uid_column!r}: "
        f"no such column in {cohort.relation_name} (columns: {', '.join(columns)}); "
        "set uid_column to the column holding MoEngage's Unique User ID"
    )


def unusable_type(cohort: CohortSpec, kind: str, text: str = "varchar") -> WarehouseError:
    """The uid column's type would not cast to a uid cleanly (`text`: the warehouse's name
    of its text type, for the fix)."""
    return WarehouseError(
        f"model '{cohort.model}': meta.moengage.uid_column = {cohort.uid_column!r} has "
        f"type {kind}; uids must be text or whole numbers: cast it in the model "
        f"(e.g. cast(... as {text}))"
    )


def quote_identifier(name: str, quote: str = '"') -> str:
    """Quote an identifier for SQL, doubling any quote inside it."""
    return quote + name.replace(quote, quote * 2) + quote

"""Stage 3: the interface every warehouse engine implements (DuckDB, Snowflake, Postgres,
BigQuery).

An engine is one DB-API connection to the user's warehouse plus the SQL that differs
between warehouses, kept beside the engine: how to read a model's uids, the anti-joins,
how to unpack a request's uids from one JSON parameter, how to read a timestamp and hash
a uid, its type names (what they share is in warehouse/sql.py). The state stage
(dbt_moengage/state/) runs its flow through this interface; the sync reads audiences
through it. Statements are written with `?` parameters; an engine whose driver wants
another style converts them in `render`. A stop cancels the reads of models
(warehouse/cancel.py); engines whose jobs bill bytes count them (warehouse/billing.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from ..cohorts import CohortSpec
from ..errors import Interrupted, WarehouseError
from .audience import AudienceStats, LongUids, UidColumn, read_failed
from .billing import BillsBytes
from .cancel import CancelsReads
from .sql import quote_identifier, uids_json

if TYPE_CHECKING:
    from ..state.schema import StateKey
    from .profiles import ProfileTarget

DEFAULT_FETCH_ROWS = 50_000


class Engine(CancelsReads, BillsBytes, ABC):
    """One connection to the user's warehouse; the declared interface of every engine.

    Engines implement the abstract methods and give their SQL (`SQL`), state type names
    (`STATE_TYPES`), the `EPOCH` and `UID_HASH` fragments and the driver's `ERRORS`; the
    rest is shared, with hooks (documented as such) that some engines change.
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

    @classmethod
    @abstractmethod
    def from_profile(
        cls,
        target: ProfileTarget,
        project_dir: Path,
        *,
        state_schema: str | None = None,
        read_only: bool = False,
        wait_seconds: float = 0.0,
    ) -> Self:
        """Connect as the dbt profile target says (`state_schema` instead of its schema);
        `wait_seconds` bounds the wait for a database another process holds (DuckDB)."""

    @abstractmethod
    def state_columns(self) -> dict[str, set[str]]:
        """Each state table present: its columns (lower-case names)."""

    @abstractmethod
    def check_uid_column(self, cohort: CohortSpec) -> UidColumn:
        """The uid column as the warehouse names it; WarehouseError if missing or unusable."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection (and any the engine opened beside it)."""

    # -- names -----------------------------------------------------------------------------

    def quote(self, identifier: str) -> str:
        """Quote an identifier for this engine. Hook; base: always in double quotes (DuckDB,
        and Postgres, which folds unquoted names to lower case)."""
        return quote_identifier(identifier)

    def quote_column(self, name: str) -> str:
        """A column name in SQL: always quoted, so an engine that folds unquoted names
        (Snowflake) keeps its case."""
        return quote_identifier(name)

    def state_table(self, name: str) -> str:
        """The quoted, qualified name of a state table. Hook; base: `"schema"."table"` in
        the connection's own database."""
        return f"{self.quote(self.state_schema)}.{self.quote(name)}"

    # -- the cohort lock (state/locks.py), the run's heartbeat session -----------------------

    def lock_beater(self) -> Engine | None:
        """The engine that beats this run's cohort lock rows, as StateStore.lock takes one
        (None: the lock needs no heartbeat). Hook; base: the run's heartbeat session."""
        return self.heartbeat()

    def lock_alive(self, key: StateKey, cohort_id: str, run_id: str) -> bool:
        """Whether run `run_id` still holds the cohort's lock, read without taking it: its
        lock row was beaten within lock_stale_seconds (on the warehouse's clock)."""
        extra = {"since": self.AGO.format("?")}
        params = (*key.params, cohort_id, run_id, self.lock_stale_seconds)
        row = self.one("lock_alive", params, None, extra)
        return row is not None and int(row[0] or 0) > 0

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

    # -- the state's upkeep ------------------------------------------------------------------

    def compact_state(self, where: Sequence[Any], run_id: str | None) -> None:
        """Delete the member rows newer ones supersede, of the cohort `where` names: those
        of the uids run `run_id` wrote, or (`run_id` None) every uid's (StateStore.compact)."""
        if run_id is None:
            self.run("compact_members", (*where, *where))
        else:
            self.run("compact_run", (*where, run_id, *where, run_id))

    def state_indexes(self) -> dict[str, list[str]]:
        """The state's indexes that are missing, each with the statements (names in SQL)
        that create it; engines without indexes have none."""
        return {}

    def ddl_lock(self) -> AbstractContextManager[None]:
        """Held while the state tables are created or upgraded (engines where dbt may create
        them at the same moment take a lock)."""
        return contextlib.nullcontext()

    # -- SQL text --------------------------------------------------------------------------

    def explain(self, exc: BaseException) -> str:
        """The engine's error as the user should read it (engines may add what to do)."""
        return str(exc)

    def render(self, sql: str) -> str:
        """The statement as the driver takes it (`?` parameters by default)."""
        return sql

    def uid_batch(self, batch: Sequence[str]) -> Any:
        """A request's uids as the one parameter `{json_uids}` unpacks (a JSON array here;
        an engine with array parameters may bind a list)."""
        return uids_json(batch)

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
        """Where the cohort's snapshot goes (None: the model is read each time). Hook; base:
        a table in the state schema (the engine's `create_snapshot` says which kind), and
        None for a read-only run (a dry run), which has nowhere to write it."""
        return None if self.read_only else self.state_table(snapshot_name(key, cohort))

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


def snapshot_name(key: StateKey, cohort: CohortSpec) -> str:
    """The snapshot table's name for one cohort of one state key (its lock's key)."""
    text = "|".join((*key.params, cohort.cohort_id, cohort.unique_id))
    return f"moengage_snapshot_{hashlib.sha1(text.encode()).hexdigest()[:16]}"

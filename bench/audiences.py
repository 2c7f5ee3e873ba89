"""The bench's audiences on each engine: bench/project built by dbt, and fresh copies.

A copy is one measured run's audience with no sync state yet: a folder holding a copy of
dbt's target/ (the runner writes its report there) and what the engine needs. On DuckDB
that is a copy of the database file. On Postgres every size is built once, in a schema of
its own, on the bench's throwaway server (tests/postgres_server.py: PostgreSQL from the
machine's packages, fsync off); a copy gets an empty schema for the runner's state
(MOENGAGE_STATE_SCHEMA) and another for the bare client's, dropped when it is discarded.
BigQuery is its emulator (dbt_moengage.testing.bigquery: bqemulator, in-memory, started for
the bench), reached as the Postgres server is: every size built once by dbt, in a dataset of
its own; a copy gets an empty dataset for the runner's state and one for the bare client's.
An audience is built per size and per cohort mode (add by default; a mirror audience is
one figure's own, which changes its rows).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "project"
ENGINES = ("duckdb", "postgres", "bigquery")
# pg_stat_user_tables' counters the bench reads (PostgresAudiences.table_stats), and how
# long they must stay still to count as settled.
STAT_COLUMNS = ("seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch", "n_tup_upd")
STATS_SETTLE_SECONDS = 1.5
STATS_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Copy:
    """One run's audience: `members` uids, a folder, what dbt and the runner read."""

    members: int
    folder: Path
    env: dict[str, str]
    # For the bench's own scripts: `--duckdb FILE`, `--postgres DSN` or `--bigquery
    # ENDPOINT PROJECT`, the audience's table, the schema (dataset) of the runner's state,
    # the bare client's state table.
    source: tuple[str, ...]
    table: str
    state_schema: str
    bare_state_table: str


def audience_name(members: int, mode: str) -> str:
    """How an audience's folder and Postgres schema are named: `members`, then any mode
    other than the default add."""
    return str(members) if mode == "add" else f"{members}_{mode}"


class Audiences(ABC):
    """Builds the bench project at a size once, and hands out fresh copies of it."""

    engine: str = ""
    label: str = ""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.built: dict[tuple[int, str], Path] = {}

    @abstractmethod
    def target_env(self, folder: Path, members: int, mode: str = "add") -> dict[str, str]:
        """The variables the bench profile's target reads, for an audience in `folder`."""

    @abstractmethod
    def copy(self, members: int, mode: str = "add") -> Copy:
        """A fresh copy of the audience of `members` uids (its cohort in `mode`)."""

    def describe(self) -> dict[str, Any]:
        """What the engine runs as (versions, settings), for the results."""
        return {}

    @abstractmethod
    def after_build(self, members: int, mode: str, folder: Path) -> None:
        """Anything to do once dbt has built an audience."""

    def discard(self, copy: Copy) -> None:
        """Free what a copy holds, once its runs are measured."""
        shutil.rmtree(copy.folder, ignore_errors=True)

    def build(self, members: int, env: dict[str, str], mode: str = "add") -> Path:
        """`dbt build` of the bench project with `members` uids (once); returns its folder.

        `mode` is the cohort's meta.moengage.mode (a var of the bench model): each mode is
        an audience of its own, so a figure that changes a mirror audience's rows never
        touches the audiences other figures read.
        """
        if (members, mode) in self.built:
            return self.built[members, mode]
        folder = self.work / f"{self.engine}-audience-{audience_name(members, mode)}"
        folder.mkdir()
        dbt = Path(sys.executable).with_name("dbt")
        started = time.perf_counter()
        subprocess.run(
            [
                str(dbt),
                "build",
                "--profiles-dir",
                str(PROJECT),
                "--project-dir",
                str(PROJECT),
                "--vars",
                json.dumps({"members": members, "mode": mode}),
                "--quiet",
            ],
            env={**env, **self.target_env(folder, members, mode)},
            check=True,
            cwd=PROJECT,
        )
        self.after_build(members, mode, folder)
        seconds = time.perf_counter() - started
        shown = "" if mode == "add" else f" ({mode})"
        print(f"  built {members:,} members{shown} on {self.label} in {seconds:.1f} s", flush=True)
        self.built[members, mode] = folder
        return folder

    def _fresh_folder(self, members: int, mode: str) -> Path:
        """A new folder holding a copy of the built audience's target/."""
        prefix = f"{self.engine}-run-{audience_name(members, mode)}-"
        folder = Path(tempfile.mkdtemp(dir=self.work, prefix=prefix))
        shutil.copytree(self.built[members, mode] / "target", folder / "target")
        return folder

    @staticmethod
    def _dbt_paths(folder: Path) -> dict[str, str]:
        return {"DBT_TARGET_PATH": str(folder / "target"), "DBT_LOG_PATH": str(folder / "logs")}


class DuckDBAudiences(Audiences):
    """One database file per size; a copy is a copy of the file."""

    engine = "duckdb"
    label = "DuckDB"

    def target_env(self, folder: Path, members: int, mode: str = "add") -> dict[str, str]:
        return {
            "BENCH_TARGET": "duckdb",
            "BENCH_DUCKDB_PATH": str(folder / "bench.duckdb"),
            **self._dbt_paths(folder),
        }

    def after_build(self, members: int, mode: str, folder: Path) -> None:
        """Nothing: the file is ready as dbt leaves it."""

    def copy(self, members: int, mode: str = "add") -> Copy:
        folder = self._fresh_folder(members, mode)
        shutil.copy(self.built[members, mode] / "bench.duckdb", folder / "bench.duckdb")
        return Copy(
            members=members,
            folder=folder,
            env=self.target_env(folder, members, mode),
            source=("--duckdb", str(folder / "bench.duckdb")),
            table="main.audience",
            state_schema="main",
            bare_state_table="main.bare_state",
        )

    def describe(self) -> dict[str, Any]:
        import duckdb

        return {"duckdb": duckdb.__version__}


class PostgresAudiences(Audiences):
    """One schema per size in one database; a copy is a pair of empty state schemas."""

    engine = "postgres"
    label = "Postgres"
    DATABASE = "bench"

    def __init__(self, work: Path, server: Any) -> None:
        super().__init__(work)
        self.server = server
        server.new_database(self.DATABASE)
        self.numbers = itertools.count(1)
        with self._cursor() as cursor:
            # A background vacuum of one run's rows would land on the next run's time; the
            # audiences are vacuumed once, when built.
            cursor.execute("alter system set autovacuum = off")
            cursor.execute("select pg_reload_conf()")

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        conn = self.server.connect(self.DATABASE)
        try:
            with conn.cursor() as cursor:
                yield cursor
        finally:
            conn.close()

    def dsn(self) -> str:
        """The bench database's libpq connection string."""
        return str(self.server.dsn(self.DATABASE))

    def target_env(self, folder: Path, members: int, mode: str = "add") -> dict[str, str]:
        return {
            "BENCH_TARGET": "postgres",
            "BENCH_PG_HOST": str(self.server.host),
            "BENCH_PG_PORT": str(self.server.port),
            "BENCH_PG_USER": str(self.server.user),
            "BENCH_PG_DBNAME": self.DATABASE,
            "BENCH_PG_SCHEMA": f"audience_{audience_name(members, mode)}",
            **self._dbt_paths(folder),
        }

    def after_build(self, members: int, mode: str, folder: Path) -> None:
        # Set hint bits and statistics now, not during whichever run reads the table first.
        with self._cursor() as cursor:
            cursor.execute(
                f"vacuum (freeze, analyze) audience_{audience_name(members, mode)}.audience"
            )

    def copy(self, members: int, mode: str = "add") -> Copy:
        folder = self._fresh_folder(members, mode)
        number = next(self.numbers)
        env = self.target_env(folder, members, mode)
        env["MOENGAGE_STATE_SCHEMA"] = f"state_{number}"
        return Copy(
            members=members,
            folder=folder,
            env=env,
            source=("--postgres", self.dsn()),
            table=f"audience_{audience_name(members, mode)}.audience",
            state_schema=f"state_{number}",
            bare_state_table=f"bare_{number}.members",
        )

    def execute(self, sql: str) -> int:
        """Run one statement on the bench database; its row count. The session ends with
        it, so its table statistics are flushed before any later reading of them."""
        with self._cursor() as cursor:
            cursor.execute(sql)
            return int(cursor.rowcount)

    def table_stats(self, table: str) -> dict[str, int]:
        """pg_stat_user_tables' counters of `table` once they settle.

        A session's statistics reach the server when its transaction ends (at most once a
        second) or when it ends, so a run's scans show up once the runner's sessions have
        closed: read until the counters have not moved for STATS_SETTLE_SECONDS.
        """
        started = time.monotonic()
        last: dict[str, int] = {}
        since = started
        with self._cursor() as cursor:
            while True:
                cursor.execute("select pg_stat_clear_snapshot()")
                cursor.execute(
                    f"select {', '.join(STAT_COLUMNS)} from pg_stat_user_tables "
                    "where relid = cast(%s as regclass)",
                    [table],
                )
                row = cursor.fetchone()
                found = {name: int(v or 0) for name, v in zip(STAT_COLUMNS, row, strict=True)}
                now = time.monotonic()
                if found != last:
                    last, since = found, now
                elif now - since >= STATS_SETTLE_SECONDS:
                    return last
                if now - started > STATS_TIMEOUT_SECONDS:
                    raise RuntimeError(f"the statistics of {table} did not settle: {found}")
                time.sleep(0.1)

    def discard(self, copy: Copy) -> None:
        bare_schema = copy.bare_state_table.split(".")[0]
        with self._cursor() as cursor:
            cursor.execute(f"drop schema if exists {copy.state_schema} cascade")
            cursor.execute(f"drop schema if exists {bare_schema} cascade")
        super().discard(copy)

    def describe(self) -> dict[str, Any]:
        with self._cursor() as cursor:
            cursor.execute(
                "select name, current_setting(name) from pg_settings where name in "
                "('server_version', 'fsync', 'synchronous_commit', 'shared_buffers', "
                "'autovacuum', 'work_mem')"
            )
            settings = dict(cursor.fetchall())
        return {"postgres": settings.pop("server_version", "?"), "settings": settings}


class BigQueryAudiences(Audiences):
    """One dataset per size on the bench's BigQuery emulator; a copy is a pair of empty
    state datasets."""

    engine = "bigquery"
    label = "BigQuery"

    def __init__(self, work: Path, emulator: Any) -> None:
        super().__init__(work)
        self.emulator = emulator
        self.numbers = itertools.count(1)

    def table(self, dataset: str, name: str) -> str:
        """A table's name as the runner's manifest has it: `project`.`dataset`.`name`."""
        return f"`{self.emulator.project}`.`{dataset}`.`{name}`"

    def target_env(self, folder: Path, members: int, mode: str = "add") -> dict[str, str]:
        from dbt_moengage.testing.bigquery import TOKEN

        return {
            "BENCH_TARGET": "bigquery",
            "BENCH_BQ_PROJECT": str(self.emulator.project),
            "BENCH_BQ_DATASET": f"audience_{audience_name(members, mode)}",
            "BENCH_BQ_ENDPOINT": str(self.emulator.endpoint),
            "BENCH_BQ_TOKEN": TOKEN,
            **self._dbt_paths(folder),
        }

    def after_build(self, members: int, mode: str, folder: Path) -> None:
        """Nothing: the emulator keeps no statistics to refresh."""

    def copy(self, members: int, mode: str = "add") -> Copy:
        folder = self._fresh_folder(members, mode)
        number = next(self.numbers)
        state, bare = f"state_{number}", f"bare_{number}"
        for dataset in (state, bare):
            self.emulator.new_dataset(dataset)
        env = self.target_env(folder, members, mode)
        env["MOENGAGE_STATE_SCHEMA"] = state
        return Copy(
            members=members,
            folder=folder,
            env=env,
            source=("--bigquery", str(self.emulator.endpoint), str(self.emulator.project)),
            table=self.table(f"audience_{audience_name(members, mode)}", "audience"),
            state_schema=state,
            bare_state_table=self.table(bare, "members"),
        )

    def discard(self, copy: Copy) -> None:
        bare = copy.bare_state_table.rsplit(".", 1)[0]
        state = f"`{self.emulator.project}`.`{copy.state_schema}`"
        for dataset in (state, bare):
            self.emulator.query(f"drop schema if exists {dataset} cascade")
        super().discard(copy)

    def describe(self) -> dict[str, Any]:
        from dbt_moengage.testing.bigquery import emulator_python

        script = (
            "from importlib.metadata import version; "
            "print(version('bqemulator'), version('duckdb'))"
        )
        found = subprocess.run(
            [str(emulator_python()), "-c", script], capture_output=True, text=True, check=True
        )
        bqemulator, duckdb = found.stdout.split()
        return {"bqemulator": f"{bqemulator} (in memory, on DuckDB {duckdb})"}


@contextlib.contextmanager
def audiences(engine: str, work: Path) -> Iterator[Audiences]:
    """The audiences of one engine; for Postgres a server, for BigQuery its emulator,
    running until the block ends."""
    if engine == "duckdb":
        yield DuckDBAudiences(work)
        return
    if engine == "bigquery":
        from dbt_moengage.testing.bigquery import BigQueryUnavailable, running_bigquery

        with contextlib.ExitStack() as stack:
            try:
                emulator = stack.enter_context(running_bigquery())
            except BigQueryUnavailable as error:
                raise SystemExit(
                    f"bench on BigQuery: {error}\n(or leave BigQuery out: "
                    "make bench BENCH_ARGS='--engines duckdb postgres')"
                ) from None
            yield BigQueryAudiences(work, emulator)
        return
    sys.path.insert(0, str(HERE.parent))
    from tests.postgres_server import PostgresUnavailable, running_postgres

    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running_postgres())
        except PostgresUnavailable as error:
            raise SystemExit(
                f"bench on Postgres: {error}\n(or leave Postgres out: "
                "make bench BENCH_ARGS='--engines duckdb')"
            ) from None
        yield PostgresAudiences(work, server)

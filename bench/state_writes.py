"""Record an audience in the state the way the runner's checkpoints do, and nothing else.

One write per request (StateStore.record_added), each of that request's uids, then the
engine's close (on DuckDB, the close that folds the WAL into the file): the runner's part
of the work the bare client also does, measured alone, on DuckDB (`--duckdb FILE`),
Postgres (`--postgres DSN`) or BigQuery (`--bigquery ENDPOINT PROJECT`, the bench's
emulator). Prints its wall seconds as JSON; the bench reads its CPU time from the process.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

from dbt_moengage.cohorts import CohortSpec
from dbt_moengage.state import StateKey, StateStore
from dbt_moengage.warehouse.duckdb import DEFAULT_MEMORY_LIMIT, DuckDBWarehouse
from dbt_moengage.warehouse.engine import Engine


def add_sources(parser: argparse.ArgumentParser) -> None:
    """The engine to open, one of three (the bench's scripts share them)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--duckdb", help="a DuckDB database file")
    source.add_argument("--postgres", help="a libpq connection string")
    source.add_argument(
        "--bigquery", nargs=2, metavar=("ENDPOINT", "PROJECT"), help="a BigQuery API endpoint"
    )


def open_engine(args: argparse.Namespace) -> Engine:
    """The runner's engine on the bench's database, its state in `--state-schema`."""
    if args.duckdb:
        return DuckDBWarehouse(
            args.duckdb, state_schema=args.state_schema, memory_limit=args.memory_limit
        )
    if args.bigquery:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        from dbt_moengage.warehouse.bigquery import BigQueryWarehouse, Jobs

        endpoint, project = args.bigquery
        client = bigquery.Client(
            project=project,
            credentials=AnonymousCredentials(),  # the emulator checks no token
            location="US",
            client_options=ClientOptions(api_endpoint=endpoint),
        )
        return BigQueryWarehouse(Jobs(client, location="US"), project, args.state_schema, "US")
    import psycopg2

    from dbt_moengage.warehouse.postgres import PostgresWarehouse

    return PostgresWarehouse(
        psycopg2.connect(args.postgres), args.state_schema, lambda: psycopg2.connect(args.postgres)
    )


def main() -> int:
    """Read the audience's uids, then time recording them in `--requests` writes."""
    parser = argparse.ArgumentParser(description=__doc__)
    add_sources(parser)
    parser.add_argument("--table", default="main.audience")
    parser.add_argument("--state-schema", default="main")
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--memory-limit", default=DEFAULT_MEMORY_LIMIT, help="DuckDB's")
    args = parser.parse_args()
    warehouse = open_engine(args)
    state = StateStore(warehouse)
    state.prepare(create=True)
    cursor = warehouse.execute_sql(f"select uid from {args.table}")
    uids = [uid for (uid,) in cursor.fetchall()]
    cursor.close()
    cohort = CohortSpec(
        model="audience",
        unique_id="model.bench.audience",
        relation_name=args.table,
        cohort_name=".Bench Audience",
        cohort_id="audience",
        description="bench",
        uid_column="uid",
    )
    key = StateKey("http://127.0.0.1", "BENCH_WORKSPACE")
    size = math.ceil(len(uids) / args.requests)
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(uids), size):
        state.record_added(cohort, key, uids[start : start + size], "bench")
    warehouse.close()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

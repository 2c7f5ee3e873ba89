"""The yardstick for runner overhead: the least a script can do to send an audience and
keep the runner's guarantee (every accepted uid recorded, request by request).

One query, `fetchmany`, bodies packed the simplest correct way (orjson, member by member,
closed when the next would not fit), posted from a few threads over one requests.Session.
Once a request is accepted, its sending thread records its uids in a state table of the
same engine: one bulk insert (the uids bound as one JSON array), one at a time, in
autocommit. No distinct, no anti-join against what was sent before, no retries, no lock,
no run rows: what is left when the runner's other work is taken away. Works on DuckDB
(`--duckdb FILE`, opened for writing), Postgres (`--postgres DSN`) and BigQuery
(`--bigquery ENDPOINT PROJECT`: google-cloud-bigquery itself, no dbt, on the bench's
emulator; the query's result read 50,000 rows a page, each insert one DML job with the
uids bound as one ARRAY<STRING> parameter, as the runner binds them). Prints the requests
it made, its wall seconds and the seconds its state writes took, as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
import requests
from requests.adapters import HTTPAdapter

# The runner's members table, column for column.
STATE_DDL = """create table {table} (
    endpoint varchar not null, workspace_id varchar not null, cohort_id varchar not null,
    uid varchar not null, synced_at timestamp not null, run_id varchar not null)"""
INSERT = {
    "duckdb": """insert into {table} (endpoint, workspace_id, cohort_id, synced_at, run_id, uid)
        select ?, ?, ?, ?, ?, unnest(from_json(?, '["varchar"]'))""",
    "postgres": """insert into {table} (endpoint, workspace_id, cohort_id, synced_at, run_id, uid)
        select %s, %s, %s, %s, %s, jsonb_array_elements_text(cast(%s as jsonb))""",
    "bigquery": """insert into {table} (endpoint, workspace_id, cohort_id, synced_at, run_id, uid)
        select ?, ?, ?, ?, ?, uid from unnest(?) as uid""",
}
BATCH_ROWS = 50_000


class Store(NamedTuple):
    """The audience's uids to read, and the state table to record accepted requests in."""

    uids: Iterator[list[str]]  # BATCH_ROWS at a time
    record: Callable[[tuple[Any, ...], list[str]], None]  # one insert: the columns, the uids
    close: Callable[[], None]


def bodies(
    uids: Iterator[list[str]], prefix: bytes, max_bytes: int
) -> Iterator[tuple[bytes, list[str]]]:
    """Fill each body up to `max_bytes` of encoded JSON; yield it with its uids."""
    room = max_bytes - len(prefix) - 3
    members: list[bytes] = []
    inside: list[str] = []
    used = -1  # no comma before the first member
    for batch in uids:
        for uid in batch:
            piece = b'{"uid":' + orjson.dumps(uid) + b"}"
            if used + 1 + len(piece) > room:
                yield prefix + b",".join(members) + b"]}}", inside
                members, inside, used = [], [], -1
            members.append(piece)
            inside.append(uid)
            used += 1 + len(piece)
    if members:
        yield prefix + b",".join(members) + b"]}}", inside


def connect(args: argparse.Namespace) -> tuple[str, Any, Any]:
    """The engine's name, a connection streaming the audience, and one for writes."""
    if args.duckdb:
        import duckdb

        conn = duckdb.connect(args.duckdb)
        # A connection of its own for the read: its result stays open while writes run.
        return "duckdb", conn.cursor(), conn
    import psycopg2

    # Reads through a server-side cursor in a transaction of their own; writes in
    # autocommit on another session.
    writes = psycopg2.connect(args.postgres)
    writes.autocommit = True
    return "postgres", psycopg2.connect(args.postgres), writes


def dbapi_store(args: argparse.Namespace) -> Store:
    """DuckDB or Postgres: one query read with fetchmany, inserts on a cursor of their own."""
    engine, reading, conn = connect(args)
    reader = reading.cursor(name="audience") if engine == "postgres" else reading
    reader.execute(f"select uid from {args.table}")
    schema = args.state_table.rsplit(".", 1)[0]
    writer = conn.cursor()
    writer.execute(f"create schema if not exists {schema}")
    writer.execute(STATE_DDL.format(table=args.state_table))
    insert = INSERT[engine].format(table=args.state_table)

    def batches() -> Iterator[list[str]]:
        while rows := reader.fetchmany(BATCH_ROWS):
            yield [row[0] for row in rows]

    def record(columns: tuple[Any, ...], uids: list[str]) -> None:
        writer.execute(insert, (*columns, orjson.dumps(uids).decode()))

    def close() -> None:
        for done in (reader, reading, writer, conn):
            done.close()  # DuckDB folds its WAL into the file at the last, as the runner's does

    return Store(batches(), record, close)


def bigquery_store(args: argparse.Namespace) -> Store:
    """BigQuery through google-cloud-bigquery: one query job read page by page; each insert
    a DML job (BigQuery commits each), the uids one ARRAY<STRING> parameter."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    endpoint, project = args.bigquery
    client = bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),  # the emulator checks no token
        location="US",
        client_options=ClientOptions(api_endpoint=endpoint),
    )
    rows = client.query(f"select uid from {args.table}").result(page_size=BATCH_ROWS)
    schema = args.state_table.rsplit(".", 1)[0]
    client.query(f"create schema if not exists {schema}").result()
    ddl = STATE_DDL.format(table=args.state_table).replace("varchar", "string")
    client.query(ddl).result()
    insert = INSERT["bigquery"].format(table=args.state_table)

    def batches() -> Iterator[list[str]]:
        for page in rows.pages:
            yield [row[0] for row in page]

    def record(columns: tuple[Any, ...], uids: list[str]) -> None:
        *key, synced_at, run_id = columns  # endpoint, workspace, cohort; then the run's
        config = bigquery.QueryJobConfig(
            query_parameters=[
                *(bigquery.ScalarQueryParameter(None, "STRING", v) for v in key),
                bigquery.ScalarQueryParameter(None, "TIMESTAMP", synced_at.replace(tzinfo=UTC)),
                bigquery.ScalarQueryParameter(None, "STRING", run_id),
                bigquery.ArrayQueryParameter(None, "STRING", uids),
            ]
        )
        client.query(insert, job_config=config).result()

    return Store(batches(), record, client.close)


def main() -> int:
    """Read, pack and post every uid of one table, recording each accepted request."""
    parser = argparse.ArgumentParser(description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--duckdb", help="a DuckDB database file")
    source.add_argument("--postgres", help="a libpq connection string")
    source.add_argument(
        "--bigquery", nargs=2, metavar=("ENDPOINT", "PROJECT"), help="a BigQuery API endpoint"
    )
    parser.add_argument("--table", default="main.audience")
    parser.add_argument("--state-table", default="main.bare_state")
    parser.add_argument("--url", required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--max-bytes", type=int, default=128_000)
    args = parser.parse_args()
    started = time.perf_counter()

    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=args.threads))
    workspace = os.environ["MOENGAGE_WORKSPACE_ID"]
    session.auth = (workspace, os.environ["MOENGAGE_API_KEY"])
    session.headers.update({"MOE-APPKEY": workspace, "Content-Type": "application/json"})
    endpoint = args.url.rstrip("/") + "/v1/integrations/cohortsync"
    prefix = (
        b'{"action":"add_members","partner":"bench","parameters":{"cohort_name":".Bench",'
        b'"cohort_id":"audience","cohort_description":"bench","members":['
    )

    store = bigquery_store(args) if args.bigquery else dbapi_store(args)
    one_write = threading.Lock()
    write_seconds = 0.0

    def post(body: bytes, uids: list[str]) -> None:
        nonlocal write_seconds
        session.post(endpoint, data=body, timeout=60).raise_for_status()
        params = (args.url, workspace, "audience", datetime.now(UTC).replace(tzinfo=None))
        with one_write:
            begun = time.perf_counter()
            store.record((*params, "bare"), uids)
            write_seconds += time.perf_counter() - begun

    sent = 0
    with ThreadPoolExecutor(args.threads) as pool:
        # Bounded like the runner: a few bodies queued beyond those in flight.
        pending = []
        for body, uids in bodies(store.uids, prefix, args.max_bytes):
            pending.append(pool.submit(post, body, uids))
            sent += 1
            if len(pending) > args.threads:
                pending.pop(0).result()
        for future in pending:
            future.result()
    store.close()
    seconds = time.perf_counter() - started
    print(json.dumps({"requests": sent, "seconds": seconds, "state_write_seconds": write_seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The yardstick for runner overhead: the least a script can do to send a DuckDB audience.

One query, `fetchmany`, bodies packed the simplest correct way (orjson, member by member,
closed when the next would not fit), posted from a few threads over one requests.Session.
No state, no checkpoints, no retries, no distinct: what is left when the runner's
guarantees are taken away. Prints the requests it made and its wall seconds as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import duckdb
import orjson
import requests
from requests.adapters import HTTPAdapter


def bodies(uids: Iterator[list[str]], prefix: bytes, max_bytes: int) -> Iterator[bytes]:
    """Fill each body up to `max_bytes` of encoded JSON."""
    room = max_bytes - len(prefix) - 3
    members: list[bytes] = []
    used = -1  # no comma before the first member
    for batch in uids:
        for uid in batch:
            piece = b'{"uid":' + orjson.dumps(uid) + b"}"
            if used + 1 + len(piece) > room:
                yield prefix + b",".join(members) + b"]}}"
                members, used = [], -1
            members.append(piece)
            used += 1 + len(piece)
    if members:
        yield prefix + b",".join(members) + b"]}}"


def main() -> int:
    """Read, pack and post every uid of one table; print what it took."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", required=True)
    parser.add_argument("--table", default="main.audience")
    parser.add_argument("--url", required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--max-bytes", type=int, default=128_000)
    args = parser.parse_args()
    started = time.perf_counter()

    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=args.threads))
    session.auth = (os.environ["MOENGAGE_WORKSPACE_ID"], os.environ["MOENGAGE_API_KEY"])
    session.headers.update(
        {"MOE-APPKEY": os.environ["MOENGAGE_WORKSPACE_ID"], "Content-Type": "application/json"}
    )
    endpoint = args.url.rstrip("/") + "/v1/integrations/cohortsync"
    prefix = (
        b'{"action":"add_members","partner":"bench","parameters":{"cohort_name":".Bench",'
        b'"cohort_id":"audience","cohort_description":"bench","members":['
    )

    def post(body: bytes) -> None:
        session.post(endpoint, data=body, timeout=60).raise_for_status()

    conn = duckdb.connect(args.database, read_only=True)
    cursor = conn.execute(f"select uid from {args.table}")

    def batches() -> Iterator[list[str]]:
        while rows := cursor.fetchmany(50_000):
            yield [row[0] for row in rows]

    sent = 0
    with ThreadPoolExecutor(args.threads) as pool:
        # Bounded like the runner: a few bodies queued beyond those in flight.
        pending = []
        for body in bodies(batches(), prefix, args.max_bytes):
            pending.append(pool.submit(post, body))
            sent += 1
            if len(pending) > args.threads:
                pending.pop(0).result()
        for future in pending:
            future.result()
    conn.close()
    print(json.dumps({"requests": sent, "seconds": time.perf_counter() - started}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

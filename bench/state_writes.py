"""Record an audience in the state the way the runner's checkpoints do, and nothing else.

One write per request, each of that request's uids, then the close that folds DuckDB's WAL
into the file: the part of a sync that the bare client leaves out, measured alone. Prints
its wall seconds as JSON; the bench reads its CPU time from the process.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

from dbt_moengage.cohorts import CohortSpec
from dbt_moengage.warehouse.duckdb import DEFAULT_MEMORY_LIMIT, DuckDBWarehouse
from dbt_moengage.warehouse.schema import StateKey


def main() -> int:
    """Read the audience's uids, then time recording them in `--requests` writes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--memory-limit", default=DEFAULT_MEMORY_LIMIT)
    args = parser.parse_args()
    warehouse = DuckDBWarehouse(args.database, memory_limit=args.memory_limit)
    warehouse.prepare_state(create=True)
    uids = [uid for (uid,) in warehouse.conn.execute("select uid from main.audience").fetchall()]
    cohort = CohortSpec(
        model="audience",
        unique_id="model.bench.audience",
        relation_name="main.audience",
        cohort_name=".Bench Audience",
        cohort_id="audience",
        description="bench",
        uid_column="uid",
    )
    key = StateKey("http://127.0.0.1", "BENCH_WORKSPACE")
    size = math.ceil(len(uids) / args.requests)
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(uids), size):
        warehouse.record_added(cohort, key, uids[start : start + size], "bench")
    warehouse.close()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The state of a cohort synced long ago, written directly, for the bench's re-send figure.

`write`: the state tables as the runner creates them (StateStore.prepare), then every uid
of the audience table (`--table`) as a member MoEngage accepted, under the state key the
runner will use (`--base-url`, normalized as the runner does, and the bench's workspace),
in one INSERT ... SELECT: every `--due-every`-th row (by row_number(): ceil(N / due
every) of them) accepted `--due-days-ago` days ago, the others now. Under a resend_after
shorter than that, exactly those are due (StateStore.due: a member comes due at the latest
resend_after after MoEngage accepted it, and never within 1/8 of resend_after). On
Postgres the members' index is dropped for the insert and built again by a second prepare
(the runner's own statement), then the table is vacuumed and analyzed, as autovacuum
would have left it. The cohort's record
(model, name, description) is written as a sync leaves it, so the run sends no rename.

`checkpoints`: after the runner's re-send run, its checkpoints' work again, alone:
StateStore.record_resent of the uids the run re-sent (the rows it wrote with its run id),
one write per request it made (each appends the request's rows), then what the run does
once at its cohort's end: the statistics (StateStore.refresh_statistics, on Postgres) and
the compaction (StateStore.compact: the older rows of those uids go).
An estimate of what the checkpoints and the compaction cost within the run (the runner
does not report them), on the state the run left; that state's member rows are counted
first (`state_rows`: one per member once the run compacted).

Both print JSON: seconds (writing the state; the checkpoints' writes alone) and the rows
written (the members written; the uids re-sent), and for `checkpoints` compact_seconds and
state_rows.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import datetime, timedelta

from state_writes import add_sources, open_engine

from dbt_moengage.cohorts import CohortSpec
from dbt_moengage.state import StateKey, StateStore
from dbt_moengage.state.schema import MEMBERS, normalize_endpoint
from dbt_moengage.state.store import CohortRecord, utcnow

STATE_RUN_ID = "bench-state"
CHECKPOINTS_RUN_ID = "bench-checkpoints"
COHORT_ID = "audience"  # the bench model's name: its default cohort_id
COHORT_NAME = ".Bench Audience"


def write(
    state: StateStore,
    cohort: CohortSpec,
    key: StateKey,
    description: str,
    due_every: int,
    due_at: datetime,
) -> int:
    """The members and the cohort's record; the number of members written."""
    engine = state.engine
    state.prepare(create=True)
    members = engine.state_table(MEMBERS)
    index = None
    if engine.engine == "postgres":
        from dbt_moengage.warehouse.postgres import MEMBERS_KEY

        index = f"{engine.quote(engine.state_schema)}.{engine.quote(MEMBERS_KEY)}"
        engine.execute_sql(f"drop index if exists {index}").close()
    insert = f"""
        insert into {members} (endpoint, workspace_id, cohort_id, uid, synced_at, run_id)
        select ?, ?, ?, a.uid, case when mod(a.n, {due_every}) = 1 then ? else ? end, ?
        from (select uid, row_number() over () as n from {cohort.relation_name}) a"""
    params = (*key.params, cohort.cohort_id, due_at, utcnow(), STATE_RUN_ID)
    engine.execute_sql(insert, params, "insert_members").close()
    if index is not None:
        state.prepare(create=True)  # builds the index again, as the runner creates it
        engine.execute_sql(f"vacuum (freeze, analyze) {members}").close()
    state.save_cohort(cohort, key, CohortRecord(cohort.model, COHORT_NAME, description))
    row = engine.one("member_count", (*key.params, cohort.cohort_id))
    return int(row[0])


def checkpoints(
    state: StateStore, cohort: CohortSpec, key: StateKey, requests: int
) -> dict[str, float]:
    """Time record_resent of the uids the last run re-sent, then the compaction; count the
    state's member rows the run left first."""
    engine = state.engine
    state.prepare(create=False)
    members = engine.state_table(MEMBERS)
    where = "endpoint = ? and workspace_id = ? and cohort_id = ?"
    params = (*key.params, cohort.cohort_id)
    cursor = engine.execute_sql(f"select count(*) from {members} where {where}", params)
    (state_rows,) = cursor.fetchone()
    cursor.close()
    cursor = engine.execute_sql(
        f"select uid from {members} where {where} and run_id <> ?", (*params, STATE_RUN_ID)
    )
    uids = [uid for (uid,) in cursor.fetchall()]
    cursor.close()
    size = max(math.ceil(len(uids) / max(requests, 1)), 1)
    started = time.perf_counter()
    for start in range(0, len(uids), size):
        state.record_resent(cohort, key, uids[start : start + size], CHECKPOINTS_RUN_ID)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    # As the run ends a cohort: the planner's statistics first (Postgres), then compaction.
    state.refresh_statistics(len(uids), int(state_rows))
    state.compact(cohort, key, CHECKPOINTS_RUN_ID)
    return {
        "rows": len(uids),
        "seconds": seconds,
        "compact_seconds": time.perf_counter() - started,
        "state_rows": int(state_rows),
    }


def main() -> int:
    """Write the state, or time the re-send checkpoints."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=("write", "checkpoints"))
    add_sources(parser)
    parser.add_argument("--table", required=True, help="the audience (the cohort's model)")
    parser.add_argument("--state-schema", required=True)
    parser.add_argument("--base-url", required=True, help="the emulator the run will sync to")
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--description", default="", help="the model's, for its record")
    parser.add_argument("--due-every", type=int, default=7, help="write: one member in N due")
    parser.add_argument("--due-days-ago", type=float, default=8, help="write: when they synced")
    parser.add_argument("--requests", type=int, default=1, help="checkpoints: writes to make")
    parser.add_argument("--memory-limit", default="1GB", help="DuckDB's")
    args = parser.parse_args()
    warehouse = open_engine(args)
    state = StateStore(warehouse)
    cohort = CohortSpec(
        model="audience",
        unique_id="model.moengage_bench.audience",
        relation_name=args.table,
        cohort_name=COHORT_NAME,
        cohort_id=COHORT_ID,
        description=args.description,
        uid_column="uid",
    )
    key = StateKey(normalize_endpoint(args.base_url), args.workspace)
    if args.action == "write":
        started = time.perf_counter()
        due_at = utcnow() - timedelta(days=args.due_days_ago)
        rows = write(state, cohort, key, args.description, args.due_every, due_at)
        found: dict[str, float] = {"seconds": time.perf_counter() - started, "rows": rows}
    else:
        found = checkpoints(state, cohort, key, args.requests)
    warehouse.close()
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The state's statements that are the same on every engine, and the pieces engines vary.

`{members}`, `{runs}`, ... are the state tables; `{model_uids}` is the cohort model's
sendable uids, `{state_uids}` what MoEngage was told (read as a set), `{due}` whether a
state row is due for a re-send, `{json_uids}` a request's uids unpacked from one JSON
parameter. The warehouse engine fills them in (Engine.format).
"""

from __future__ import annotations

from .schema import COHORTS, NOTIFICATIONS, RUNS, STATE_COLUMNS, WEBHOOK_RUNS, state_ddl

# A rename travels with an add of this many current members (re-sent, so harmless).
RENAME_BATCH = 100

_STATE_KEY = "endpoint = ? and workspace_id = ? and cohort_id = ?"
_RUN_COLUMNS = ", ".join(name for name, _, _ in STATE_COLUMNS[RUNS])
_COHORT_COLUMNS = ", ".join(name for name, _, _ in STATE_COLUMNS[COHORTS])
_NOTIFIED_COLUMNS = ", ".join(name for name, _, _ in STATE_COLUMNS[NOTIFICATIONS])
_WEBHOOK_RUN_COLUMNS = ", ".join(name for name, _, _ in STATE_COLUMNS[WEBHOOK_RUNS])
_WEBHOOK_RUN = "account_id = ? and run_id = ?"


def _values(table: str) -> str:
    return ", ".join("?" for _ in STATE_COLUMNS[table])


def _compact_members(uid: str) -> str:
    """Delete every member row of a cohort that a newer row of its uid supersedes (`uid`:
    how to read a row's uid, `{}` its table's alias). Only the uids with several rows are
    joined back (few: what a run that died left), by a join that is not correlated: the
    join stays small, within DuckDB's memory cap, however large the cohort."""
    return f"""
        delete from {{members}} d using (
            select {uid.format("m")} as uid, max(m.synced_at) as newest from {{members}} m
            where m.endpoint = ? and m.workspace_id = ? and m.cohort_id = ?
            group by 1 having count(*) > 1
        ) n
        where d.endpoint = ? and d.workspace_id = ? and d.cohort_id = ?
            and {uid.format("d")} = n.uid and d.synced_at < n.newest"""


def bigquery_compact_members(uid: str) -> str:
    """`_compact_members` for BigQuery, whose DELETE takes no USING: the same join as a
    correlated EXISTS (which BigQuery plans as a join)."""
    return f"""
        delete from {{members}} d where d.endpoint = ? and d.workspace_id = ? and d.cohort_id = ?
        and exists (
            select 1 from (
                select {uid.format("m")} as uid, max(m.synced_at) as newest from {{members}} m
                where m.endpoint = ? and m.workspace_id = ? and m.cohort_id = ?
                group by 1 having count(*) > 1
            ) n where n.uid = {uid.format("d")} and n.newest > d.synced_at)"""


# Statements every engine runs as they are (`?` parameters, ANSI SQL). Engines give the
# fragments that differ (warehouse/engine.py, warehouse/sql.py): `json_uids` (a request's
# uids from one JSON parameter), the model's uids, the anti-joins, how to read a timestamp
# and hash a uid.
STATE_SQL: dict[str, str] = {
    # The state is read as a set: a uid's rows are one member, accepted last at its newest
    # row (a re-send adds a row; `compact_run` deletes the older ones at the cohort run's
    # end), so a re-sent uid is never counted twice nor judged by an older acceptance. `n`:
    # its rows (the plan counts what compaction has left to do).
    "state_uids": (
        "select uid, max(synced_at) as synced_at, count(*) as n from {members} "
        f"where {_STATE_KEY} group by uid"
    ),
    "plan": """
        select count(m.uid),
            sum(case when s.uid is null then 1 else 0 end),
            sum(case when m.uid is null then 1 else 0 end),
            sum(case when m.uid is not null and s.uid is not null and ({due}) then 1 else 0 end),
            count(s.uid),
            sum(s.n)
        from ({model_uids}) m full outer join ({state_uids}) s on m.uid = s.uid""",
    "resend_delta": """
        select s.uid from ({state_uids}) s join ({model_uids}) m on s.uid = m.uid
        where {due}""",
    "rename_members": f"""
        select s.uid from ({{state_uids}}) s join ({{model_uids}}) m on s.uid = m.uid
        limit {RENAME_BATCH}""",
    "insert_members": """
        insert into {members} (endpoint, workspace_id, cohort_id, synced_at, run_id, uid)
        select ?, ?, ?, ?, ?, j.uid from ({json_uids}) j""",
    "delete_members": f"""
        delete from {{members}} where {_STATE_KEY} and uid in ({{json_uids}})""",
    # A re-send is recorded as new rows (as `insert_members`): appending costs what the
    # request holds, where an update by uid would find its rows by scanning the cohort's
    # state on an engine without indexes. Once per cohort run, the rows older than the
    # run's own of the uids it wrote go (`compact_run`); what a run that died left, the
    # next run's plan finds (rows > uids) and `compact_members` deletes: every row of a uid
    # but its newest. Both keep each uid's newest row, so a crash between them loses none.
    "compact_run": f"""
        delete from {{members}} where {_STATE_KEY} and run_id <> ? and uid in (
            select uid from {{members}} where {_STATE_KEY} and run_id = ?)""",
    "compact_members": _compact_members("{}.uid"),
    "member_count": "select count(*) from ({state_uids}) s",
    "legacy_members": (
        "select count(*) from {members} where endpoint = ? and workspace_id = ? and cohort_id = ?"
    ),
    "adopt_legacy": """
        update {members} set endpoint = ?, synced_at = ?
        where endpoint = ? and workspace_id = ? and cohort_id = ?""",
    "delete_run": f"delete from {{runs}} where run_id = ? and {_STATE_KEY}",
    "insert_run": f"insert into {{runs}} ({_RUN_COLUMNS}) values ({_values(RUNS)})",
    "cohort_record": (
        f"select model, cohort_name, cohort_description from {{cohorts}} where {_STATE_KEY}"
    ),
    "delete_cohort": f"delete from {{cohorts}} where {_STATE_KEY}",
    "insert_cohort": f"insert into {{cohorts}} ({_COHORT_COLUMNS}) values ({_values(COHORTS)})",
    "cohort_names": (
        "select cohort_id, model, cohort_name from {cohorts} "
        "where endpoint = ? and workspace_id = ?"
    ),
    "notified": (
        "select cohort_id, last_notified_status from {notifications} "
        "where endpoint = ? and workspace_id = ?"
    ),
    "delete_notified": f"delete from {{notifications}} where {_STATE_KEY}",
    "insert_notified": (
        f"insert into {{notifications}} ({_NOTIFIED_COLUMNS}) values ({_values(NOTIFICATIONS)})"
    ),
    "run_models": (
        "select cohort_id, model from {runs} where workspace_id = ? and status = 'synced' "
        "order by started_at"
    ),
    # The lock: taken in one atomic statement on the warehouse's clock ({now}; {ago}: the
    # stale cut-off): a free key is inserted, a stale holder's row taken over. Every
    # parameter is in the source row (fakesnow reorders parameters placed elsewhere).
    "take_lock": """
        merge into {locks} l
        using (
            select ? as endpoint, ? as workspace_id, ? as cohort_id, ? as run_id,
                ? as stale_seconds
        ) s
        on l.endpoint = s.endpoint and l.workspace_id = s.workspace_id
            and l.cohort_id = s.cohort_id
        when matched and l.heartbeat_at < {ago} then
            update set run_id = s.run_id, locked_at = {now}, heartbeat_at = {now}
        when not matched then
            insert (endpoint, workspace_id, cohort_id, run_id, locked_at, heartbeat_at)
            values (s.endpoint, s.workspace_id, s.cohort_id, s.run_id, {now}, {now})""",
    "lock_holder": f"""
        select run_id, locked_at from {{locks}} where {_STATE_KEY}
        order by locked_at, run_id limit 1""",
    "lock_owned": f"select count(*) from {{locks}} where {_STATE_KEY} and run_id = ?",
    # A run's lock row still beaten within the stale window ({since}: the cut-off).
    "lock_alive": (
        f"select count(*) from {{locks}} where {_STATE_KEY} and run_id = ? "
        "and heartbeat_at >= {since}"
    ),
    "release_lock": f"delete from {{locks}} where {_STATE_KEY} and run_id = ?",
    "heartbeat_lock": (
        f"update {{locks}} set heartbeat_at = {{now}} where {_STATE_KEY} and run_id = ?"
    ),
    # The dbt Cloud runs the webhook receiver accepted (integrations/dbt_cloud/ledger.py).
    "webhook_run_status": f"select status from {{webhook_runs}} where {_WEBHOOK_RUN}",
    "delete_webhook_run": f"delete from {{webhook_runs}} where {_WEBHOOK_RUN}",
    "insert_webhook_run": (
        f"insert into {{webhook_runs}} ({_WEBHOOK_RUN_COLUMNS}) values ({_values(WEBHOOK_RUNS)})"
    ),
    "webhook_run_attempts": (
        f"update {{webhook_runs}} set attempts = ? where {_WEBHOOK_RUN} and status = 'queued'"
    ),
    "finish_webhook_run": (
        "update {webhook_runs} set status = ?, finished_at = ?, attempts = ?, error = ? "
        f"where {_WEBHOOK_RUN}"
    ),
    "queued_webhook_runs": (
        "select account_id, job_id, run_id, run_status, attempts from {webhook_runs} "
        "where status = 'queued' order by received_at, run_id"
    ),
    # Runners of one workspace sharing its quota (state/peers.py). {now}: the warehouse's
    # clock; {age}, {ended_age}: seconds since a row's last beat and since its run ended;
    # {since}: a cut-off `?` seconds ago.
    "join_peers": """
        insert into {peers}
            (endpoint, workspace_id, run_id, started_at, heartbeat_at, share, in_window)
        values (?, ?, ?, {now}, {now}, ?, ?)""",
    "beat_peer": """
        update {peers} set heartbeat_at = {now}, share = ?, in_window = ?
        where endpoint = ? and workspace_id = ? and run_id = ?""",
    "leave_peers": """
        update {peers} set heartbeat_at = {now}, ended_at = {now}, share = 0, in_window = ?
        where endpoint = ? and workspace_id = ? and run_id = ?""",
    "peers": """
        select run_id, share, in_window, {age}, {ended_age} from {peers}
        where endpoint = ? and workspace_id = ? and run_id <> ? and heartbeat_at >= {since}""",
    "forget_peers": """
        delete from {peers} where endpoint = ? and workspace_id = ? and heartbeat_at < {since}""",
    "state_version": "select max(version) from {version}",
    "insert_version": "insert into {version} (version, upgraded_at, runner) values (?, ?, ?)",
}


def exact_state_sql(exact: str) -> dict[str, str]:
    """The statements that match state uids, with the state's `uid` read through `exact`.

    For engines whose state columns may carry a collation the runner did not choose
    (Snowflake's DEFAULT_DDL_COLLATION applies to tables dbt or the runner creates): `exact`
    (`{}` is the column) strips it, so 'abc' never matches 'ABC'. Grouped by position: a
    name in GROUP BY would mean the collated column, not the select's exact alias.
    """
    uid = exact.format("uid")
    return {
        "state_uids": (
            f"select {uid} as uid, max(synced_at) as synced_at, count(*) as n from {{members}} "
            f"where {_STATE_KEY} group by 1"
        ),
        "delete_members": f"""
        delete from {{members}} where {_STATE_KEY} and {uid} in ({{json_uids}})""",
        "compact_run": f"""
        delete from {{members}} where {_STATE_KEY} and run_id <> ? and {uid} in (
            select {uid} from {{members}} where {_STATE_KEY} and run_id = ?)""",
        "compact_members": _compact_members(exact.format("{}.uid")),
    }


def state_sql(types: dict[str, str], exact: str | None = None) -> dict[str, str]:
    """An engine's state statements: STATE_SQL, the state tables' DDL with its `types`, and
    where the state's uid may carry a collation, the statements that read it through
    `exact` (exact_state_sql)."""
    return {**STATE_SQL, **(exact_state_sql(exact) if exact else {}), **state_ddl(types)}

"""The sync state's tables: their columns, their version, and how older state is upgraded.

State is keyed by endpoint and workspace: the emulator and production, or two data
centers, never share it. Version 1 (before endpoints) keyed it by workspace alone; a
runner meeting it adds the missing columns in place. Rows written then have an unknown
endpoint (''): the first endpoint that syncs such a cohort adopts them as due for a
re-send, so every member is sent again there (the safe side) while mirror mode can still
remove members that left. Version 3 adds each run row's member count after the run
(`members_after`, null on older rows) and the table of what notifications last said.
Version 4 adds no column: it changes how Postgres locks a cohort (a lock row under a unique
key instead of a session advisory lock) and adds the key Postgres looks members up by; an
older runner, locking the old way, must not sync beside a newer one. Version 5 adds each run
row's bytes billed (`bytes_billed`: what the cohort's warehouse jobs cost, on engines whose
jobs report it, BigQuery; null elsewhere and on older rows). Version 6 adds the table of
the dbt Cloud runs the webhook receiver accepted (`moengage_webhook_runs`): a run answered
`queued` is there before the answer, so a receiver that stopped resumes it, and a run synced
once is never synced again by a replayed event. Version 7 adds the table where runners of
one workspace share its quota (`moengage_quota_peers`, state/peers.py): a row per run and
destination while it sends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

MEMBERS = "moengage_cohort_members"
RUNS = "moengage_sync_runs"
LOCKS = "moengage_sync_locks"
COHORTS = "moengage_cohorts"
VERSION = "moengage_state_version"
# The status of each cohort the last notification announced (notify/). A table of its own,
# not columns of moengage_cohorts: a row there means MoEngage got the cohort's name and
# settles who owns a cohort id, so a cohort whose only runs failed must not get one; and
# the notifier writes after the post, outside the cohort's lock, never racing a sync's
# delete-then-insert of the cohort's name.
NOTIFICATIONS = "moengage_notifications"
# The dbt Cloud runs the webhook receiver (serve-webhook) accepted, one row per run: queued
# until synced or given up. Written before the receiver answers `queued`.
WEBHOOK_RUNS = "moengage_webhook_runs"
# The runners sending to each workspace, with their share of its quota (state/peers.py):
# one row per run and destination, beaten while it sends.
PEERS = "moengage_quota_peers"
STATE_TABLES = (MEMBERS, RUNS, LOCKS, COHORTS, VERSION, NOTIFICATIONS, WEBHOOK_RUNS, PEERS)
# How the SQL templates name each table: `{members}`, `{runs}`, ...
ALIASES = {
    MEMBERS: "members",
    RUNS: "runs",
    LOCKS: "locks",
    COHORTS: "cohorts",
    VERSION: "version",
    NOTIFICATIONS: "notifications",
    WEBHOOK_RUNS: "webhook_runs",
    PEERS: "peers",
}

SCHEMA_VERSION = 7
# The oldest version a read-only run (a dry run, validate --warehouse) reads as it is:
# versions 3, 5, 6 and 7 only added what syncing writes (members_after, notifications,
# bytes_billed, webhook runs, quota peers), never what a plan reads; history reads a
# missing run column as null.
READABLE_SINCE = 2
# The version that added each table created after version 1 (a missing one is created).
TABLE_SINCE = {COHORTS: 2, VERSION: 2, NOTIFICATIONS: 3, WEBHOOK_RUNS: 6, PEERS: 7}
# The endpoint of rows written before state was kept per endpoint.
LEGACY_ENDPOINT = ""
# synced_at of adopted legacy rows: before any real sync, so always due for a re-send.
LEGACY_SYNCED_AT = datetime(1970, 1, 1)

# The state tables' columns: (name, kind, not null). The dbt package's
# _moengage_state_columns macro holds the same list; integration_tests compares them.
STATE_COLUMNS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    MEMBERS: (
        ("endpoint", "string", True),
        ("workspace_id", "string", True),
        ("cohort_id", "string", True),
        ("uid", "string", True),
        ("synced_at", "timestamp", True),
        ("run_id", "string", True),
    ),
    RUNS: (
        ("run_id", "string", True),
        ("endpoint", "string", True),
        ("workspace_id", "string", True),
        ("cohort_id", "string", True),
        ("model", "string", True),
        ("mode", "string", True),
        ("full_refresh", "boolean", True),
        ("started_at", "timestamp", True),
        ("finished_at", "timestamp", False),
        ("status", "string", True),
        ("added", "bigint", False),
        ("removed", "bigint", False),
        ("resent", "bigint", False),
        ("unchanged", "bigint", False),
        ("left_but_kept", "bigint", False),
        ("requests", "bigint", False),
        ("retries", "bigint", False),
        ("renamed", "boolean", False),
        ("error", "string", False),
        # Members the state holds for the cohort once the run ended: what MoEngage was told.
        ("members_after", "bigint", False),
        # Bytes the warehouse billed for the cohort's jobs in the run, up to this row's own
        # write (engines whose jobs report it: BigQuery); null where the engine reports none.
        ("bytes_billed", "bigint", False),
    ),
    LOCKS: (
        ("endpoint", "string", True),
        ("workspace_id", "string", True),
        ("cohort_id", "string", True),
        ("run_id", "string", True),
        ("locked_at", "timestamp", True),
        ("heartbeat_at", "timestamp", True),
    ),
    COHORTS: (
        ("endpoint", "string", True),
        ("workspace_id", "string", True),
        ("cohort_id", "string", True),
        ("model", "string", True),
        ("cohort_name", "string", False),
        ("cohort_description", "string", False),
        ("updated_at", "timestamp", True),
    ),
    VERSION: (
        ("version", "bigint", True),
        ("upgraded_at", "timestamp", True),
        ("runner", "string", True),
    ),
    NOTIFICATIONS: (
        ("endpoint", "string", True),
        ("workspace_id", "string", True),
        ("cohort_id", "string", True),
        ("model", "string", True),
        ("last_notified_status", "string", True),
        ("last_notified_at", "timestamp", True),
        ("run_id", "string", True),
    ),
    WEBHOOK_RUNS: (
        # The dbt Cloud run: its account (for the artifacts' URL), job, id, and how it ended
        # in dbt Cloud (runStatus: Success, Errored, ...).
        ("account_id", "string", True),
        ("job_id", "string", True),
        ("run_id", "string", True),
        ("run_status", "string", True),
        # queued (accepted, not synced yet), synced, or given_up.
        ("status", "string", True),
        ("received_at", "timestamp", True),
        ("finished_at", "timestamp", False),
        # Fetches of the run's artifacts so far.
        ("attempts", "bigint", False),
        ("error", "string", False),
    ),
    PEERS: (
        ("endpoint", "string", True),
        ("workspace_id", "string", True),
        ("run_id", "string", True),
        ("started_at", "timestamp", True),
        # Beaten on the warehouse's clock while the run sends; a row not beaten for a while
        # belongs to a runner that died.
        ("heartbeat_at", "timestamp", True),
        # The most request starts the runner may let into any window (its claim), and how
        # many its window held at the last beat.
        ("share", "bigint", True),
        ("in_window", "bigint", True),
        ("ended_at", "timestamp", False),
    ),
}

# Columns each version added to tables that existed before it, and the value their old
# rows get ('' for the endpoint; none, so null, for counts unknown then).
ADDED_IN: dict[int, dict[str, tuple[tuple[str, str], ...]]] = {
    2: {
        MEMBERS: (("endpoint", "''"),),
        RUNS: (("endpoint", "''"), ("resent", ""), ("renamed", "")),
        LOCKS: (("endpoint", "''"),),
    },
    3: {
        RUNS: (("members_after", ""),),
    },
    5: {
        RUNS: (("bytes_billed", ""),),
    },
}
# What each upgrade changes, as the runner tells the user once it ran.
UPGRADE_NOTES = {
    2: (
        "state is now kept per endpoint (MoEngage server) and workspace; members recorded "
        "before are sent again on their cohort's next sync"
    ),
    3: (
        "run rows now record the cohort's member count after each run (members_after; "
        "empty for earlier runs), and notifications remember what they last announced"
    ),
    4: (
        "on Postgres the cohort lock is now a lock row (it holds behind PgBouncer and other "
        "transaction poolers) and members are looked up by an index; runners older than "
        "this version must not sync into this state"
    ),
    5: (
        "run rows now record the bytes the warehouse billed for each cohort's jobs "
        "(bytes_billed; empty for earlier runs and on warehouses that report no cost)"
    ),
    6: (
        f"the dbt Cloud webhook receiver now keeps the runs it accepted in {WEBHOOK_RUNS} "
        "(queued ones are resumed after a restart; a run synced once is never synced again)"
    ),
    7: (
        f"runners sending to one workspace at once now share its quota through {PEERS}, "
        "instead of each pacing to all of it"
    ),
}


@dataclass(frozen=True)
class StateKey:
    """Whose state: the normalized endpoint (server) and the workspace id."""

    endpoint: str
    workspace_id: str

    @property
    def params(self) -> tuple[str, str]:
        """The key as the first two parameters of a state statement."""
        return (self.endpoint, self.workspace_id)


def normalize_endpoint(base_url: str) -> str:
    """The server a base URL names, as state keys it: scheme://host[:port][/path], lower-case
    scheme and host, no default port, no trailing slash.

    https://API-01.moengage.com:443/ and MOENGAGE_DATA_CENTER=01 are one endpoint; the
    emulator on 127.0.0.1:8765 is another.
    """
    if not base_url:
        return ""
    parts = urlsplit(base_url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = {"https": 443, "http": 80}.get(scheme)
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


@dataclass(frozen=True)
class StateStatus:
    """What prepare_state found: whether the state is usable, and what it upgraded."""

    ready: bool
    upgraded_from: int | None = None
    # What the user should know: a read-only run cannot use the state as it is (an upgrade
    # is due), or the state was just created (the dbt package views need a rebuild).
    note: str = ""
    # The state's version as found (a read-only run may read an older one as it is).
    version: int = SCHEMA_VERSION


# The state columns' kinds as plain SQL names them (DuckDB, Postgres; Snowflake changes
# two): `types` of state_ddl. The dbt package's variants for these engines use the same.
SQL_STATE_TYPES = {
    "string": "varchar",
    "timestamp": "timestamp",
    "bigint": "bigint",
    "boolean": "boolean",
}


def present_state_tables(rows: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """The state tables among a catalog's (table, column) rows of lower-case names, each
    with its columns (what Engine.state_columns returns)."""
    found: dict[str, set[str]] = {}
    for table, column in rows:
        if table in STATE_TABLES:
            found.setdefault(table, set()).add(column)
    return found


def state_ddl(types: dict[str, str]) -> dict[str, str]:
    """`create table if not exists` per state table, with the engine's type names."""
    ddl = {}
    for table, columns in STATE_COLUMNS.items():
        body = ",\n".join(
            f"    {name} {types[kind]}{' not null' if not_null else ''}"
            for name, kind, not_null in columns
        )
        ddl[f"create_{table}"] = f"create table if not exists {{{ALIASES[table]}}} (\n{body}\n)"
    return ddl


def upgrade_statements(types: dict[str, str], present: dict[str, set[str]]) -> list[str]:
    """`alter table ... add column` for each column an older table lacks, oldest first.

    Decided by the columns present, not the recorded version: tables an older dbt package
    created carry no version row.
    """
    statements = []
    for added_in in sorted(ADDED_IN):
        for table, added in ADDED_IN[added_in].items():
            if table not in present:
                continue
            kinds = {name: kind for name, kind, _ in STATE_COLUMNS[table]}
            for name, default in added:
                if name in present[table]:
                    continue
                column = f"{name} {types[kinds[name]]}" + (f" default {default}" if default else "")
                statements.append(
                    f"alter table {{{ALIASES[table]}}} add column if not exists {column}"
                )
    return statements


def schema_version_from(present: dict[str, set[str]], recorded: int | None) -> int:
    """The state's version: as recorded, else the oldest whose added columns or tables are
    missing (tables the dbt package created carry no version row)."""
    if recorded is not None:
        return recorded
    for added_in in sorted({*ADDED_IN, *TABLE_SINCE.values()}):
        for table, added in ADDED_IN.get(added_in, {}).items():
            if table in present and any(name not in present[table] for name, _ in added):
                return added_in - 1
        tables = [table for table, since in TABLE_SINCE.items() if since == added_in]
        if present and any(table not in present for table in tables):
            return added_in - 1
    return SCHEMA_VERSION


def upgrade_note(upgraded_from: int) -> str:
    """What the upgrade from `upgraded_from` to SCHEMA_VERSION changed, in a sentence."""
    notes = [note for version, note in sorted(UPGRADE_NOTES.items()) if version > upgraded_from]
    return "; ".join(notes)

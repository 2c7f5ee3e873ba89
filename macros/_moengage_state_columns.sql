{#-
    _moengage_state_columns: the state tables' columns, the one list every DDL variant renders.

    Returns a list of tables, in creation order, each
        {'name': 'moengage_cohort_members', 'columns': [[column, kind, not_null], ...]}
    where kind is one of string, timestamp, bigint, boolean: each engine variant of
    moengage_state_tables_sql maps a kind to its own type. The Python runner creates and
    writes the same tables, so names, order, kinds and nullability here must match its DDL
    (dbt_moengage/state/schema.py, version 6). Timestamps hold UTC.
-#}
{% macro _moengage_state_columns() %}
    {{ return([
        {'name': 'moengage_cohort_members', 'columns': [
            ['endpoint', 'string', true],
            ['workspace_id', 'string', true],
            ['cohort_id', 'string', true],
            ['uid', 'string', true],
            ['synced_at', 'timestamp', true],
            ['run_id', 'string', true],
        ]},
        {'name': 'moengage_sync_runs', 'columns': [
            ['run_id', 'string', true],
            ['endpoint', 'string', true],
            ['workspace_id', 'string', true],
            ['cohort_id', 'string', true],
            ['model', 'string', true],
            ['mode', 'string', true],
            ['full_refresh', 'boolean', true],
            ['started_at', 'timestamp', true],
            ['finished_at', 'timestamp', false],
            ['status', 'string', true],
            ['added', 'bigint', false],
            ['removed', 'bigint', false],
            ['resent', 'bigint', false],
            ['unchanged', 'bigint', false],
            ['left_but_kept', 'bigint', false],
            ['requests', 'bigint', false],
            ['retries', 'bigint', false],
            ['renamed', 'boolean', false],
            ['error', 'string', false],
            ['members_after', 'bigint', false],
            ['bytes_billed', 'bigint', false],
        ]},
        {'name': 'moengage_sync_locks', 'columns': [
            ['endpoint', 'string', true],
            ['workspace_id', 'string', true],
            ['cohort_id', 'string', true],
            ['run_id', 'string', true],
            ['locked_at', 'timestamp', true],
            ['heartbeat_at', 'timestamp', true],
        ]},
        {'name': 'moengage_cohorts', 'columns': [
            ['endpoint', 'string', true],
            ['workspace_id', 'string', true],
            ['cohort_id', 'string', true],
            ['model', 'string', true],
            ['cohort_name', 'string', false],
            ['cohort_description', 'string', false],
            ['updated_at', 'timestamp', true],
        ]},
        {'name': 'moengage_state_version', 'columns': [
            ['version', 'bigint', true],
            ['upgraded_at', 'timestamp', true],
            ['runner', 'string', true],
        ]},
        {'name': 'moengage_notifications', 'columns': [
            ['endpoint', 'string', true],
            ['workspace_id', 'string', true],
            ['cohort_id', 'string', true],
            ['model', 'string', true],
            ['last_notified_status', 'string', true],
            ['last_notified_at', 'timestamp', true],
            ['run_id', 'string', true],
        ]},
        {'name': 'moengage_webhook_runs', 'columns': [
            ['account_id', 'string', true],
            ['job_id', 'string', true],
            ['run_id', 'string', true],
            ['run_status', 'string', true],
            ['status', 'string', true],
            ['received_at', 'timestamp', true],
            ['finished_at', 'timestamp', false],
            ['attempts', 'bigint', false],
            ['error', 'string', false],
        ]},
        {'name': 'moengage_quota_peers', 'columns': [
            ['endpoint', 'string', true],
            ['workspace_id', 'string', true],
            ['run_id', 'string', true],
            ['started_at', 'timestamp', true],
            ['heartbeat_at', 'timestamp', true],
            ['share', 'bigint', true],
            ['in_window', 'bigint', true],
            ['ended_at', 'timestamp', false],
        ]},
    ]) }}
{% endmacro %}

{#-
    it_load_state_rows: a few rows in the state tables, as the runner would have written them
    over three runs: what the package's views must show once the state exists
    (seeds/state/expected_current_members, expected_sync_history, expected_cohort_status).
    Called from on-run-start under `--vars '{it_state_exists: true}'`, once
    moengage_create_state_tables made the tables; it empties them first, so it can run again.
-#}
{% macro it_load_state_rows() %}

{%- if not execute -%}
    {{ return('') }}
{%- endif -%}

{%- set members = moengage.moengage_state_relation('moengage_cohort_members') -%}
{%- set runs = moengage.moengage_state_relation('moengage_sync_runs') -%}
{%- set ts = moengage.moengage_state_types()['timestamp'] -%}

{%- call statement('it_load_state_rows') -%}
    {#- `where true`: BigQuery takes no delete without a where clause -#}
    delete from {{ members }} where true;
    delete from {{ runs }} where true;
    insert into {{ members }} (endpoint, workspace_id, cohort_id, uid, synced_at, run_id)
    select 'https://api-01.moengage.com', 'WS_IT', 'high_value_users', 'u-1',
        cast('2026-01-01 10:00:05' as {{ ts }}), 'run-1'
    union all
    select 'https://api-01.moengage.com', 'WS_IT', 'high_value_users', 'u-2',
        cast('2026-01-01 10:00:05' as {{ ts }}), 'run-1'
    union all
    select 'https://api-01.moengage.com', 'WS_IT', 'high_value_users', 'u-3',
        cast('2026-01-02 09:00:07' as {{ ts }}), 'run-2'
    {# u-2 sent again by run-2, its run-1 row not yet compacted: shown once, as run-2's #}
    union all
    select 'https://api-01.moengage.com', 'WS_IT', 'high_value_users', 'u-2',
        cast('2026-01-02 09:00:07' as {{ ts }}), 'run-2'
    union all
    select 'https://api-01.moengage.com', 'WS_IT', 'recently_active_30d', 'u-1',
        cast('2026-01-01 10:00:06' as {{ ts }}), 'run-1';
    insert into {{ runs }} (
        run_id, endpoint, workspace_id, cohort_id, model, mode, full_refresh,
        started_at, finished_at, status,
        added, removed, resent, unchanged, left_but_kept, requests, retries, renamed, error,
        members_after, bytes_billed
    )
    select 'run-1', 'https://api-01.moengage.com', 'WS_IT', 'high_value_users', 'high_value_users', 'add', false,
        cast('2026-01-01 10:00:00' as {{ ts }}), cast('2026-01-01 10:00:42' as {{ ts }}), 'synced',
        2, 0, 0, 0, 0, 1, 0, true, cast(null as {{ dbt.type_string() }}), 2, 10485760
    union all
    select 'run-1', 'https://api-01.moengage.com', 'WS_IT', 'recently_active_30d', 'recently_active', 'mirror', false,
        cast('2026-01-01 10:00:00' as {{ ts }}), cast('2026-01-01 10:00:10' as {{ ts }}), 'synced',
        1, 0, 0, 0, 0, 1, 0, true, null, 1, null
    union all
    select 'run-2', 'https://api-01.moengage.com', 'WS_IT', 'high_value_users', 'high_value_users', 'add', true,
        cast('2026-01-02 09:00:00' as {{ ts }}), cast('2026-01-02 09:01:30' as {{ ts }}), 'synced',
        1, 0, 0, 2, 0, 1, 1, false, null, 3, 31457280
    union all
    select 'run-2', 'https://api-01.moengage.com', 'WS_IT', 'recently_active_30d', 'recently_active', 'mirror', false,
        cast('2026-01-02 09:00:00' as {{ ts }}), cast('2026-01-02 09:00:03' as {{ ts }}), 'failed',
        0, 0, 0, 1, 0, 0, 3, false, 'HTTP 500 from MoEngage', 1, null
    union all
    select 'run-3', 'https://api-01.moengage.com', 'WS_IT', 'enterprise_accounts', 'enterprise_accounts', 'add', false,
        cast('2026-01-03 08:00:00' as {{ ts }}), null, 'running',
        null, null, null, null, null, null, null, null, null, null, null;
{%- endcall -%}
{#- a hook's statements are not committed for it -#}
{%- do adapter.commit() -%}
{{ return('') }}

{% endmacro %}

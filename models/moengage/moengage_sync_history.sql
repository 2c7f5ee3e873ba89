{{ config(
    enabled=var('moengage_state_models', true),
    pre_hook="{{ moengage.moengage_state_tables_sql() }}"
) }}

-- Built after moengage_current_members, never beside it: both pre-hooks create the state
-- tables, and on DuckDB two transactions creating the same table at once conflict.
-- depends_on: {{ ref('moengage_current_members') }}

select
    run_id,
    endpoint,
    workspace_id,
    cohort_id,
    model,
    mode,
    full_refresh,
    status,
    started_at,
    finished_at,
    {{ dbt.datediff('started_at', 'finished_at', 'second') }} as duration_seconds,
    added,
    removed,
    resent,
    unchanged,
    left_but_kept,
    requests,
    retries,
    renamed,
    error
from {{ moengage.moengage_state_relation('moengage_sync_runs') }}

{{ config(enabled=var('moengage_state_models', true)) }}

with runs as (

    {{ moengage.moengage_state_select('moengage_sync_runs') }}

)

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
    error,
    members_after,
    bytes_billed
from runs

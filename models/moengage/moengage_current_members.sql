{{ config(
    enabled=var('moengage_state_models', true),
    pre_hook="{{ moengage.moengage_state_tables_sql() }}"
) }}

select
    endpoint,
    workspace_id,
    cohort_id,
    uid,
    synced_at,
    run_id
from {{ moengage.moengage_state_relation('moengage_cohort_members') }}

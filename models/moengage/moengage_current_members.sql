{{ config(enabled=var('moengage_state_models', true)) }}

with members as (

    {{ moengage.moengage_state_select('moengage_cohort_members') }}

)

select
    endpoint,
    workspace_id,
    cohort_id,
    uid,
    synced_at,
    run_id
from members

{{ config(enabled=var('moengage_state_models', true)) }}

with members as (

    {{ moengage.moengage_state_select('moengage_cohort_members') }}

),

-- A re-send adds a row for its uid; the runner deletes the older rows at the end of the
-- cohort's run (until then, or after a run that died, a uid may have several): each uid is
-- shown once, as MoEngage last accepted it.
ranked as (

    select
        endpoint,
        workspace_id,
        cohort_id,
        uid,
        synced_at,
        run_id,
        row_number() over (
            partition by endpoint, workspace_id, cohort_id, uid
            order by synced_at desc, run_id desc
        ) as member_rank
    from members

)

select
    endpoint,
    workspace_id,
    cohort_id,
    uid,
    synced_at,
    run_id
from ranked
where member_rank = 1

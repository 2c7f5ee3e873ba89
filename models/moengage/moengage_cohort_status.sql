{{ config(enabled=var('moengage_state_models', true)) }}

with members as (

    select
        endpoint,
        workspace_id,
        cohort_id,
        count(distinct uid) as member_count,
        max(synced_at) as last_synced_at
    from {{ ref('moengage_current_members') }}
    group by endpoint, workspace_id, cohort_id

),

ranked_runs as (

    select
        *,
        row_number() over (
            partition by endpoint, workspace_id, cohort_id
            order by started_at desc, run_id desc
        ) as run_rank
    from {{ ref('moengage_sync_history') }}

),

last_runs as (

    select *
    from ranked_runs
    where run_rank = 1

),

-- distinct over union all, which every engine reads: BigQuery refuses a bare `union`, and
-- not all take `union distinct`
cohorts as (

    select distinct endpoint, workspace_id, cohort_id
    from (
        select endpoint, workspace_id, cohort_id from members
        union all
        select endpoint, workspace_id, cohort_id from last_runs
    ) as seen

)

select
    cohorts.endpoint,
    cohorts.workspace_id,
    cohorts.cohort_id,
    last_runs.model,
    coalesce(members.member_count, 0) as member_count,
    members.last_synced_at,
    last_runs.run_id as last_run_id,
    last_runs.status as last_run_status,
    last_runs.started_at as last_run_started_at,
    last_runs.finished_at as last_run_finished_at,
    last_runs.added as last_run_added,
    last_runs.removed as last_run_removed,
    last_runs.resent as last_run_resent,
    last_runs.error as last_run_error
from cohorts
left join members
    on cohorts.endpoint = members.endpoint
    and cohorts.workspace_id = members.workspace_id
    and cohorts.cohort_id = members.cohort_id
left join last_runs
    on cohorts.endpoint = last_runs.endpoint
    and cohorts.workspace_id = last_runs.workspace_id
    and cohorts.cohort_id = last_runs.cohort_id

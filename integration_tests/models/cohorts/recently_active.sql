-- Style b: the cohort is declared under `config: meta:` in cohorts.yml.
-- "Recent" is measured from the latest event in the data, not from today,
-- so the cohort is the same whenever the tests run.
with events as (

    select user_id, occurred_at
    from {{ ref('events') }}

),

as_of as (

    select max(occurred_at) as latest_event_at
    from events

)

select
    events.user_id,
    count(*) as events_last_30_days,
    max(events.occurred_at) as last_event_at
from events
cross join as_of
where events.occurred_at > {{ dbt.dateadd('day', -30, 'as_of.latest_event_at') }}
group by events.user_id

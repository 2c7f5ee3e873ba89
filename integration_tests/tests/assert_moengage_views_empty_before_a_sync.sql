-- `dbt build` runs before any sync (the runner's tests sync against copies of the built
-- database), so the package's views over the state tables must be there and empty.
select 'moengage_cohort_status' as model, count(*) as row_count
from {{ ref('moengage_cohort_status') }}
having count(*) > 0

union all

select 'moengage_current_members' as model, count(*) as row_count
from {{ ref('moengage_current_members') }}
having count(*) > 0

union all

select 'moengage_sync_history' as model, count(*) as row_count
from {{ ref('moengage_sync_history') }}
having count(*) > 0

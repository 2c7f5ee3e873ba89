-- The package installed before any sync: each view over the state builds, and is empty.
{{ config(enabled=not var('it_state_exists', false)) }}

{%- set views = ['moengage_current_members', 'moengage_sync_history', 'moengage_cohort_status'] %}
{%- for view in views %}

select '{{ view }}' as view_name, count(*) as row_count
from {{ ref(view) }}
having count(*) > 0
{%- if not loop.last %}

union all
{%- endif %}
{%- endfor %}

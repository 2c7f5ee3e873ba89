-- The package installed before any sync: `dbt build` created no table named moengage_*
-- anywhere in the database (the package's views are views, and create nothing). Run after
-- the views, which used to create the state tables.
{{ config(enabled=not var('it_state_exists', false)) }}
-- depends_on: {{ ref('moengage_current_members') }}, {{ ref('moengage_sync_history') }}
-- depends_on: {{ ref('moengage_cohort_status') }}

select table_schema, table_name, table_type
{%- if target.type == 'bigquery' %}
-- every dataset of the project in the target's location (the emulator lists none there:
-- tests/e2e/test_bigquery_package.py looks for itself)
from `{{ target.database }}`.`region-{{ target.location | lower }}`.INFORMATION_SCHEMA.TABLES
{%- else %}
from {{ target.database ~ '.' if target.type == 'snowflake' else '' }}information_schema.tables
{%- endif %}
where lower(table_name) like 'moengage%'
    and table_type <> 'VIEW'
    {%- if target.type != 'snowflake' %}
    and table_catalog = '{{ target.database }}'
    {%- endif %}

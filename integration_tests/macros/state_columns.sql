{#- The columns of the state tables in `schema`, as information_schema reports them
    (the shape of seeds/expected_state_columns.csv). DuckDB only, like this project. -#}
{% macro state_columns(schema) %}

select
    cast(table_name as varchar) as table_name,
    cast(column_name as varchar) as column_name,
    cast(ordinal_position as integer) as ordinal_position,
    cast(data_type as varchar) as data_type,
    cast(is_nullable as varchar) as is_nullable
from information_schema.columns
where table_catalog = '{{ target.database }}'
    and table_schema = '{{ schema }}'
    and table_name in (
        'moengage_cohort_members',
        'moengage_sync_runs',
        'moengage_sync_locks',
        'moengage_cohorts',
        'moengage_state_version'
    )

{% endmacro %}

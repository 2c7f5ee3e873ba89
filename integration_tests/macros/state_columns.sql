{#- The columns of relations in `schema`, as information_schema reports them (the shape of
    seeds/state/expected_state_columns.csv): the state tables (the names in the package's
    _moengage_state_columns) unless `names` lists others. DuckDB and Postgres. -#}
{% macro state_columns(schema, names=none) %}

{%- set names = names if names is not none
    else moengage._moengage_state_columns() | map(attribute='name') | list -%}

select
    cast(table_name as varchar) as table_name,
    cast(column_name as varchar) as column_name,
    cast(ordinal_position as integer) as ordinal_position,
    cast(data_type as varchar) as data_type,
    cast(is_nullable as varchar) as is_nullable
from information_schema.columns
where table_catalog = '{{ target.database }}'
    and table_schema = '{{ schema }}'
    and table_name in ('{{ names | join("', '") }}')

{% endmacro %}

{#-
    moengage_state_select: a select of one state table's columns, whether or not the table
    exists yet: the package's views are built on it, so they need no DDL.

        with runs as (
            {{ moengage.moengage_state_select('moengage_sync_runs') }}
        )
        select ... from runs

    When the table exists (the runner or `dbt run-operation moengage_create_state_tables`
    made it), its columns, read from it; a column that state written by an older
    dbt-moengage lacks (members_after before state version 3, bytes_billed before 5) reads
    as a typed null until the runner's next sync adds it. When the table does not exist, no
    row: each column a typed null, `limit 0`, with the names and order of
    _moengage_state_columns and the types of moengage_state_types, the same the DDL creates,
    so a view has the same columns before and after the first sync. The check is made when
    the model runs (dbt's relation cache, else the catalog): a view built before the first
    sync stays empty until it is built again.

    name and schema as in moengage_state_relation.
-#}
{% macro moengage_state_select(name, schema=none) %}
    {{ return(adapter.dispatch('moengage_state_select', 'moengage')(name, schema)) }}
{% endmacro %}


{% macro default__moengage_state_select(name, schema) %}

{%- set relation = moengage.moengage_state_relation(name, schema) -%}
{%- set table = moengage._moengage_state_columns() | selectattr('name', 'equalto', name) | first -%}

{#- while dbt parses there is no connection: the relation stands in -#}
{%- set existing = adapter.get_relation(
    database=relation.database, schema=relation.schema, identifier=relation.identifier
) if execute else relation -%}

{%- set types = moengage.moengage_state_types() -%}
{%- set columns = [] -%}
{%- if existing is not none -%}
    {%- set present = [] -%}
    {%- if execute -%}
        {%- for column in adapter.get_columns_in_relation(existing) -%}
            {%- do present.append(column.name | lower) -%}
        {%- endfor -%}
    {%- endif -%}
    {%- for column_name, kind, not_null in table.columns -%}
        {%- if not execute or column_name in present -%}
            {%- do columns.append(column_name) -%}
        {%- else -%}
            {%- do columns.append('cast(null as ' ~ types[kind] ~ ') as ' ~ column_name) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return('select\n        ' ~ columns | join(',\n        ') ~ '\n    from ' ~ relation) }}
{%- endif -%}

{%- for column_name, kind, not_null in table.columns -%}
    {%- do columns.append('cast(null as ' ~ types[kind] ~ ') as ' ~ column_name) -%}
{%- endfor -%}
{{ return(
    '-- ' ~ relation ~ ' does not exist yet: no row, typed as its DDL types it\n    select\n        '
    ~ columns | join(',\n        ') ~ '\n    limit 0'
) }}

{% endmacro %}

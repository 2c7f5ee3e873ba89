{#-
    _moengage_state_tables_ddl: `create schema if not exists` and one `create table if not
    exists` per state table, as one string of `;`-separated statements.

    types maps each kind in _moengage_state_columns (string, timestamp, bigint, boolean) to the
    engine's type (moengage_state_types); table_options maps a table name to text put after
    its column list (e.g. a clustering key). schema_with_database=false names the schema alone
    in `create schema`, for engines that refuse a database there (Postgres). caller_name is
    the public macro that was called, so an error names it.
-#}
{% macro _moengage_state_tables_ddl(caller_name, schema, types, table_options={}, schema_with_database=true) %}

{%- set schema_relation = api.Relation.create(
    database=target.database,
    schema=moengage._moengage_state_schema(caller_name, schema)
).include(database=schema_with_database) -%}
{%- set statements = ['create schema if not exists ' ~ schema_relation] -%}

{%- for table in moengage._moengage_state_columns() -%}
    {%- set relation = moengage.moengage_state_relation(table.name, schema) -%}
    {%- set columns = [] -%}
    {%- for name, kind, not_null in table.columns -%}
        {%- do columns.append('    ' ~ name ~ ' ' ~ types[kind] ~ (' not null' if not_null else '')) -%}
    {%- endfor -%}
    {%- set options = table_options.get(table.name) -%}
    {%- do statements.append(
        'create table if not exists ' ~ relation ~ ' (\n'
        ~ columns | join(',\n') ~ '\n)'
        ~ ('\n' ~ options if options else '')
    ) -%}
{%- endfor -%}

{{ return(statements | join(';\n\n') ~ ';') }}

{% endmacro %}

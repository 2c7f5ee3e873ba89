{#-
    moengage_create_state_tables: create the runner's state schema and tables if they are
    missing, for an admin who sets up the warehouse before the runner's first sync.

        dbt run-operation moengage_create_state_tables
        dbt run-operation moengage_create_state_tables --args '{schema: moengage_state}'

    Runs moengage_state_tables_sql (create ... if not exists, so running it twice changes
    nothing), logs each table as created or already there, and returns the names of the
    tables it created. From a hook, call it with {% do ... %}. The package's views never
    call it: building them creates nothing (see moengage_state_select).
-#}
{% macro moengage_create_state_tables(schema=none) %}
    {{ return(adapter.dispatch('moengage_create_state_tables', 'moengage')(schema)) }}
{% endmacro %}


{% macro default__moengage_create_state_tables(schema) %}

{%- set schema = moengage._moengage_state_schema('moengage_create_state_tables', schema) -%}

{#- while dbt parses there is no connection; the DDL runs only when executing -#}
{%- if not execute -%}
    {{ return([]) }}
{%- endif -%}

{%- set tables = [] -%}
{%- for table in moengage._moengage_state_columns() -%}
    {%- set relation = moengage.moengage_state_relation(table.name, schema) -%}
    {%- set existing = adapter.get_relation(
        database=relation.database, schema=relation.schema, identifier=relation.identifier
    ) -%}
    {%- do tables.append({'relation': relation, 'existed': existing is not none}) -%}
{%- endfor -%}

{%- call statement('moengage_create_state_tables') -%}
    {{ moengage.moengage_state_tables_sql(schema) }}
{%- endcall -%}
{#- run-operation does not commit for us -#}
{%- do adapter.commit() -%}

{%- set created = [] -%}
{%- for table in tables -%}
    {%- if table.existed -%}
        {%- do log('moengage_create_state_tables: ' ~ table.relation ~ ' already exists', info=True) -%}
    {%- else -%}
        {#- as dbt caches what it creates: on engines that fold unquoted names (Snowflake),
            a later lookup in this invocation then matches it exactly, not "approximately" -#}
        {%- do adapter.cache_added(table.relation.incorporate(dbt_created=true)) -%}
        {%- do created.append(table.relation | string) -%}
        {%- do log('moengage_create_state_tables: created ' ~ table.relation, info=True) -%}
    {%- endif -%}
{%- endfor -%}
{{ return(created) }}

{% endmacro %}

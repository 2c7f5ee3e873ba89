{#-
    moengage_state_tables_sql: the DDL that creates the runner's state tables, as text.

    `create schema if not exists` for the state schema, then `create table if not exists` for
    each state table (_moengage_state_columns), typed by moengage_state_types: safe to run
    again and again, it never alters or empties a table that exists.
    moengage_create_state_tables runs it from `dbt run-operation`; nothing else in the
    package runs it (the views over the state never create it).

    schema: where the tables go; default var('moengage_state_schema'), else target.schema.
    The database is target.database.
-#}
{% macro moengage_state_tables_sql(schema=none) %}
    {{ return(adapter.dispatch('moengage_state_tables_sql', 'moengage')(schema)) }}
{% endmacro %}


{#- Every engine but Postgres: only the types differ (moengage_state_types). No clustering
    key on Snowflake: it would bill automatic-clustering credits, and rows arrive grouped by
    cohort anyway. -#}
{% macro default__moengage_state_tables_sql(schema) %}
    {{ return(moengage._moengage_state_tables_ddl(
        'moengage_state_tables_sql', schema, moengage.moengage_state_types()
    )) }}
{% endmacro %}


{#- `create schema` takes no database on Postgres; the tables are still named
    database.schema.table, which Postgres accepts for the current database.
    Two sessions running `create ... if not exists` for the same name at once can both find
    it missing and one fails (a unique violation in the catalog): the statements take a
    transaction-scoped advisory lock first (_moengage_state_lock_key), which the runner's
    Postgres engine must take around its own DDL too.
    Then the two keys the runner's Postgres engine needs (dbt_moengage/warehouse/postgres.py,
    same names): the lock rows' unique key, and the key members are looked up by. -#}
{% macro postgres__moengage_state_tables_sql(schema) %}
    {%- set ddl = moengage._moengage_state_tables_ddl(
        'moengage_state_tables_sql', schema, moengage.moengage_state_types(),
        schema_with_database=false
    ) -%}
    {%- set locks = moengage.moengage_state_relation('moengage_sync_locks', schema) -%}
    {%- set members = moengage.moengage_state_relation('moengage_cohort_members', schema) -%}
    {%- set keys = [
        'create unique index if not exists moengage_sync_locks_key on ' ~ locks
            ~ ' (endpoint, workspace_id, cohort_id)',
        'create index if not exists moengage_cohort_members_key on ' ~ members
            ~ ' (endpoint, workspace_id, cohort_id, uid)',
    ] -%}
    {{ return('select pg_advisory_xact_lock(' ~ moengage._moengage_state_lock_key() ~ ');\n\n'
        ~ ddl ~ '\n\n' ~ keys | join(';\n\n') ~ ';') }}
{% endmacro %}


{#- dbt-redshift falls back to postgres__ variants, and Redshift has no advisory locks: it
    keeps what it had before the postgres__ variant, the default. -#}
{% macro redshift__moengage_state_tables_sql(schema) %}
    {{ return(moengage.default__moengage_state_tables_sql(schema)) }}
{% endmacro %}

{#-
    moengage_state_tables_sql: the DDL that creates the runner's state tables, as text.

    `create schema if not exists` for the state schema, then `create table if not exists` for
    moengage_cohort_members, moengage_sync_runs and moengage_sync_locks: safe to run again and
    again, it never alters or empties a table that exists. The package's models run it as
    their pre-hook; moengage_create_state_tables runs it from `dbt run-operation`.

    schema: where the tables go; default var('moengage_state_schema'), else target.schema.
    The database is target.database.
-#}
{% macro moengage_state_tables_sql(schema=none) %}
    {{ return(adapter.dispatch('moengage_state_tables_sql', 'moengage')(schema)) }}
{% endmacro %}


{#- engines without their own variant: the types dbt's cross-database macros name -#}
{% macro default__moengage_state_tables_sql(schema) %}
    {{ return(moengage._moengage_state_tables_ddl('moengage_state_tables_sql', schema, {
        'string': dbt.type_string(),
        'timestamp': dbt.type_timestamp(),
        'bigint': dbt.type_bigint(),
        'boolean': dbt.type_boolean(),
    })) }}
{% endmacro %}


{% macro duckdb__moengage_state_tables_sql(schema) %}
    {{ return(moengage._moengage_state_tables_ddl('moengage_state_tables_sql', schema, {
        'string': 'varchar',
        'timestamp': 'timestamp',
        'bigint': 'bigint',
        'boolean': 'boolean',
    })) }}
{% endmacro %}


{#- timestamp_ntz, not timestamp: what plain `timestamp` means depends on the session's
    TIMESTAMP_TYPE_MAPPING. No clustering key: it would bill automatic-clustering credits,
    and rows arrive grouped by cohort anyway. -#}
{% macro snowflake__moengage_state_tables_sql(schema) %}
    {{ return(moengage._moengage_state_tables_ddl('moengage_state_tables_sql', schema, {
        'string': 'varchar',
        'timestamp': 'timestamp_ntz',
        'bigint': 'number(38,0)',
        'boolean': 'boolean',
    }, {})) }}
{% endmacro %}


{#- The types the runner's Postgres engine creates: information_schema reports them as
    character varying, timestamp without time zone (holding UTC), bigint and boolean.
    varchar without a length, not dbt.type_string()'s text: the same type, named as the
    other engines name it. `create schema` takes no database on Postgres; the tables are
    still named database.schema.table, which Postgres accepts for the current database.
    Two sessions running `create ... if not exists` for the same name at once can both find
    it missing and one fails (a unique violation in the catalog): the statements take a
    transaction-scoped advisory lock first (_moengage_state_lock_key), which the runner's
    Postgres engine must take around its own DDL too. -#}
{% macro postgres__moengage_state_tables_sql(schema) %}
    {%- set ddl = moengage._moengage_state_tables_ddl('moengage_state_tables_sql', schema, {
        'string': 'varchar',
        'timestamp': 'timestamp',
        'bigint': 'bigint',
        'boolean': 'boolean',
    }, {}, schema_with_database=false) -%}
    {{ return('select pg_advisory_xact_lock(' ~ moengage._moengage_state_lock_key() ~ ');\n\n' ~ ddl) }}
{% endmacro %}


{#- dbt-redshift falls back to postgres__ variants, and Redshift has no advisory locks: it
    keeps what it had before the postgres__ variant, the default. -#}
{% macro redshift__moengage_state_tables_sql(schema) %}
    {{ return(moengage.default__moengage_state_tables_sql(schema)) }}
{% endmacro %}

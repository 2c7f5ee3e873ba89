{#-
    moengage_state_types: the engine's type for each kind of state column, as a dict
    {'string': ..., 'timestamp': ..., 'bigint': ..., 'boolean': ...} (the kinds of
    _moengage_state_columns).

    The one place a state column gets its type: the DDL (moengage_state_tables_sql) types the
    tables with it, and moengage_state_select types the empty rows the views show before the
    state exists, so the two cannot drift apart. The runner's own DDL names the same types.
-#}
{% macro moengage_state_types() %}
    {{ return(adapter.dispatch('moengage_state_types', 'moengage')()) }}
{% endmacro %}


{#- engines without their own variant: the types dbt's cross-database macros name -#}
{% macro default__moengage_state_types() %}
    {{ return({
        'string': dbt.type_string(),
        'timestamp': dbt.type_timestamp(),
        'bigint': dbt.type_bigint(),
        'boolean': dbt.type_boolean(),
    }) }}
{% endmacro %}


{% macro duckdb__moengage_state_types() %}
    {{ return({
        'string': 'varchar',
        'timestamp': 'timestamp',
        'bigint': 'bigint',
        'boolean': 'boolean',
    }) }}
{% endmacro %}


{#- timestamp_ntz, not timestamp: what plain `timestamp` means depends on the session's
    TIMESTAMP_TYPE_MAPPING. -#}
{% macro snowflake__moengage_state_types() %}
    {{ return({
        'string': 'varchar',
        'timestamp': 'timestamp_ntz',
        'bigint': 'number(38,0)',
        'boolean': 'boolean',
    }) }}
{% endmacro %}


{#- The types the runner's Postgres engine creates: information_schema reports them as
    character varying, timestamp without time zone (holding UTC), bigint and boolean.
    varchar without a length, not dbt.type_string()'s text: the same type, named as the
    other engines name it. -#}
{% macro postgres__moengage_state_types() %}
    {{ return({
        'string': 'varchar',
        'timestamp': 'timestamp',
        'bigint': 'bigint',
        'boolean': 'boolean',
    }) }}
{% endmacro %}


{#- The standard SQL names, as INFORMATION_SCHEMA.COLUMNS reports them; the runner's BigQuery
    engine creates the same. -#}
{% macro bigquery__moengage_state_types() %}
    {{ return({
        'string': 'STRING',
        'timestamp': 'TIMESTAMP',
        'bigint': 'INT64',
        'boolean': 'BOOL',
    }) }}
{% endmacro %}


{#- dbt-redshift falls back to postgres__ variants: Redshift keeps what it had before the
    postgres__ variant, the default. -#}
{% macro redshift__moengage_state_types() %}
    {{ return(moengage.default__moengage_state_types()) }}
{% endmacro %}

{#-
    _moengage_state_lock_key: the Postgres advisory lock key that serializes the state tables'
    DDL: 'moengage' in ASCII read as a bigint (0x6d6f656e67616765). The runner's Postgres
    engine must take the same key (pg_advisory_xact_lock) before its own `create ... if not
    exists`, so dbt and the runner never create the tables at the same time.
-#}
{% macro _moengage_state_lock_key() %}
    {{ return(7885632997404272485) }}
{% endmacro %}

-- The state tables as default__moengage_state_tables_sql makes them (what engines without a
-- variant of their own get, typed with dbt.type_string() and friends): an on-run-start hook
-- in dbt_project.yml runs it on schema it_state_default. On DuckDB it must match the
-- duckdb__ variant column for column.

{{ config(enabled=target.type == 'duckdb') }}

{{ state_columns('it_state_default') }}

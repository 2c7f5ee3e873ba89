-- The state tables as engines without a variant of their own make them (the default__ DDL,
-- typed with dbt.type_string() and friends): under `--vars '{it_state_exists: true}'` an
-- on-run-start hook in dbt_project.yml runs it on schema it_state_default. On DuckDB it
-- must match the duckdb__ types column for column.

{{ config(enabled=target.type == 'duckdb' and var('it_state_exists', false)) }}

{{ state_columns('it_state_default') }}

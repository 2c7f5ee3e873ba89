-- The state tables as `dbt run-operation moengage_create_state_tables` makes them: under
-- `--vars '{it_state_exists: true}'` the on-run-start hooks in dbt_project.yml call it twice
-- (the second must change nothing) on the state schema the package's views read. DuckDB
-- and Postgres (the seeds name their types; tests/e2e/test_snowflake_package.py checks
-- Snowflake's against the runner's own tables).

{{ config(enabled=var('it_state_exists', false) and target.type in ('duckdb', 'postgres')) }}

{{ state_columns(var('moengage_state_schema', target.schema)) }}

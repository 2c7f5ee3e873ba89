-- The state tables as `dbt run-operation moengage_create_state_tables` makes them: the
-- on-run-start hooks in dbt_project.yml call it twice on schema it_state_run_operation.

{{ state_columns('it_state_run_operation') }}

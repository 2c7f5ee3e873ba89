-- The columns of the package's views over the state, as information_schema reports them:
-- the same before the state exists (typed nulls from moengage_state_select) and after (the
-- state tables' own columns). DuckDB and Postgres.

{{ config(enabled=target.type in ('duckdb', 'postgres')) }}

-- depends_on: {{ ref('moengage_cohort_status') }}
{{ state_columns(target.schema, ['moengage_current_members', 'moengage_sync_history', 'moengage_cohort_status']) }}

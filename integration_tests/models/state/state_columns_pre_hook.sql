-- The state tables as the package's models made them: each model's pre-hook renders
-- moengage.moengage_state_tables_sql() into target.schema. This model's own pre-hook runs it
-- again once they exist, which must change nothing. Built after the package's models, so no
-- two pre-hooks create the same table at once.
-- depends_on: {{ ref('moengage_cohort_status') }}
{{ config(pre_hook="{{ moengage.moengage_state_tables_sql() }}") }}

{{ state_columns(target.schema) }}

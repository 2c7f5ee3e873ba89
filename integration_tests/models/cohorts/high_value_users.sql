-- Style a: the cohort is declared in the model's own config() block.
-- The uid column is `uid`, the runner's default, so no uid_column is given.
{{ config(
    materialized='table',
    meta={
        'moengage': {
            'cohort_name': '.High Value Users',
            'description': 'Users with lifetime order value above 500',
        }
    },
) }}

select
    user_id as uid,
    email,
    plan,
    order_count,
    lifetime_value
from {{ ref('user_ltv') }}
where lifetime_value > 500

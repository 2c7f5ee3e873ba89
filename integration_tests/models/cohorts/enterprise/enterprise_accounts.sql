-- Style c: the cohort is declared for this folder with `+meta` in dbt_project.yml.
-- The uid is customer_number, an INTEGER column.
select
    customer_number,
    user_id,
    email,
    country,
    signup_date
from {{ ref('users') }}
where plan = 'enterprise'

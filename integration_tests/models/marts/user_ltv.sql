-- One row per user with their lifetime order value. An ordinary model, not a cohort:
-- it has no meta.moengage, so the runner must leave it alone.
with orders_per_user as (

    select
        user_id,
        count(*) as order_count,
        sum(amount) as lifetime_value,
        min(ordered_at) as first_ordered_at,
        max(ordered_at) as last_ordered_at
    from {{ ref('orders') }}
    group by user_id

)

select
    users.user_id,
    users.customer_number,
    users.email,
    users.country,
    users.plan,
    users.signup_date,
    coalesce(orders_per_user.order_count, 0) as order_count,
    coalesce(orders_per_user.lifetime_value, 0) as lifetime_value,
    orders_per_user.first_ordered_at,
    orders_per_user.last_ordered_at
from {{ ref('users') }} as users
left join orders_per_user
    on users.user_id = orders_per_user.user_id

-- Style d: the cohort is declared with the model's top-level `meta:` in cohorts.yml
-- (the older way, before meta moved under config:).
-- The rows are kept as they come: NULL, empty, whitespace-only and duplicated user_ref
-- values are for the runner to drop and count, and some refs hold non-ASCII characters,
-- quotes and backslashes.
select
    signup_id,
    user_ref,
    signup_source,
    signed_up_at
from {{ ref('app_signups') }}

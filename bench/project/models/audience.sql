{{ config(materialized='table', meta={'moengage': {'cohort_name': '.Bench Audience'}}) }}
-- Deterministic 36-character uids, like MoEngage Unique User IDs that are UUIDs.
select cast(cast(md5('user-' || cast(range as varchar)) as uuid) as varchar) as uid
from range({{ var('members', 1000000) }})

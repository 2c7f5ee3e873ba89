-- A larger cohort (legacy top-level meta): with small request bodies it takes many
-- requests, so a runner can be killed, or raced, mid-sync.
select concat('many-', format('%05d', n)) as uid
from unnest(generate_array(1, 3000)) as n

-- A mirror cohort: members who leave the model are removed from MoEngage.
select concat('m-', format('%04d', n)) as user_id, n as rank
from unnest(generate_array(1, 200)) as n

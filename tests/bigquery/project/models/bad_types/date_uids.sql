select date_add(date '2024-01-01', interval n day) as signup_day
from unnest(generate_array(1, 5)) as n

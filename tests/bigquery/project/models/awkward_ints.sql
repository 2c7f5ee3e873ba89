-- An INT64 uid column (customer_number): negative, zero, both ends of INT64, duplicates
-- and nulls; MoEngage gets each number's decimal text.
with special as (
    select cast(7 as int64) as customer_number union all
    select 0 union all
    select -1 union all
    select -9223372036854775808 union all
    select 9223372036854775807 union all
    select 123456789012345678 union all
    select 42 union all
    select 42 union all
    select cast(null as int64) union all
    select cast(null as int64)
),

bulk as (
    select n * 1000 as customer_number
    from unnest(generate_array(1, 300)) as n
)

select customer_number, 'special' as kind from special
union all
select customer_number, 'bulk' from bulk

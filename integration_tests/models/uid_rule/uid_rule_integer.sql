-- An integer uid column (max_length 10): the test reads it as text, so nulls, duplicates
-- and length work as on text ('-123456789' is 10 characters, 12345678901 is 11).
select 'one' as case_id, cast(1 as {{ dbt.type_bigint() }}) as uid
union all select 'two_1', 2
union all select 'two_2', 2
union all select 'negative_10', -123456789
union all select 'ten_digits', 1234567890
union all select 'eleven_digits', 12345678901
union all select 'null_uid', null

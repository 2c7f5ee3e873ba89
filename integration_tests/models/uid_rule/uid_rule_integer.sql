-- An integer uid column (max_length 10): the test reads it as text, so nulls, duplicates
-- and length work as on text ('-123456789' is 10 characters, 12345678901 is 11).
select case_id, cast(uid as {{ dbt.type_bigint() }}) as uid from (values
    ('one', 1),
    ('two_1', 2),
    ('two_2', 2),
    ('negative_10', -123456789),
    ('ten_digits', 1234567890),
    ('eleven_digits', 12345678901),
    ('null_uid', null)
) as cases (case_id, uid)

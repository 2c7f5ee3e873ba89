-- Every path of the one uid rule (dbt_moengage/uids.py, the moengage_uid test), one row
-- each: the uid and why it must not be sent ('' for a uid that is fine). chr() spells the
-- invisible characters. tests/test_uids.py runs the runner's own SQL on this model too.
select uid, expected_reason from (values
    ('ok-1', ''),
    ('a b', ''),
    ('a' || chr(160) || 'b', ''),
    ('12345', ''),
    (null, 'null'),
    ('', 'empty'),
    (' ', 'empty'),
    (chr(9) || chr(10) || chr(13), 'empty'),
    (chr(160), 'empty'),
    (chr(8203) || chr(8203), 'empty'),
    (chr(65279), 'empty'),
    (chr(12288), 'empty'),
    (' padded', 'whitespace'),
    ('padded ', 'whitespace'),
    (chr(160) || 'nbsp', 'whitespace'),
    ('zw' || chr(8203), 'whitespace'),
    ('line' || chr(10), 'whitespace'),
    ('twice', 'duplicate'),
    ('twice', 'duplicate'),
    ('longer-than-10', 'longer than 10')
) as cases (uid, expected_reason)

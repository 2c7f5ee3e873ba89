-- The duplicate path: every row of a uid that appears more than once fails ('duplicate'),
-- compared as exact bytes: case variants are other users, and 'twice ' is not 'twice' (it
-- fails as padded). A padded uid that repeats fails for both reasons, once each.
select case_id, uid from (values
    ('twice_1', 'twice'),
    ('twice_2', 'twice'),
    ('thrice_1', 'thrice'),
    ('thrice_2', 'thrice'),
    ('thrice_3', 'thrice'),
    ('case_upper', 'TWICE'),
    ('case_title', 'Twice'),
    ('padded_twice', 'twice '),
    ('padded_dup_1', ' dup'),
    ('padded_dup_2', ' dup'),
    ('once', 'once')
) as cases (case_id, uid)

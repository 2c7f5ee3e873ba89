-- The duplicate path: every row of a uid that appears more than once fails ('duplicate'),
-- compared as exact bytes: case variants are other users, and 'twice ' is not 'twice' (it
-- fails as padded). A padded uid that repeats fails for both reasons, once each.
select 'twice_1' as case_id, 'twice' as uid
union all select 'twice_2', 'twice'
union all select 'thrice_1', 'thrice'
union all select 'thrice_2', 'thrice'
union all select 'thrice_3', 'thrice'
union all select 'case_upper', 'TWICE'
union all select 'case_title', 'Twice'
union all select 'padded_twice', 'twice '
union all select 'padded_dup_1', ' dup'
union all select 'padded_dup_2', ' dup'
union all select 'once', 'once'

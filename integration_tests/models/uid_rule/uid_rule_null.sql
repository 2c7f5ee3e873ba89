-- The null path: each null row fails once ('null'), and two nulls are not a duplicate.
select case_id, uid from (values
    ('null_1', cast(null as {{ dbt.type_string() }})),
    ('null_2', null),
    ('fine', 'ok')
) as cases (case_id, uid)

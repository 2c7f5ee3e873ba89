-- The null path: each null row fails once ('null'), and two nulls are not a duplicate.
select 'null_1' as case_id, cast(null as {{ dbt.type_string() }}) as uid
union all select 'null_2', null
union all select 'fine', 'ok'

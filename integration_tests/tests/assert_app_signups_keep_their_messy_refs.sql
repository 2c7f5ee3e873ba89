-- The runner's tests rely on app_signups / messy_signups really holding each kind of bad
-- uid. Loaders differ (DuckDB's CSV COPY, for one, reads a quoted "" as NULL), so check
-- that every row still looks like what its quality_note says, and that every kind is there.
with signups as (

    select
        signups.signup_id,
        signups.user_ref,
        signups.quality_note,
        messy.user_ref as model_user_ref
    from {{ ref('app_signups') }} as signups
    left join {{ ref('messy_signups') }} as messy
        on signups.signup_id = messy.signup_id

),

wrong_rows as (

    select signup_id, quality_note
    from signups
    where not (
        case quality_note
            when 'null_ref' then user_ref is null
            when 'empty_ref' then user_ref = ''
            when 'blank_ref' then user_ref <> '' and trim(replace(user_ref, '	', ' ')) = ''
            when 'duplicate_ref' then user_ref in (
                select user_ref from signups where quality_note = 'ok'
            )
            when 'special_chars' then user_ref is not null and user_ref <> ''
            when 'ok' then {{ dbt.length('user_ref') }} = 36
            else false
        end
    )
    -- the cohort model passes every ref through untouched
    or coalesce(user_ref, '<null>') <> coalesce(model_user_ref, '<null>')

),

kinds as (

    select 'null_ref' as quality_note
    union all select 'empty_ref'
    union all select 'blank_ref'
    union all select 'duplicate_ref'
    union all select 'special_chars'
    union all select 'ok'

),

missing_kinds as (

    select -1 as signup_id, kinds.quality_note
    from kinds
    left join signups
        on kinds.quality_note = signups.quality_note
    where signups.signup_id is null

)

select * from wrong_rows
union all
select * from missing_kinds

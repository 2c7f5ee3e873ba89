-- Style a: the cohort is declared in the model's config() block; the uid column is `uid`.
-- STRING uids MoEngage must get exactly as they are: case variants kept apart, unicode in
-- both normal forms, quotes, backslashes, emoji, a very long id, leading zeros; and rows
-- the runner must drop and count: null, blank, padded (ASCII and invisible whitespace),
-- duplicates. The emulator reads no \u escape in a literal, and no raw line break: chr()
-- builds those characters. tests/e2e/test_bigquery.py lists the same values in Python.
{{ config(
    materialized='table',
    meta={
        'moengage': {
            'cohort_name': '.BQ Awkward Strings',
            'cohort_id': 'bq_strings',
            'description': 'STRING uids with awkward values',
        }
    },
) }}

with awkward as (
    select 'abc' as uid union all
    select 'ABC' union all
    select 'Abc' union all
    select 'abc' union all
    select chr(233) union all
    select concat('e', chr(769)) union all
    select '用户' union all
    select 'Ünïcödé-ß' union all
    select chr(127881) union all
    select concat('emoji', chr(128104), chr(8205), chr(128187)) union all
    select concat('quo', chr(39), 'te') union all
    select '"double"' union all
    select concat('back', chr(92), 'slash') union all
    select concat(chr(92), 'u0041') union all
    select concat(chr(92), chr(92), chr(92)) union all
    select concat('tab', chr(9), 'inside') union all
    select concat('line', chr(10), 'inside') union all
    select '{"json": [1, 2]}' union all
    select '<b>&amp;</b> %20+' union all
    select repeat('L', 5000) union all
    select '007' union all
    select '7' union all
    select '0' union all
    select '-1' union all
    select '007' union all
    select cast(null as string) union all
    select cast(null as string) union all
    select cast(null as string) union all
    select '' union all
    select '' union all
    select '   ' union all
    select concat(chr(9), chr(10)) union all
    select chr(160) union all
    select chr(8203) union all
    select ' lead' union all
    select 'trail ' union all
    select concat('nbsp', chr(160)) union all
    select concat(chr(65279), 'bom') union all
    select concat('zw', chr(8203)) union all
    select concat(chr(10), 'newline')
),

bulk as (
    select concat('user-', format('%05d', n)) as uid
    from unnest(generate_array(1, 400)) as n
)

select uid from awkward
union all
select uid from bulk

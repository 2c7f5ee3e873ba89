{{ config(materialized='table', meta={'moengage': {
    'cohort_name': '.Bench Audience', 'mode': var('mode', 'add')}}) }}
{{ bench_uids(var('members', 1000000)) }}

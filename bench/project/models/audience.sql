{{ config(materialized='table', meta={'moengage': {'cohort_name': '.Bench Audience'}}) }}
{{ bench_uids(var('members', 1000000)) }}

{#- `members` deterministic 36-character uids (uuids from md5('user-<n>'), n from 0): the
    same uids on every engine, like MoEngage Unique User IDs that are UUIDs. -#}
{% macro bench_uids(members) %}
  {{- return(adapter.dispatch('bench_uids', 'moengage_bench')(members)) -}}
{% endmacro %}

{% macro duckdb__bench_uids(members) %}
select cast(cast(md5('user-' || cast(range as varchar)) as uuid) as varchar) as uid
from range({{ members }})
{% endmacro %}

{% macro postgres__bench_uids(members) %}
select cast(cast(md5('user-' || cast(n as text)) as uuid) as text) as uid
from generate_series(0, {{ members }} - 1) as n
{% endmacro %}

{#- md5's hex digits in the uuid's 8-4-4-4-12 groups: the same text DuckDB's and Postgres's
    cast to uuid prints. One generate_array: the bench's BigQuery is its emulator. -#}
{% macro bigquery__bench_uids(members) %}
select concat(substr(h, 1, 8), '-', substr(h, 9, 4), '-', substr(h, 13, 4), '-',
    substr(h, 17, 4), '-', substr(h, 21, 12)) as uid
from (
    select to_hex(md5(concat('user-', cast(n as string)))) as h
    from unnest(generate_array(0, {{ members }} - 1)) as n
)
{% endmacro %}

{% macro default__bench_uids(members) %}
  {{ exceptions.raise_compiler_error(
      "bench_uids: no variant for adapter '" ~ adapter.type() ~ "'; the bench runs on "
      ~ "duckdb, postgres and bigquery") }}
{% endmacro %}

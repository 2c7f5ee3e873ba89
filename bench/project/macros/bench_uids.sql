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

{% macro default__bench_uids(members) %}
  {{ exceptions.raise_compiler_error(
      "bench_uids: no variant for adapter '" ~ adapter.type() ~ "'; the bench runs on "
      ~ "duckdb and postgres") }}
{% endmacro %}

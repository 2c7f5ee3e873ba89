{#-
    moengage_uid: the column holds uids MoEngage can take, one row per user.

    The same rule the runner applies before sending (dbt_moengage/uids.py). Fails (returns)
    every row whose uid is
      - null,
      - empty: '' or nothing but whitespace (spaces, tabs, line breaks, and the no-break and
        zero-width spaces of _moengage_uid_whitespace),
      - padded: whitespace at either end ('a ' can never match user 'a'; the runner drops it),
      - duplicated (compared exactly, as MoEngage compares uids),
      - longer than `max_length` characters, when `max_length` is given.
    The uid is cast to text first (moengage_uid_text), so integer uid columns work too,
    and compared as exact bytes whatever the column's collation.
    A row that breaks more than one rule comes back once per rule; `failure_reason` says which.

        models:
          - name: high_value_users
            columns:
              - name: uid
                data_tests:
                  - moengage.moengage_uid:
                      arguments:
                        max_length: 64
-#}
{% test moengage_uid(model, column_name, max_length=none) %}
    {{ return(adapter.dispatch('test_moengage_uid', 'moengage')(model, column_name, max_length)) }}
{% endtest %}


{% macro default__test_moengage_uid(model, column_name, max_length) %}

{#- model is a stand-in while dbt parses, so the message names only the column;
    dbt adds the test's name and file. -#}
{%- if max_length is not none and (max_length is not integer or max_length < 1) -%}
    {%- set shown = ("'" ~ max_length ~ "'") if max_length is string else max_length -%}
    {{ exceptions.raise_compiler_error(
        "moengage_uid test on column '" ~ column_name
        ~ "': max_length must be a positive integer (a character count), got " ~ shown
    ) }}
{%- endif -%}

with uids as (

    select {{ moengage.moengage_uid_text(column_name) }} as uid_value
    from {{ model }}

),

normalized as (

    select
        uid_value,
        {{ moengage.moengage_uid_trim('uid_value') }} as uid_trimmed
    from uids

),

duplicated as (

    select uid_value
    from normalized
    where uid_trimmed <> ''
    group by uid_value
    having count(*) > 1

)

select
    uid_value,
    cast('null' as {{ dbt.type_string() }}) as failure_reason
from normalized
where uid_value is null

union all

select
    uid_value,
    cast('empty' as {{ dbt.type_string() }}) as failure_reason
from normalized
where uid_trimmed = ''

union all

select
    uid_value,
    cast('whitespace' as {{ dbt.type_string() }}) as failure_reason
from normalized
where uid_trimmed <> '' and uid_trimmed <> uid_value

union all

select
    normalized.uid_value,
    cast('duplicate' as {{ dbt.type_string() }}) as failure_reason
from normalized
inner join duplicated
    on normalized.uid_value = duplicated.uid_value

{%- if max_length is not none %}

union all

select
    uid_value,
    cast('longer than {{ max_length }}' as {{ dbt.type_string() }}) as failure_reason
from normalized
where {{ dbt.length('uid_value') }} > {{ max_length }}
{%- endif %}

{% endmacro %}

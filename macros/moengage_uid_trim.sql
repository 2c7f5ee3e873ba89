{#-
    moengage_uid_trim: `expr` (text) without the uid rule's whitespace at either end.

        select {{ moengage.moengage_uid_trim('user_ref') }} from ...

    A uid whose trimmed value is '' is blank; one whose trimmed value differs from it is
    padded. Both are never sent by the runner, and fail the moengage_uid test.
-#}
{% macro moengage_uid_trim(expr) %}
    {{ return(adapter.dispatch('moengage_uid_trim', 'moengage')(expr)) }}
{% endmacro %}


{#- SQL's own trim(both ... from ...): DuckDB and Postgres read it -#}
{% macro default__moengage_uid_trim(expr) %}
    {{- return("trim(both '" ~ moengage._moengage_uid_whitespace() ~ "' from " ~ expr ~ ")") -}}
{% endmacro %}


{#- The cast changes nothing on Snowflake; fakesnow (which the tests run this on) drops
    TRIM's characters unless the operand is a cast to varchar, as the runner's SQL notes. -#}
{% macro snowflake__moengage_uid_trim(expr) %}
    {{- return("trim(cast(" ~ expr ~ " as varchar), '" ~ moengage._moengage_uid_whitespace() ~ "')") -}}
{% endmacro %}

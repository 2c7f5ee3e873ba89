{#-
    moengage_uid_text: `column` as the text MoEngage gets, compared as exact bytes.

        select {{ moengage.moengage_uid_text('user_id') }} from ...

    A text column may carry a collation (DuckDB's `collate nocase`, Snowflake's
    `collate 'en-ci'` or an account's DEFAULT_DDL_COLLATION) under which 'abc' and 'ABC'
    are equal; MoEngage's uids are not. The runner reads uids the same way.
-#}
{% macro moengage_uid_text(column) %}
    {{ return(adapter.dispatch('moengage_uid_text', 'moengage')(column)) }}
{% endmacro %}


{% macro default__moengage_uid_text(column) %}
    {{- return("cast(" ~ column ~ " as " ~ dbt.type_string() ~ ")") -}}
{% endmacro %}


{#- `binary` is a keyword in DuckDB: the collation's name is quoted -#}
{% macro duckdb__moengage_uid_text(column) %}
    {{- return("(cast(" ~ column ~ " as varchar) collate \"binary\")") -}}
{% endmacro %}


{#- the empty collation specification is none: strings compare by their bytes -#}
{% macro snowflake__moengage_uid_text(column) %}
    {{- return("collate(cast(" ~ column ~ " as varchar), '')") -}}
{% endmacro %}

{#-
    moengage_uid_text: `column` as the text MoEngage gets, compared as exact bytes.

        select {{ moengage.moengage_uid_text('user_id') }} from ...

    A text column may carry a collation (DuckDB's `collate nocase`, Snowflake's
    `collate 'en-ci'` or an account's DEFAULT_DDL_COLLATION, a non-deterministic ICU
    collation on Postgres, BigQuery's 'und:ci') under which 'abc' and 'ABC' are equal;
    MoEngage's uids are not.
    The runner reads uids the same way.
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


{#- A cast keeps the column's collation, and a non-deterministic ICU one (e.g.
    `deterministic = false`, 'und-u-ks-level2') makes 'abc' = 'ABC' in comparisons, grouping
    and distinct. "C" compares the bytes (UTF-8 order) and is always there. -#}
{% macro postgres__moengage_uid_text(column) %}
    {{- return("(cast(" ~ column ~ " as varchar) collate \"C\")") -}}
{% endmacro %}


{#- A column, or its dataset's default, may carry a collation such as 'und:ci'; the empty
    collation specification removes it, as on Snowflake. -#}
{% macro bigquery__moengage_uid_text(column) %}
    {{- return("collate(cast(" ~ column ~ " as string), '')") -}}
{% endmacro %}


{#- dbt-redshift falls back to postgres__ variants; Redshift spells collations its own way
    (collate(expr, 'case_sensitive')): it keeps what it had, the default. -#}
{% macro redshift__moengage_uid_text(column) %}
    {{- return(moengage.default__moengage_uid_text(column)) -}}
{% endmacro %}

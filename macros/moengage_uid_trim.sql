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


{#- A BigQuery string literal cannot hold a raw line break, and the emulator the tests run
    on does not decode its \u escapes: the characters by their code points, those of
    _moengage_uid_whitespace in its order (tests/unit/test_uids.py checks). -#}
{% macro bigquery__moengage_uid_trim(expr) %}
    {%- set code_points = [
        32, 9, 10, 11, 12, 13,
        133, 160, 5760, 8192, 8193, 8194, 8195, 8196, 8197, 8198, 8199, 8200, 8201, 8202,
        8232, 8233, 8239, 8287, 12288,
        8203, 8204, 8205, 8288, 65279,
        28, 29, 30, 31, 173, 847, 1564, 4447, 4448, 6068, 6069, 6155,
        6156, 6157, 6158, 6159, 8206, 8207, 8234, 8235, 8236, 8237, 8238, 8289,
        8290, 8291, 8292, 8294, 8295, 8296, 8297, 8298, 8299, 8300, 8301, 8302,
        8303, 10240, 12644, 65440,
    ] -%}
    {{- return("trim(" ~ expr ~ ", code_points_to_string([" ~ code_points | join(", ") ~ "]))") -}}
{% endmacro %}

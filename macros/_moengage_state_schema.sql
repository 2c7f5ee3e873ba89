{#-
    _moengage_state_schema: the schema of the state tables: `schema` if given, else
    var('moengage_state_schema'), else target.schema. `caller_name` is the public macro that
    was called, so an error names it.
-#}
{% macro _moengage_state_schema(caller_name, schema=none) %}

{%- set chosen = schema if schema is not none else var('moengage_state_schema', target.schema) -%}
{%- if chosen is not string or chosen | trim == '' -%}
    {{ exceptions.raise_compiler_error(
        caller_name ~ ": schema (the argument, else var('moengage_state_schema')) must be a"
        ~ " non-empty schema name, got " ~ (("'" ~ chosen ~ "'") if chosen is string else chosen)
    ) }}
{%- endif -%}
{{ return(chosen) }}

{% endmacro %}

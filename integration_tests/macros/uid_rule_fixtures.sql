{#- The fixtures of the moengage_uid test (models/uid_rule/), each a model of (case_id, uid),
    with the max_length its test in uid_rule.yml is given (none: no length limit).
    uid_rule_failures runs the test's query on each; uid_rule_expected_failures resolves
    seeds/uid_rule/expected_uid_rule_failures.csv against them. -#}
{% macro uid_rule_fixtures() %}
    {{ return([
        {'name': 'uid_rule_cases', 'max_length': 10},
        {'name': 'uid_rule_null', 'max_length': none},
        {'name': 'uid_rule_empty', 'max_length': none},
        {'name': 'uid_rule_padded', 'max_length': none},
        {'name': 'uid_rule_duplicate', 'max_length': none},
        {'name': 'uid_rule_too_long', 'max_length': 10},
        {'name': 'uid_rule_integer', 'max_length': 10},
    ]) }}
{% endmacro %}


{#- `text` as a SQL string: a literal, but on BigQuery, whose literals cannot hold a raw line
    break, each character of the uid rule's whitespace in it is chr() of its code point (read
    from its UTF-32 bytes, not from the package's own list of them). -#}
{% macro uid_rule_text(text) %}

{%- if target.type != 'bigquery' -%}
    {{ return("'" ~ text ~ "'") }}
{%- endif -%}

{%- set whitespace = moengage._moengage_uid_whitespace() -%}
{%- set parts = [] -%}
{%- set plain = namespace(run='') -%}
{%- for char in text -%}
    {%- if char in whitespace -%}
        {%- if plain.run -%}
            {%- do parts.append("'" ~ plain.run ~ "'") -%}
            {%- set plain.run = '' -%}
        {%- endif -%}
        {%- set utf32 = char.encode('utf-32-be') -%}
        {%- do parts.append('chr(' ~ (utf32[1] * 65536 + utf32[2] * 256 + utf32[3]) ~ ')') -%}
    {%- else -%}
        {%- set plain.run = plain.run ~ char -%}
    {%- endif -%}
{%- endfor -%}
{%- if plain.run -%}
    {%- do parts.append("'" ~ plain.run ~ "'") -%}
{%- endif -%}
{{ return(parts | join(' || ')) }}

{% endmacro %}

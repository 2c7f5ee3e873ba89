-- Every character of the uid rule's whitespace (_moengage_uid_whitespace), one row each:
-- moengage_uid_trim must take it off both ends of a uid, and leave nothing of a uid made
-- of it alone, on every engine (multi-byte UTF-8 characters included). uid_rule.yml
-- checks the two trimmed columns.
{%- set whitespace = moengage._moengage_uid_whitespace() %}

with cases as (
{%- for char in whitespace %}

    select
        {{ loop.index }} as position,
        {{ uid_rule_text(char ~ 'x' ~ char) }} as padded,
        {{ uid_rule_text(char ~ char) }} as blank
    {%- if not loop.last %}

    union all
    {%- endif %}
{%- endfor %}

)

select
    position,
    {{ moengage.moengage_uid_trim('padded') }} as padded_trimmed,
    {{ moengage.moengage_uid_trim('blank') }} as blank_trimmed
from cases

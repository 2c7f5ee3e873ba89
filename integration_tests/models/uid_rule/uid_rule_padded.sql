{#- The whitespace path: a uid with any character of _moengage_uid_whitespace at its start
    (lead_NN), at its end (trail_NN) or both (both_NN, one failure) fails ('whitespace');
    the same character inside a uid (inner_NN) is fine. NN is the character's position in
    _moengage_uid_whitespace. -#}
{%- set whitespace = moengage._moengage_uid_whitespace() %}

{%- for char in whitespace %}
    {%- set nn = '%02d' | format(loop.index) %}
{{ 'union all ' if not loop.first }}select 'lead_{{ nn }}' as case_id, {{ uid_rule_text(char ~ 'lead-' ~ nn) }} as uid
union all select 'trail_{{ nn }}', {{ uid_rule_text('trail-' ~ nn ~ char) }}
union all select 'both_{{ nn }}', {{ uid_rule_text(char ~ 'both-' ~ nn ~ char) }}
union all select 'inner_{{ nn }}', {{ uid_rule_text('in' ~ char ~ 'ner-' ~ nn) }}
{%- endfor %}

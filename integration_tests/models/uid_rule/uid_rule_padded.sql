{#- The whitespace path: a uid with any character of _moengage_uid_whitespace at its start
    (lead_NN), at its end (trail_NN) or both (both_NN, one failure) fails ('whitespace');
    the same character inside a uid (inner_NN) is fine. NN is the character's position in
    _moengage_uid_whitespace. -#}
{%- set whitespace = moengage._moengage_uid_whitespace() %}

select case_id, uid from (values
{%- for char in whitespace %}
    {%- set nn = '%02d' | format(loop.index) %}
    ('lead_{{ nn }}', '{{ char }}lead-{{ nn }}'),
    ('trail_{{ nn }}', 'trail-{{ nn }}{{ char }}'),
    ('both_{{ nn }}', '{{ char }}both-{{ nn }}{{ char }}'),
    ('inner_{{ nn }}', 'in{{ char }}ner-{{ nn }}'){{ ',' if not loop.last }}
{%- endfor %}
) as cases (case_id, uid)

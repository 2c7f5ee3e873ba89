{#- The empty path: '' and uids of nothing but the rule's whitespace fail ('empty'): each
    character of _moengage_uid_whitespace alone (blank_NN, NN its position there), and runs
    of several. Two '' rows are not a duplicate. A Jinja comment: fakesnow turns SQL line
    comments into block comments, which DuckDB then misreads before these characters. -#}
{%- set whitespace = moengage._moengage_uid_whitespace() %}

select case_id, uid from (values
    ('empty_1', ''),
    ('empty_2', ''),
    ('blank_ascii_run', ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)),
    ('blank_invisible_run', chr(160) || chr(8203) || chr(65279) || chr(12288)),
{%- for char in whitespace %}
    ('blank_{{ '%02d' | format(loop.index) }}', '{{ char }}'),
{%- endfor %}
    ('fine', 'a b')
) as cases (case_id, uid)

{#- The empty path: '' and uids of nothing but the rule's whitespace fail ('empty'): each
    character of _moengage_uid_whitespace alone (blank_NN, NN its position there), and runs
    of several. Two '' rows are not a duplicate. A Jinja comment: fakesnow turns SQL line
    comments into block comments, which DuckDB then misreads before these characters. -#}
{%- set whitespace = moengage._moengage_uid_whitespace() %}

select 'empty_1' as case_id, '' as uid
union all select 'empty_2', ''
union all select 'blank_ascii_run', ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)
union all select 'blank_invisible_run', chr(160) || chr(8203) || chr(65279) || chr(12288)
{%- for char in whitespace %}
union all select 'blank_{{ '%02d' | format(loop.index) }}', {{ uid_rule_text(char) }}
{%- endfor %}
union all select 'fine', 'a b'

-- Every path of the one uid rule (dbt_moengage/uids.py, the moengage_uid test), one row
-- each, named by case_id: seeds/uid_rule/expected_uid_rule_failures.csv gives the reason
-- the test fails each bad row for. chr() spells the invisible characters.
-- tests/e2e/test_uid_rule.py runs the runner's own SQL on this model too.
-- Rows as `union all`, not `values`: BigQuery has no values list.
select 'ok_plain' as case_id, 'ok-1' as uid
union all select 'ok_inner_space', 'a b'
union all select 'ok_inner_nbsp', 'a' || chr(160) || 'b'
union all select 'ok_digits', '12345'
union all select 'null_uid', null
union all select 'empty', ''
union all select 'blank_space', ' '
union all select 'blank_tab_lf_cr', chr(9) || chr(10) || chr(13)
union all select 'blank_nbsp', chr(160)
union all select 'blank_zwsp', chr(8203) || chr(8203)
union all select 'blank_bom', chr(65279)
union all select 'blank_ideographic', chr(12288)
union all select 'lead_space', ' padded'
union all select 'trail_space', 'padded '
union all select 'lead_nbsp', chr(160) || 'nbsp'
union all select 'trail_zwsp', 'zw' || chr(8203)
union all select 'trail_lf', 'line' || chr(10)
union all select 'dup_1', 'twice'
union all select 'dup_2', 'twice'
union all select 'too_long', 'longer-than-10'

-- Every path of the one uid rule (dbt_moengage/uids.py, the moengage_uid test), one row
-- each, named by case_id: seeds/uid_rule/expected_uid_rule_failures.csv gives the reason
-- the test fails each bad row for. chr() spells the invisible characters.
-- tests/e2e/test_uid_rule.py runs the runner's own SQL on this model too.
select case_id, uid from (values
    ('ok_plain', 'ok-1'),
    ('ok_inner_space', 'a b'),
    ('ok_inner_nbsp', 'a' || chr(160) || 'b'),
    ('ok_digits', '12345'),
    ('null_uid', null),
    ('empty', ''),
    ('blank_space', ' '),
    ('blank_tab_lf_cr', chr(9) || chr(10) || chr(13)),
    ('blank_nbsp', chr(160)),
    ('blank_zwsp', chr(8203) || chr(8203)),
    ('blank_bom', chr(65279)),
    ('blank_ideographic', chr(12288)),
    ('lead_space', ' padded'),
    ('trail_space', 'padded '),
    ('lead_nbsp', chr(160) || 'nbsp'),
    ('trail_zwsp', 'zw' || chr(8203)),
    ('trail_lf', 'line' || chr(10)),
    ('dup_1', 'twice'),
    ('dup_2', 'twice'),
    ('too_long', 'longer-than-10')
) as cases (case_id, uid)

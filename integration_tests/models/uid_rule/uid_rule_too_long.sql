-- The length path (max_length 10): a uid longer than 10 characters fails ('longer than
-- 10'); characters are counted, not bytes. A blank uid that is too long fails for both
-- reasons; a null has no length.
select 'exactly_10' as case_id, 'exactly-10' as uid
union all select 'eleven', 'eleven-char'
union all select 'accents_10', 'éééééééééé'
union all select 'accents_11', 'ééééééééééé'
union all select 'cjk_11', '用户用户用户用户用户用'
union all select 'blank_11', '           '
union all select 'null_uid', null

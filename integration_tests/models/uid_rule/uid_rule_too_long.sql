-- The length path (max_length 10): a uid longer than 10 characters fails ('longer than
-- 10'); characters are counted, not bytes. A blank uid that is too long fails for both
-- reasons; a null has no length.
select case_id, uid from (values
    ('exactly_10', 'exactly-10'),
    ('eleven', 'eleven-char'),
    ('accents_10', 'éééééééééé'),
    ('accents_11', 'ééééééééééé'),
    ('cjk_11', '用户用户用户用户用户用'),
    ('blank_11', '           '),
    ('null_uid', null)
) as cases (case_id, uid)

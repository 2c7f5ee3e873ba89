{#- The moengage_uid test's own query on uid_rule_cases (max_length 10): the rows it fails,
    with their failure_reason. uid_rule.yml compares it with the expected reasons.
    A Jinja comment: fakesnow turns SQL line comments into block comments, and DuckDB then
    misreads the trim characters after a block comment holding an apostrophe. -#}
{{ moengage.default__test_moengage_uid(ref('uid_rule_cases'), 'uid', 10) }}

{#- The fixtures of the moengage_uid test (models/uid_rule/), each a model of (case_id, uid),
    with the max_length its test in uid_rule.yml is given (none: no length limit).
    uid_rule_failures runs the test's query on each; uid_rule_expected_failures resolves
    seeds/uid_rule/expected_uid_rule_failures.csv against them. -#}
{% macro uid_rule_fixtures() %}
    {{ return([
        {'name': 'uid_rule_cases', 'max_length': 10},
        {'name': 'uid_rule_null', 'max_length': none},
        {'name': 'uid_rule_empty', 'max_length': none},
        {'name': 'uid_rule_padded', 'max_length': none},
        {'name': 'uid_rule_duplicate', 'max_length': none},
        {'name': 'uid_rule_too_long', 'max_length': 10},
        {'name': 'uid_rule_integer', 'max_length': 10},
    ]) }}
{% endmacro %}

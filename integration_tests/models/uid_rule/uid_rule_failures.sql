{#- The moengage_uid test's own query on each fixture (uid_rule_fixtures, with the
    max_length its test is given): the rows it fails, with their failure_reason, counted
    (a row that fails for two reasons counts once under each). uid_rule.yml compares it
    with uid_rule_expected_failures.
    A Jinja comment: fakesnow turns SQL line comments into block comments, and DuckDB then
    misreads the trim characters after a block comment holding an apostrophe. -#}
with failures as (
{%- for fixture in uid_rule_fixtures() %}

    select '{{ fixture.name }}' as fixture, uid_value, failure_reason
    from (
        {{ adapter.dispatch('test_moengage_uid', 'moengage')(ref(fixture.name), 'uid', fixture.max_length) }}
    ) as {{ fixture.name }}
    {%- if not loop.last %}

    union all
    {%- endif %}
{%- endfor %}

)

select fixture, uid_value, failure_reason, count(*) as row_count
from failures
group by fixture, uid_value, failure_reason

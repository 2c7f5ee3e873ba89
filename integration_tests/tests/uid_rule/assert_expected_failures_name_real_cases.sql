-- Every row of seeds/uid_rule/expected_uid_rule_failures.csv names exactly one case of its
-- fixture, so a misspelt case_id cannot drop out of the comparison in uid_rule.yml.
with cases as (
{%- for fixture in uid_rule_fixtures() %}

    select '{{ fixture.name }}' as fixture, case_id
    from {{ ref(fixture.name) }}
    {%- if not loop.last %}

    union all
    {%- endif %}
{%- endfor %}

),

found as (

    select fixture, case_id, count(*) as cases_found
    from cases
    group by fixture, case_id

)

select expected.fixture, expected.case_id, coalesce(found.cases_found, 0) as cases_found
from {{ ref('expected_uid_rule_failures') }} as expected
left join found
    on expected.fixture = found.fixture
    and expected.case_id = found.case_id
where coalesce(found.cases_found, 0) <> 1

-- What uid_rule_failures must hold: seeds/uid_rule/expected_uid_rule_failures.csv, one row
-- per failing row and reason, named by fixture and case_id; resolved here to the uid the
-- fixture holds for that case (as text, as the test reads it), and counted. The reason
-- 'null' loads as NULL where dbt reads the seed with agate (Postgres, Snowflake), and as
-- text where DuckDB's COPY does: coalesce makes it text everywhere.
with cases as (
{%- for fixture in uid_rule_fixtures() %}

    select
        '{{ fixture.name }}' as fixture,
        case_id,
        {{ moengage.moengage_uid_text('uid') }} as uid_value
    from {{ ref(fixture.name) }}
    {%- if not loop.last %}

    union all
    {%- endif %}
{%- endfor %}

)

select
    expected.fixture,
    cases.uid_value,
    coalesce(expected.failure_reason, 'null') as failure_reason,
    count(*) as row_count
from {{ ref('expected_uid_rule_failures') }} as expected
inner join cases
    on expected.fixture = cases.fixture
    and expected.case_id = cases.case_id
group by expected.fixture, cases.uid_value, coalesce(expected.failure_reason, 'null')

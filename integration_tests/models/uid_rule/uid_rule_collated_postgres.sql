-- uid_rule_collated on Postgres: case variants in a column with a non-deterministic ICU
-- collation (case_insensitive, created by an on-run-start hook in dbt_project.yml), under
-- which 'abc' = 'ABC'. MoEngage's uids are exact bytes, so these are three users and the
-- moengage_uid test finds no duplicate. (The table's column keeps the collation.)
{{ config(materialized='table', enabled=target.type == 'postgres') }}
select uid collate {{ target.schema }}.case_insensitive as uid
from (values ('abc'), ('ABC'), ('Abc')) as variants (uid)

-- Case variants in a column whose collation ignores case: MoEngage's uids do not, so
-- 'abc', 'ABC' and 'Abc' are three users, and the moengage_uid test finds no duplicate.
-- (The table's column keeps the collation: VARCHAR COLLATE nocase.) DuckDB's collation;
-- uid_rule_collated_postgres is the same case on Postgres.
{{ config(materialized='table', enabled=target.type == 'duckdb') }}
select uid collate nocase as uid
from (values ('abc'), ('ABC'), ('Abc')) as variants (uid)

-- What uid_rule_failures must hold: every case with a reason, once per reason.
select uid as uid_value, expected_reason as failure_reason
from {{ ref('uid_rule_cases') }}
where expected_reason <> ''

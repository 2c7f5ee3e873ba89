-- Uids the rule accepts, integers included: the moengage_uid test on it must pass.
select 'ok-1' as uid
union all select 'a b'
union all select 'a' || chr(160) || 'b'
union all select 'x'

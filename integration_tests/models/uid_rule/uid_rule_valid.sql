-- Uids the rule accepts, integers included: the moengage_uid test on it must pass.
select uid from (values ('ok-1'), ('a b'), ('a' || chr(160) || 'b'), ('x')) as valid (uid)

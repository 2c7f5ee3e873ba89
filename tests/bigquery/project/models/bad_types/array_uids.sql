select [n, n + 1] as uid_list from unnest(generate_array(1, 5)) as n

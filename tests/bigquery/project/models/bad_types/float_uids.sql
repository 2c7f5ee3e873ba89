select cast(n as float64) * 1.5 as uid from unnest(generate_array(1, 5)) as n

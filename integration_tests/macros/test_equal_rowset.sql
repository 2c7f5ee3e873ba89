{#-
    equal_rowset: the model holds exactly the rows of compare_model (same columns, same order).

    Fails with each row found on one side only; `diff` says which. Compared as sets, so it is
    meant for models whose rows are unique, like the expected-output seeds here.
-#}
{% test equal_rowset(model, compare_model) %}

with actual as (

    select * from {{ model }}

),

expected as (

    select * from {{ compare_model }}

),

missing as (

    select * from expected
    {{ dbt.except() }}
    select * from actual

),

unexpected as (

    select * from actual
    {{ dbt.except() }}
    select * from expected

)

select 'missing' as diff, * from missing
union all
select 'unexpected' as diff, * from unexpected

{% endtest %}

{#-
    moengage_state_relation: the Relation of one of the runner's state tables, for models,
    analyses and hooks that read them.

        select * from {{ moengage.moengage_state_relation('moengage_sync_runs') }}

    name is moengage_cohort_members, moengage_sync_runs, moengage_sync_locks,
    moengage_cohorts, moengage_state_version, moengage_notifications,
    moengage_webhook_runs or moengage_quota_peers. The table is in target.database, schema
    `schema` if given, else var('moengage_state_schema'), else target.schema: the same place
    the runner and moengage_create_state_tables use. It may not exist yet (before the
    runner's first sync); moengage_state_select reads it either way.
-#}
{% macro moengage_state_relation(name, schema=none) %}
    {{ return(adapter.dispatch('moengage_state_relation', 'moengage')(name, schema)) }}
{% endmacro %}


{% macro default__moengage_state_relation(name, schema) %}

{%- set names = moengage._moengage_state_columns() | map(attribute='name') | list -%}
{%- if name not in names -%}
    {{ exceptions.raise_compiler_error(
        "moengage_state_relation: name must be one of " ~ names | join(', ')
        ~ ", got " ~ (("'" ~ name ~ "'") if name is string else name)
    ) }}
{%- endif -%}

{{ return(api.Relation.create(
    database=target.database,
    schema=moengage._moengage_state_schema('moengage_state_relation', schema),
    identifier=name,
    type='table'
)) }}

{% endmacro %}

{#-
    _moengage_run_statuses: every status the Python runner writes to moengage_sync_runs.status,
    the values the package's accepted_values tests take (models/moengage/moengage.yml).

    The runner's list is dbt_moengage/report/results.py RUN_STATUSES; tests/unit/test_run_statuses.py
    checks that the two agree. A new status the runner writes is one line in each.
-#}
{% macro _moengage_run_statuses() %}
    {{ return([
        'running',
        'synced',
        'failed',
        'guarded',
        'interrupted',
        'not_built',
    ]) }}
{% endmacro %}

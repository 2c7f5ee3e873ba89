"""Airflow DAG: `dbt build`, then sync to MoEngage the cohorts whose models built.

One task runs runner/sync_after_build.sh, which syncs even when the build fails (only the
models that built, with `dbt-moengage sync --only-built`) and fails the task when either
step failed. One task rather than a build task and a sync task with trigger_rule="all_done":
Airflow sets a DAG run's state from its last tasks, so a failed build followed by a
successful sync would show as a successful run.

Copy this file into your DAGs folder and sync_after_build.sh onto the workers; set the
paths below through the workers' environment (or edit the defaults). The workers need `dbt`,
the adapter and `dbt-moengage` on PATH, and the MoEngage settings (MOENGAGE_WORKSPACE_ID,
MOENGAGE_API_KEY, MOENGAGE_DATA_CENTER) and warehouse credentials in their environment,
e.g. from your secrets backend; nothing secret is written here.
Works with Airflow 2.4+ and 3.
"""

from __future__ import annotations

import os
import shlex
from datetime import datetime, timedelta

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.bash import BashOperator

# Where sync_after_build.sh and the dbt project are on the workers.
SYNC_SCRIPT = os.environ.get(
    "MOENGAGE_SYNC_SCRIPT", "/opt/airflow/dbt-moengage/runner/sync_after_build.sh"
)
DBT_PROJECT_DIR = os.environ.get("DBT_PROJECT_DIR", "/opt/airflow/dbt/analytics")
DBT_PROFILES_DIR = os.environ.get("DBT_PROFILES_DIR", DBT_PROJECT_DIR)
DBT_TARGET = os.environ.get("MOENGAGE_DBT_TARGET", "prod")
SCHEDULE = os.environ.get("MOENGAGE_SYNC_SCHEDULE", "0 6 * * *")

with DAG(
    dag_id="moengage_sync",
    description="dbt build, then sync the cohort models that built to MoEngage",
    schedule=SCHEDULE,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,  # two builds at once would fight over the warehouse and target/
    default_args={"retries": 1, "retry_delay": timedelta(minutes=10)},
    tags=["dbt", "moengage"],
) as dag:
    BashOperator(
        task_id="dbt_build_and_moengage_sync",
        # The arguments after the script go to `dbt build`; they also keep the command from
        # ending in ".sh", which Airflow would take for a template file to load.
        bash_command=f"{shlex.quote(SYNC_SCRIPT)} --target {shlex.quote(DBT_TARGET)}",
        env={
            "DBT_PROJECT_DIR": DBT_PROJECT_DIR,
            "DBT_PROFILES_DIR": DBT_PROFILES_DIR,
            "MOENGAGE_SYNC_ARGS": f"--target {DBT_TARGET}",
        },
        append_env=True,  # keep PATH and the MoEngage and warehouse settings of the worker
        execution_timeout=timedelta(hours=3),
    )

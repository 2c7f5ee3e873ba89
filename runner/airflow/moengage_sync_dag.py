"""Airflow DAG: `dbt build`, then sync to MoEngage the cohorts whose models built.

One Python task runs `dbt build`, then calls dbt-moengage's Python API
(`dbt_moengage.sync(..., only_built=True)`): the sync runs even when the build fails,
sending only the cohorts whose model built and passed its tests, and the task fails when
either step failed. Its return value (pushed to XCom) is the sync's per-cohort counts.
One task rather than a build task and a sync task with trigger_rule="all_done": Airflow
sets a DAG run's state from its last tasks, so a failed build followed by a successful
sync would show as a successful run.

Copy this file into your DAGs folder. The workers need `dbt-moengage[<your warehouse>]`
installed in Airflow's Python (it brings dbt and the adapter), the dbt project on disk, and
the MoEngage settings (MOENGAGE_WORKSPACE_ID, MOENGAGE_API_KEY, MOENGAGE_DATA_CENTER) and
warehouse credentials in their environment, e.g. from your secrets backend; nothing secret
is written here. dbt-moengage is imported when the task runs, not when the scheduler parses
this file. Works with Airflow 2.4+ and 3.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

try:  # Airflow 3
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.operators.python import PythonOperator

# Where the dbt project is on the workers, and how to run it.
DBT_PROJECT_DIR = os.environ.get("DBT_PROJECT_DIR", "/opt/airflow/dbt/analytics")
DBT_PROFILES_DIR = os.environ.get("DBT_PROFILES_DIR", DBT_PROJECT_DIR)
DBT_TARGET = os.environ.get("MOENGAGE_DBT_TARGET", "prod")
SCHEDULE = os.environ.get("MOENGAGE_SYNC_SCHEDULE", "0 6 * * *")


def build_and_sync(project_dir: str, profiles_dir: str, target: str) -> dict[str, Any]:
    """Run `dbt build`, then sync the cohorts that built; fail if either step failed."""
    from dbt_moengage import sync

    target_dir = Path(project_dir, os.environ.get("DBT_TARGET_PATH", "target"))
    # A build that stops before writing run results must not leave the last run's behind:
    # the sync would then trust an old build.
    (target_dir / "run_results.json").unlink(missing_ok=True)
    # dbt from the same Python as dbt-moengage, so both read the project the same way.
    build = subprocess.run(
        [sys.executable, "-m", "dbt.cli.main", "build", "--target", target],
        cwd=project_dir,
        env={**os.environ, "DBT_PROFILES_DIR": profiles_dir},
        check=False,
    )
    report = sync(project_dir, target=target, profiles_dir=profiles_dir, only_built=True)
    counts = {
        r.model: {"status": r.status, "added": r.added, "removed": r.removed, "error": r.error}
        for r in report.results
    }
    problems = [f"dbt build exited {build.returncode}"] if build.returncode else []
    if not report.ok:
        problems.append("dbt-moengage sync failed:\n" + report.failure_summary())
    if problems:
        raise RuntimeError("\n".join(problems))
    return counts


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
    PythonOperator(
        task_id="dbt_build_and_moengage_sync",
        python_callable=build_and_sync,
        op_kwargs={
            "project_dir": DBT_PROJECT_DIR,
            "profiles_dir": DBT_PROFILES_DIR,
            "target": DBT_TARGET,
        },
        execution_timeout=timedelta(hours=3),
    )

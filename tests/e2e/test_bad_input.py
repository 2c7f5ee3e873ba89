"""The catalogue of bad input: each case refused with a message naming model, field and value.

A problem with one cohort fails that cohort (exit 1) and the others still sync; a problem
with the run itself (manifest, credentials, URL) stops it before any request (exit 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dbt_moengage.testing.emulator import Emulator

from ..conftest import API_KEY, COHORTS, BuiltProject, dbt, run_cli, sync_args, sync_env

NODE = "model.moengage_integration_tests.{}"


def edit_node(project: BuiltProject, model: str, **changes: Any) -> None:
    """Change a model node in the copied manifest (meta keys go under meta.moengage)."""
    path = project.target_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    node = manifest["nodes"][NODE.format(model)]
    for key, value in changes.items():
        if key in ("relation_name",):
            node[key] = value
        else:
            node["config"]["meta"]["moengage"][key] = value
    path.write_text(json.dumps(manifest))


def results(project: BuiltProject) -> dict[str, dict[str, Any]]:
    data = json.loads((project.target_dir / "moengage_sync_results.json").read_text())
    return {c["model"]: c for c in data["cohorts"]}


CASES: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    "restricted cohort_name": (
        "high_value_users",
        {"cohort_name": ".High=Value"},
        ["high_value_users", "cohort_name", "'.High=Value'", "forbids"],
    ),
    "typo in a key": (
        "high_value_users",
        {"uid_colum": "uid"},
        ["high_value_users", "uid_colum", "did you mean 'uid_column'"],
    ),
    "unknown mode": (
        "high_value_users",
        {"mode": "replace"},
        ["high_value_users", "meta.moengage.mode", "'replace'", "add, mirror"],
    ),
    "missing uid column": (
        "high_value_users",
        {"uid_column": "user_key"},
        ["high_value_users", "uid_column", "'user_key'", "columns: uid"],
    ),
    "unsupported uid type": (
        "high_value_users",
        {"uid_column": "lifetime_value"},
        ["high_value_users", "uid_column", "'lifetime_value'", "DECIMAL(38,2)", "cast"],
    ),
    "model never built": (
        "high_value_users",
        {"relation_name": '"integration_tests"."main"."high_value_users_v2"'},
        ["high_value_users", "does not exist", "dbt build --select high_value_users"],
    ),
    "bad max_uid_length": (
        "high_value_users",
        {"max_uid_length": "64"},
        ["high_value_users", "max_uid_length", "'64'", "positive whole number"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_cohort_fails_alone(project: BuiltProject, emulator: Emulator, case: str) -> None:
    model, changes, expected = CASES[case]
    edit_node(project, model, **changes)
    done = run_cli(sync_args(project), sync_env(project, emulator))
    assert done.returncode == 1, done.stdout + done.stderr
    for text in expected:
        assert text in done.stdout, (text, done.stdout)
    report = results(project)
    assert report[model]["status"] in ("invalid", "failed")
    assert emulator.members(model) == set()
    for cohort_id in set(COHORTS) - {model}:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id), cohort_id


def test_shared_cohort_id_refuses_both(project: BuiltProject, emulator: Emulator) -> None:
    edit_node(project, "messy_signups", cohort_id="high_value_users")
    done = run_cli(sync_args(project), sync_env(project, emulator))
    assert done.returncode == 1
    assert "cohort_id = 'high_value_users': is shared with model(s) messy_signups" in done.stdout
    assert emulator.members("high_value_users") == set()
    assert emulator.members("enterprise_accounts") == project.expected_members(
        "enterprise_accounts"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"metadata": {"dbt_schema_version": "https://schemas', "cannot read dbt manifest"),
        (
            json.dumps(
                {
                    "metadata": {
                        "dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v9.json"
                    },
                    "nodes": {},
                }
            ),
            "needs v12 or newer",
        ),
        ("[1, 2, 3]", "is not a dbt manifest"),
    ],
    ids=["truncated", "old-schema", "not-a-manifest"],
)
def test_unreadable_manifest_exits_2(
    project: BuiltProject, emulator: Emulator, content: str, message: str
) -> None:
    (project.target_dir / "manifest.json").write_text(content)
    done = run_cli(sync_args(project), sync_env(project, emulator))
    assert done.returncode == 2
    assert message in done.stderr and "manifest.json" in done.stderr
    assert emulator.requests() == []


SETTINGS_CASES = [
    ({"MOENGAGE_WORKSPACE_ID": ""}, "MOENGAGE_WORKSPACE_ID", False),
    ({"MOENGAGE_BASE_URL": "", "MOENGAGE_DATA_CENTER": "1"}, "two or three digits", False),
    ({"MOENGAGE_BASE_URL": "", "MOENGAGE_DATA_CENTER": "1"}, "two or three digits", True),
    ({"MOENGAGE_BASE_URL": "http://10.1.2.3:8080"}, "credentials would travel in clear", False),
    # Refused with --dry-run too: the URL is checked before anything else happens.
    ({"MOENGAGE_BASE_URL": "http://10.1.2.3:8080"}, "credentials would travel in clear", True),
]


@pytest.mark.parametrize(
    ("change", "message", "dry_run"),
    SETTINGS_CASES,
    ids=["no-workspace", "data-center", "data-center-dry", "plain-http", "plain-http-dry"],
)
def test_bad_settings_exit_2_before_any_request(
    project: BuiltProject,
    emulator: Emulator,
    change: dict[str, str],
    message: str,
    dry_run: bool,
) -> None:
    env = {**sync_env(project, emulator), **change}
    done = run_cli(sync_args(project, *(["--dry-run"] if dry_run else [])), env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert API_KEY not in done.stdout + done.stderr
    assert emulator.requests() == []


# -- a manifest built for another target ----------------------------------------------------


def parse_for(project: BuiltProject, *args: str, **env: str) -> None:
    """`dbt parse` of integration_tests into the project's target folder (its manifest)."""
    done = dbt(["parse", *args], {**project.env, **env})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_a_manifest_built_for_another_warehouse_is_named(
    project: BuiltProject, emulator: Emulator
) -> None:
    # Parsed for the postgres target (no server needed), synced with the DuckDB default.
    parse_for(project, "--target", "postgres")
    env = sync_env(project, emulator)
    base = ["--project-dir", str(project.project_dir), "--profiles-dir", str(project.project_dir)]
    for args in (sync_args(project), ["validate", "--warehouse", *base]):
        done = run_cli(args, env)
        assert done.returncode == 2, done.stdout + done.stderr
        said = " ".join(done.stderr.split())
        assert "manifest.json was built for a postgres warehouse" in said, said
        assert "target 'dev', a duckdb warehouse" in said and "dbt build --target dev" in said
        assert "does not exist" not in done.stdout + done.stderr
    assert emulator.requests() == []


def test_a_manifest_built_for_another_database_is_named(
    project: BuiltProject, emulator: Emulator, tmp_path: Path
) -> None:
    # The same adapter, another database file: every relation names that database.
    parse_for(project, MOENGAGE_IT_DUCKDB_PATH=str(tmp_path / "warehouse_b.duckdb"))
    done = run_cli(sync_args(project), sync_env(project, emulator))
    assert done.returncode == 1, done.stdout + done.stderr
    report = results(project)
    for model in ("high_value_users", "recently_active", "enterprise_accounts"):
        assert report[model]["status"] == "invalid", report[model]
        error = report[model]["error"]
        assert "was built for database 'warehouse_b'" in error, error
        assert "target 'dev' reads database 'integration_tests'" in error
        assert "dbt build --target dev" in error and "build the model" not in error
    assert emulator.requests() == []

"""The dbt-native workflow: build then sync what built, dbt's selection syntax, ls,
validate, named destinations, JSON logs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbt_moengage.testing.emulator import Emulator, EmulatorConfig

from ..conftest import (
    API_KEY,
    COHORTS,
    INTEGRATION,
    ROOT,
    WORKSPACE,
    BuiltProject,
    run_cli,
    sync_args,
    sync_env,
)
from ..http_receiver import serving

NODE = "model.moengage_integration_tests.{}"


def report(target_dir: Path) -> dict[str, dict[str, Any]]:
    data = json.loads((target_dir / "moengage_sync_results.json").read_text())
    return {c["model"]: c for c in data["cohorts"]}


def edit_json(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# -- sync --only-built ----------------------------------------------------------------------


def test_only_built_skips_failed_models_and_failed_tests(
    project: BuiltProject, emulator: Emulator
) -> None:
    manifest = json.loads((project.target_dir / "manifest.json").read_text())
    enterprise_test = next(
        uid
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] == "test"
        and node.get("attached_node") == NODE.format("enterprise_accounts")
    )

    def fail(results: dict[str, Any]) -> None:
        for row in results["results"]:
            if row["unique_id"] == NODE.format("high_value_users"):
                row["status"] = "error"
            if row["unique_id"] == enterprise_test:
                row["status"] = "fail"
            if row["unique_id"] == NODE.format("messy_signups"):
                results["results"].remove(row)

    edit_json(project.target_dir / "run_results.json", fail)
    done = run_cli(sync_args(project, "--only-built"), sync_env(project, emulator))
    assert done.returncode == 1, done.stdout + done.stderr
    rows = report(project.target_dir)
    assert rows["high_value_users"]["status"] == "skipped"
    assert "did not build (dbt status: error)" in rows["high_value_users"]["error"]
    assert rows["enterprise_accounts"]["status"] == "skipped"
    assert "ended 'fail'" in rows["enterprise_accounts"]["error"]
    # Not part of that dbt invocation: in the table as skipped, not a failure by itself.
    assert rows["messy_signups"]["status"] == "skipped"
    assert rows["messy_signups"]["unselected"] is True
    assert "not built in this dbt invocation" in rows["messy_signups"]["error"]
    assert not rows["high_value_users"]["unselected"]
    assert rows["recently_active"]["status"] == "synced"
    assert emulator.members("recently_active_30d") == project.expected_members(
        "recently_active_30d"
    )
    assert emulator.members("high_value_users") == set()


# -- dbt selection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "synced"),
    [
        (["--select", "+high_value_users"], {"high_value_users"}),
        (["--select", "path:models/cohorts/enterprise"], {"enterprise_accounts"}),
        (
            ["--select", "config.materialized:table", "--exclude", "messy_signups"],
            {"high_value_users", "recently_active", "enterprise_accounts"},
        ),
    ],
    ids=["graph", "path", "config-and-exclude"],
)
def test_dbt_selection_syntax(
    project: BuiltProject, emulator: Emulator, args: list[str], synced: set[str]
) -> None:
    done = run_cli(sync_args(project, *args), sync_env(project, emulator))
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(report(project.target_dir)) == synced


def test_selection_without_a_cohort_exits_2(project: BuiltProject, emulator: Emulator) -> None:
    done = run_cli(sync_args(project, "--select", "user_ltv"), sync_env(project, emulator))
    assert done.returncode == 2
    assert "selects no cohort model" in done.stderr
    bad = run_cli(sync_args(project, "--select", "nosuchmethod:x"), sync_env(project, emulator))
    assert bad.returncode == 2
    assert "dbt could not resolve" in bad.stderr


# -- ls and validate ------------------------------------------------------------------------


def test_ls_lists_cohorts(project: BuiltProject, emulator: Emulator) -> None:
    args = ["ls", "--project-dir", str(project.project_dir), "--profiles-dir", str(INTEGRATION)]
    done = run_cli(args, sync_env(project, emulator))
    assert done.returncode == 0, done.stdout + done.stderr
    for model in ("high_value_users", "recently_active_30d", "customer_number", ".Recent Signups"):
        assert model in done.stdout
    assert emulator.requests() == []


@pytest.mark.parametrize("columns", [80, 100])
def test_ls_fits_a_narrow_console_and_cuts_nothing(
    project: BuiltProject, emulator: Emulator, columns: int
) -> None:
    args = ["ls", "--project-dir", str(project.project_dir), "--profiles-dir", str(INTEGRATION)]
    done = subprocess.run(
        [sys.executable, "-m", "dbt_moengage", *args],
        cwd=ROOT,
        env={**sync_env(project, emulator), "COLUMNS": str(columns)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), done.stdout
    assert "…" not in done.stdout
    said = " ".join(done.stdout.split())
    for values in (
        ("high_value_users", "high_value_users", "'.High Value Users'", "uid"),
        ("recently_active", "recently_active_30d", "'.Recently Active'", "user_id"),
        ("enterprise_accounts", "enterprise_accounts", "'.Enterprise Accounts'", "customer_number"),
        ("messy_signups", "messy_signups", "'.Recent Signups'", "user_ref"),
    ):
        model, cohort_id, name, column = values
        # As the sync summary and `status` stack a cohort: head line, then its fields.
        assert f"{model} -> {cohort_id} (add)" in said, said
        assert f"name {name}" in said and f"uid_column {column}" in said


def test_validate_checks_config_and_settings(project: BuiltProject, emulator: Emulator) -> None:
    args = [
        "validate",
        "--project-dir",
        str(project.project_dir),
        "--profiles-dir",
        str(INTEGRATION),
    ]
    ok = run_cli(args, sync_env(project, emulator))
    assert ok.returncode == 0 and "4 cohort(s) valid" in ok.stdout

    def typo(manifest: dict[str, Any]) -> None:
        manifest["nodes"][NODE.format("high_value_users")]["config"]["meta"]["moengage"][
            "uid_colum"
        ] = "uid"
        manifest["nodes"][NODE.format("enterprise_accounts")]["config"]["meta"]["moengage"][
            "destination"
        ] = "eu"

    edit_json(project.target_dir / "manifest.json", typo)
    bad = run_cli(args, sync_env(project, emulator))
    assert bad.returncode == 1
    assert "did you mean 'uid_column'" in bad.stdout
    assert "MOENGAGE_EU_WORKSPACE_ID" in bad.stdout
    assert emulator.requests() == []


# -- named destinations ---------------------------------------------------------------------


@pytest.fixture
def eu_emulator() -> Iterator[Emulator]:
    config = EmulatorConfig(workspace_id="WS_EU", api_key="sk-eu-key", rate_limit_per_min=None)
    with Emulator(config) as server:
        yield server


def _to_eu(manifest: dict[str, Any]) -> None:
    meta = manifest["nodes"][NODE.format("enterprise_accounts")]["config"]["meta"]["moengage"]
    meta["destination"] = "eu"


def test_named_destination_syncs_to_its_own_workspace(
    project: BuiltProject, emulator: Emulator, eu_emulator: Emulator
) -> None:
    edit_json(project.target_dir / "manifest.json", _to_eu)
    env = sync_env(
        project,
        emulator,
        MOENGAGE_EU_WORKSPACE_ID="WS_EU",
        MOENGAGE_EU_API_KEY="sk-eu-key",
        MOENGAGE_EU_BASE_URL=eu_emulator.url,
        MOENGAGE_EU_RATE_LIMIT_PER_MIN="120",
    )
    done = run_cli(sync_args(project), env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert eu_emulator.members("enterprise_accounts") == project.expected_members(
        "enterprise_accounts"
    )
    assert emulator.members("enterprise_accounts") == set()
    for cohort_id in set(COHORTS) - {"enterprise_accounts"}:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id)
    for text in (done.stdout, done.stderr):
        assert "sk-eu-key" not in text and API_KEY not in text


def test_named_destination_without_credentials_fails_alone(
    project: BuiltProject, emulator: Emulator
) -> None:
    edit_json(project.target_dir / "manifest.json", _to_eu)
    done = run_cli(sync_args(project), sync_env(project, emulator))
    assert done.returncode == 1
    assert "destination 'eu'" in done.stdout and "MOENGAGE_EU_API_KEY" in done.stdout
    assert report(project.target_dir)["enterprise_accounts"]["status"] == "invalid"
    assert emulator.members("high_value_users") == project.expected_members("high_value_users")


# -- JSON logs ------------------------------------------------------------------------------


def test_json_log_format(project: BuiltProject, emulator: Emulator) -> None:
    env = sync_env(project, emulator, MOENGAGE_MAX_BODY_BYTES="3000")
    done = run_cli(sync_args(project, "--log-format", "json"), env)
    assert done.returncode == 0, done.stdout + done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    kinds = {e["event"] for e in events}
    assert {"cohort_started", "progress", "cohort_finished"} <= kinds
    finished = {e["model"]: e for e in events if e["event"] == "cohort_finished"}
    assert set(finished) == {
        "high_value_users",
        "recently_active",
        "enterprise_accounts",
        "messy_signups",
    }
    assert all(e["status"] == "synced" for e in finished.values())
    assert "MoEngage cohort sync" in done.stderr  # the table goes to stderr


# -- dbt-moengage build -----------------------------------------------------------------------


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A copy of integration_tests whose package path points back at this repo."""
    copy = tmp_path / "project"
    shutil.copytree(
        INTEGRATION,
        copy,
        ignore=shutil.ignore_patterns("target", "dbt_packages", "logs", "*.duckdb"),
    )
    (copy / "packages.yml").write_text(f"packages:\n  - local: {ROOT}\n")
    dbt = Path(sys.executable).with_name("dbt")
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    subprocess.run(
        [str(dbt), "deps", "--profiles-dir", str(copy)],
        cwd=copy,
        env=env,
        check=True,
        capture_output=True,
    )
    return copy


def build_env(copy: Path, emulator: Emulator) -> dict[str, str]:
    return {
        **os.environ,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MOENGAGE_IT_DUCKDB_PATH": str(copy / "target" / "integration_tests.duckdb"),
        "MOENGAGE_WORKSPACE_ID": WORKSPACE,
        "MOENGAGE_API_KEY": API_KEY,
        "MOENGAGE_BASE_URL": emulator.url,
        "COLUMNS": "200",
    }


def build_args(copy: Path, *extra: str) -> list[str]:
    return ["build", "--project-dir", str(copy), "--profiles-dir", str(copy), *extra]


def test_build_then_sync_what_built(project_copy: Path, emulator: Emulator) -> None:
    done = run_cli(build_args(project_copy), build_env(project_copy, emulator))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = report(project_copy / "target")
    assert {r["status"] for r in rows.values()} == {"synced"}
    assert set(rows) == {
        "high_value_users",
        "recently_active",
        "enterprise_accounts",
        "messy_signups",
    }
    assert emulator.members("high_value_users")


def test_build_json_keeps_stdout_for_events(project_copy: Path, emulator: Emulator) -> None:
    # An orchestrator reads stdout as the event stream: dbt's own lines go to stderr.
    args = build_args(project_copy, "--log-format", "json", "--exclude", "recently_active")
    done = run_cli(args, build_env(project_copy, emulator))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events and events[-1]["event"] == "summary" and events[-1]["exit_code"] == 0
    finished = {e["model"]: e["status"] for e in events if e["event"] == "cohort_finished"}
    assert finished["high_value_users"] == "synced"
    # Left out of this dbt invocation: listed, skipped, not a failure.
    assert finished["recently_active"] == "skipped"
    assert "Completed successfully" in done.stderr or "PASS" in done.stderr


def test_build_skips_cohorts_whose_model_or_test_failed(
    project_copy: Path, emulator: Emulator
) -> None:
    # A null uid makes the moengage_uid test on high_value_users fail during dbt build.
    model = project_copy / "models" / "cohorts" / "high_value_users.sql"
    model.write_text(model.read_text() + "\nunion all select null, null, null, null, null\n")
    # And a syntax error stops enterprise_accounts from building at all.
    broken = project_copy / "models" / "cohorts" / "enterprise" / "enterprise_accounts.sql"
    broken.write_text(broken.read_text() + "\nthis is not sql\n")
    done = run_cli(build_args(project_copy), build_env(project_copy, emulator))
    assert done.returncode == 1
    rows = report(project_copy / "target")
    assert rows["high_value_users"]["status"] == "skipped"
    assert "test moengage" in rows["high_value_users"]["error"]
    assert rows["enterprise_accounts"]["status"] == "skipped"
    assert rows["recently_active"]["status"] == "synced"
    assert emulator.members("high_value_users") == set()
    assert emulator.members("enterprise_accounts") == set()
    assert emulator.members("recently_active_30d")


def test_build_names_a_misspelt_namespace_once(project_copy: Path, emulator: Emulator) -> None:
    # A new cohort whose namespace key is misspelt in its YAML is no cohort: the build and
    # its sync succeed, and say so once, as a warning line and event, kept in the results.
    yml = project_copy / "models" / "cohorts" / "cohorts.yml"
    text = yml.read_text()
    declared = "        moengage:\n          cohort_name: '.Recently Active'"
    assert text.count(declared) == 1
    yml.write_text(text.replace(declared, declared.replace("moengage:", "MoEngage:")))
    done = run_cli(
        build_args(project_copy, "--log-format", "json"), build_env(project_copy, emulator)
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines()]
    named = "model 'recently_active': config.meta.MoEngage looks like a misspelt `moengage`"
    warned = [e["text"] for e in events if e["event"] == "warning" and "misspelt" in e["text"]]
    assert len(warned) == 1 and warned[0].startswith(named), warned
    kept = json.loads((project_copy / "target" / "moengage_sync_results.json").read_text())
    assert [w for w in kept["warnings"] if "misspelt" in w] == warned
    assert "recently_active" not in report(project_copy / "target")
    assert emulator.members("recently_active_30d") == set()
    assert emulator.members("high_value_users")


def test_only_built_refuses_results_of_a_command_that_builds_nothing(
    project: BuiltProject, emulator: Emulator
) -> None:
    def compiled(results: dict[str, Any]) -> None:
        results["args"]["which"] = "compile"

    edit_json(project.target_dir / "run_results.json", compiled)
    done = run_cli(sync_args(project, "--only-built"), sync_env(project, emulator))
    assert done.returncode == 2
    assert "is from `dbt compile`, which builds no model" in done.stderr
    assert emulator.requests() == []


# -- the dbt package's moengage_uid test: a bad argument ------------------------------------


@pytest.mark.parametrize(("value", "shown"), [("0", "0"), ("'64'", "'64'")], ids=["zero", "text"])
def test_moengage_uid_refuses_a_bad_max_length(project_copy: Path, value: str, shown: str) -> None:
    """The one failure path of the test that no fixture can show: dbt stops while parsing."""
    models = project_copy / "models"
    (models / "bad_length.sql").write_text("select 'a' as uid\n")
    (models / "bad_length.yml").write_text(
        "version: 2\nmodels:\n  - name: bad_length\n    columns:\n      - name: uid\n"
        "        data_tests:\n          - moengage.moengage_uid:\n              arguments:\n"
        f"                max_length: {value}\n"
    )
    dbt = Path(sys.executable).with_name("dbt")
    done = subprocess.run(
        [
            str(dbt),
            "parse",
            "--project-dir",
            str(project_copy),
            "--profiles-dir",
            str(project_copy),
        ],
        cwd=project_copy,
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode != 0
    message = (
        "moengage_uid test on column 'uid': max_length must be a positive integer"
        f" (a character count), got {shown}"
    )
    assert message in done.stdout + done.stderr, done.stdout[-3000:]


def copy_status(copy: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["status", "--project-dir", str(copy), "--profiles-dir", str(copy), *extra]
    return run_cli(args, env)


def test_a_model_failing_in_build_shows_in_status_until_a_sync_succeeds(
    project_copy: Path, emulator: Emulator
) -> None:
    # `build` runs in a process of its own: dbt-duckdb keeps the file open in the process
    # that built, which status would read as a sync still running.
    posts: list[Any] = []

    def answer(path: str, body: Any) -> tuple[int, bytes]:
        posts.append(body)
        return 200, b"ok"

    with serving(answer) as port:
        env = {
            **build_env(project_copy, emulator),
            "MOENGAGE_NOTIFY_URL": f"http://127.0.0.1:{port}/hook",
        }

        def health() -> tuple[int, dict[str, Any]]:
            done = copy_status(project_copy, env, "--output", "json")
            assert done.stdout, done.stderr[-3000:]
            data = json.loads(done.stdout)
            return done.returncode, {c["model"]: c for c in data["cohorts"]}

        first = run_cli(build_args(project_copy), env, process=True)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        # Left out of the invocation is the user's choice: its last run still stands.
        some = run_cli(build_args(project_copy, "--select", "high_value_users"), env, process=True)
        assert some.returncode == 0, some.stdout[-3000:] + some.stderr[-3000:]
        code, cohorts = health()
        assert code == 0 and cohorts["enterprise_accounts"]["health"] == "ok"

        model = project_copy / "models" / "cohorts" / "enterprise" / "enterprise_accounts.sql"
        sql = model.read_text()
        model.write_text(sql + "\nthis is not sql\n")
        broken = run_cli(build_args(project_copy), env, process=True)
        assert broken.returncode == 1
        code, cohorts = health()
        assert code == 1
        enterprise = cohorts["enterprise_accounts"]
        assert enterprise["health"] == "failing"
        assert enterprise["last_run"]["status"] == "not_built"
        assert "its model did not build" in enterprise["error"]
        assert enterprise["members"] == enterprise["last_run"]["members_after"] > 0
        assert enterprise["last_success"] is not None
        assert cohorts["high_value_users"]["health"] == "ok"
        text = copy_status(project_copy, env)
        assert text.returncode == 1 and "not_built" in text.stdout
        (failed,) = posts[0]["cohorts"]
        assert (failed["model"], failed["event"], failed["previous"]) == (
            "enterprise_accounts",
            "failed",
            "synced",
        )

        model.write_text(sql)
        fixed = run_cli(
            build_args(project_copy, "--select", "enterprise_accounts"), env, process=True
        )
        assert fixed.returncode == 0, fixed.stdout[-3000:] + fixed.stderr[-3000:]
        code, cohorts = health()
        assert code == 0 and cohorts["enterprise_accounts"]["health"] == "ok"
        (recovered,) = posts[1]["cohorts"]
        assert (recovered["event"], recovered["previous"]) == ("recovered", "not_built")
        assert len(posts) == 2

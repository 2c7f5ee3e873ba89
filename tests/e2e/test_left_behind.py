"""End to end: cohorts left behind (issue 20, item 6). A small dbt project on DuckDB is
built and synced through the emulator; a mirror model is then renamed, so its default
cohort_id changes, and rebuilt with `dbt-moengage build`. `build`, `sync`, `validate
--warehouse` and `status` name the old cohort, its members, the model that last synced it,
and the new cohort_id now sending its name; cohorts of the project left out by --select are
never named; nothing fails on its account. Then the two ways out docs/configuration.md
gives: pin the old cohort_id, or retire the segment and delete its state rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dbt_moengage.testing.emulator import Emulator

from ..conftest import API_KEY, WORKSPACE, ok, run_cli

# model -> (its config, members): vip_users is the mirror cohort that gets renamed.
MODELS = {
    "vip_users": ("{'cohort_name': 'VIP Users', 'mode': 'mirror'}", 30),
    "newsletter": ("{'cohort_name': 'Newsletter'}", 20),
    "trials": ("{'cohort_name': 'Trials', 'cohort_id': 'trial_users', 'mode': 'mirror'}", 10),
}
OLD, NEW = "vip_users", "vip_customers"


def dbt_in(project: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """dbt of the virtualenv, in the test's own project."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("dbt")), *args, "--profiles-dir", str(project)],
        cwd=project,
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def write_model(project: Path, model: str, meta: str, members: int, users: str = "") -> None:
    """models/<model>.sql: `members` uids (`<users>-<n>`, users: the model's name by default)."""
    (project / "models" / f"{model}.sql").write_text(
        f"{{{{ config(materialized='table', meta={{'moengage': {meta}}}) }}}}\n"
        f"select '{users or model}-' || cast(i as varchar) as uid from range({members}) t(i)\n"
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A dbt project of three cohort models on DuckDB, built."""
    (tmp_path / "models").mkdir()
    (tmp_path / "dbt_project.yml").write_text(
        "name: renames\nversion: '1.0'\nconfig-version: 2\nprofile: renames\n"
    )
    (tmp_path / "profiles.yml").write_text(
        "renames:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        f"      path: {tmp_path / 'renames.duckdb'}\n      schema: main\n"
    )
    for model, (meta, members) in MODELS.items():
        write_model(tmp_path, model, meta, members)
    built = dbt_in(tmp_path, ["build"])
    assert built.returncode == 0, built.stdout[-4000:]
    return tmp_path


def env(emulator: Emulator) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MOENGAGE_", "DBT_"))},
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MOENGAGE_WORKSPACE_ID": WORKSPACE,
        "MOENGAGE_API_KEY": API_KEY,
        "MOENGAGE_BASE_URL": emulator.url,
    }


def cli(
    command: str, project: Path, emulator: Emulator, *extra: str
) -> subprocess.CompletedProcess[str]:
    """The command; `build` in a process of its own: dbt-duckdb keeps the file open in the
    process that built, and DuckDB refuses the read-only connection of a later command."""
    base = ["--project-dir", str(project), "--profiles-dir", str(project)]
    return run_cli([command, *base, *extra], env(emulator), process=command == "build")


def events(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def warnings(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [e["text"] for e in events(done) if e["event"] == "warning"]


def one_line(text: str) -> str:
    return " ".join(text.split())


def named(text: str, cohort_id: str) -> bool:
    return f"cohort '{cohort_id}' is left behind" in one_line(text)


def status(project: Path, emulator: Emulator, *extra: str) -> dict[str, Any]:
    done = cli("status", project, emulator, "--output", "json", *extra)
    assert done.returncode == 0, ok(done)
    data: dict[str, Any] = json.loads(done.stdout)
    assert data["exit_code"] == 0
    return data


def rename(project: Path) -> None:
    """git mv models/vip_users.sql models/vip_customers.sql: same config, new name."""
    (project / "models" / f"{OLD}.sql").unlink()
    meta, members = MODELS[OLD]
    write_model(project, NEW, meta, members, users=OLD)


def test_a_renamed_model_leaves_its_cohort_behind_and_every_command_names_it(
    project: Path, emulator: Emulator
) -> None:
    first = cli("sync", project, emulator)
    assert first.returncode == 0, ok(first)
    assert "left behind" not in first.stdout
    assert len(emulator.members(OLD)) == 30

    # The model is renamed and rebuilt: `build` syncs the new cohort_id, names the old one.
    rename(project)
    build = cli("build", project, emulator, "--log-format", "json")
    assert build.returncode == 0, ok(build)
    assert events(build)[-1]["event"] == "summary" and events(build)[-1]["exit_code"] == 0
    (warning,) = warnings(build)
    for said in (
        "cohort 'vip_users' is left behind: the sync state holds 30 members for it",
        f"workspace {WORKSPACE} at {emulator.url}",
        "no cohort model of the project syncs it",
        "model vip_users last synced it at ",
        "Its MoEngage segment no longer updates: nobody new joins it and, though it is a "
        "mirror cohort, nobody leaves it",
        "Its cohort_name 'VIP Users' is now used by cohort_id 'vip_customers' (model "
        "vip_customers)",
        "add `cohort_id: vip_users` to meta.moengage of model vip_customers",
    ):
        assert said in warning, said
    written = json.loads((project / "target" / "moengage_sync_results.json").read_text())
    assert written["warnings"] == [warning] and written["exit_code"] == 0
    assert len(emulator.members(NEW)) == 30 and len(emulator.members(OLD)) == 30

    # sync, text output: named, with a selection that leaves out cohorts still in the
    # project (they are not left behind), and the exit code unchanged.
    synced = cli("sync", project, emulator, "--select", "newsletter")
    assert synced.returncode == 0, ok(synced)
    assert named(synced.stdout, OLD) and "holds 30 members" in one_line(synced.stdout)
    for kept in (NEW, "trial_users", "newsletter"):
        assert not named(synced.stdout, kept), kept

    # validate --warehouse: named too, and the renamed mirror cohort relies on the default
    # cohort_id: the exact meta line to pin it. trials sets its own; newsletter adds only.
    checked = cli("validate", project, emulator, "--warehouse")
    assert checked.returncode == 0, ok(checked)
    text = one_line(checked.stdout)
    assert named(text, OLD) and "is now used by cohort_id 'vip_customers'" in text
    assert (
        "model 'vip_customers': a mirror cohort whose cohort_id is the model's name by "
        "default" in text
    )
    assert "Pin it: add `cohort_id: vip_customers` to its meta.moengage" in text
    assert "model 'trials'" not in text and "model 'newsletter'" not in text
    assert "3 cohort(s) valid" in text

    # status: listed as left behind, in JSON and the table, whatever is selected; exit 0.
    data = status(project, emulator, "--select", "trials")
    assert [c["cohort_id"] for c in data["cohorts"]] == ["trial_users"]
    (left,) = data["left_behind"]
    assert left["cohort_id"] == OLD and left["health"] == "left behind"
    assert (left["members"], left["model"], left["mode"]) == (30, OLD, "mirror")
    assert left["cohort_name"] == "VIP Users" and left["workspace_id"] == WORKSPACE
    assert left["name_now_used_by"] == [{"cohort_id": NEW, "model": NEW}]
    assert left["last_synced"]["seconds_ago"] >= 0
    table = cli("status", project, emulator)
    assert table.returncode == 0, ok(table)
    (row,) = [line for line in table.stdout.splitlines() if line.startswith(f"│ {OLD} ")]
    assert "left behind" in row and "30" in row
    assert named(table.stdout, OLD)

    # Way out 1 (docs/configuration.md): pin the old cohort_id in the renamed model. The old segment
    # syncs again from its state (nothing re-added); now the new id is the one left behind.
    pin = "{'cohort_name': 'VIP Users', 'mode': 'mirror', 'cohort_id': 'vip_users'}"
    write_model(project, NEW, pin, 31, users=OLD)
    built = dbt_in(project, ["build", "--select", NEW])
    assert built.returncode == 0, built.stdout[-4000:]
    pinned = cli("sync", project, emulator, "--select", NEW, "--log-format", "json")
    assert pinned.returncode == 0, ok(pinned)
    (finished,) = [e for e in events(pinned) if e["event"] == "cohort_finished"]
    assert finished["cohort_id"] == OLD and finished["added"] == 1
    assert len(emulator.members(OLD)) == 31
    (warning,) = warnings(pinned)
    assert named(warning, NEW) and "holds 30 members" in warning
    assert "Its cohort_name 'VIP Users' is now used by cohort_id 'vip_users'" in warning

    # Way out 2 (docs/configuration.md): the new segment is retired; delete its state rows.
    with duckdb.connect(str(project / "renames.duckdb")) as conn:
        for table_name in ("moengage_cohort_members", "moengage_cohorts"):
            conn.execute(f"delete from main.{table_name} where cohort_id = ?", [NEW])
    assert status(project, emulator)["left_behind"] == []

"""What a user installs: the README's install line, run as written in a fresh venv with no
constraints file (pyproject.toml's bounds alone resolve from the package registries), brings
no Snowflake package, syncs on DuckDB, and names the extra to install for another warehouse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dbt_moengage.testing.emulator import Emulator

from ..conftest import COHORTS, ROOT, BuiltProject, sync_env

# The README's line for installing from a checkout (the clone's folder is dbt-moengage).
INSTALL_LINE = 'pip install "./dbt-moengage[duckdb]"'


def test_the_duckdb_extra_alone_syncs_and_names_the_missing_extra(
    project: BuiltProject, emulator: Emulator, tmp_path: Path
) -> None:
    assert INSTALL_LINE in (ROOT / "README.md").read_text()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # As written, from the checkout's parent folder, with no constraints file: dbt-core 1.12,
    # whose build downloads a parser from outside the registries, must be out of range.
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    done = subprocess.run(
        [*pip, INSTALL_LINE.split('"')[1].replace("dbt-moengage", ROOT.name, 1)],
        cwd=ROOT.parent,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    installed = {line.split("==")[0] for line in listed.splitlines()}
    assert "dbt-duckdb" in installed and "duckdb" in installed
    assert not [
        name for name in installed if "snowflake" in name or "psycopg" in name or "bigquery" in name
    ]
    assert not {"cryptography", "starlette", "uvicorn", "fakesnow"} & installed

    cli = str(venv / "bin" / "dbt-moengage")
    args = ["sync", "--project-dir", str(project.project_dir)]
    args += ["--profiles-dir", str(project.project_dir)]
    synced = subprocess.run(
        [cli, *args], env=sync_env(project, emulator), capture_output=True, text=True, timeout=600
    )
    assert synced.returncode == 0, synced.stdout[-4000:] + synced.stderr[-4000:]
    for cohort_id in COHORTS:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id), cohort_id

    # A Snowflake profile in this install: the error names the extra to install.
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "profiles.yml").write_text(
        "moengage_integration_tests:\n  target: sf\n  outputs:\n    sf:\n      type: snowflake\n"
        "      account: acme\n      user: u\n      password: p\n      database: d\n"
        "      schema: s\n      warehouse: w\n"
    )
    args[-1] = str(profiles)
    refused = subprocess.run(
        [cli, *args], env=sync_env(project, emulator), capture_output=True, text=True, timeout=600
    )
    assert refused.returncode == 2, refused.stdout[-4000:] + refused.stderr[-4000:]
    assert 'pip install "dbt-moengage[snowflake]"' in " ".join(refused.stderr.split())

    # And a BigQuery one.
    (profiles / "profiles.yml").write_text(
        "moengage_integration_tests:\n  target: bq\n  outputs:\n    bq:\n      type: bigquery\n"
        "      method: oauth\n      project: p\n      dataset: d\n"
    )
    refused = subprocess.run(
        [cli, *args], env=sync_env(project, emulator), capture_output=True, text=True, timeout=600
    )
    assert refused.returncode == 2, refused.stdout[-4000:] + refused.stderr[-4000:]
    assert 'pip install "dbt-moengage[bigquery]"' in " ".join(refused.stderr.split())

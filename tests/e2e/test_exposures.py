"""`dbt-moengage exposures` on a copy of integration_tests, read back by real dbt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..conftest import COHORTS, run_cli
from .test_runner_recipes import copy_integration_project

DBT = Path(sys.executable).with_name("dbt")
MODELS = {cohort_id: relation for cohort_id, (relation, _) in COHORTS.items()}
OWNER = {"name": "Growth team", "email": "growth@example.com"}

USER_FILE = """\
# Exposures we wrote by hand.
exposures:
  # The weekly CRM dashboard; ask Ana before changing it.
  - name: crm_weekly   # keep this name
    type: dashboard
    owner: {name: Ana, email: ana@example.com}
    depends_on: [ref('user_ltv')]
    description: >
      Folded text,
      kept as written.

  - name: moengage_gone_cohort
    label: "MoEngage: .Gone"
    type: application
    owner:
      name: dbt-moengage
    depends_on:
      - ref('user_ltv')
    config:
      meta:
        moengage_managed: true
        moengage:
          model: gone_cohort
"""


@dataclass(frozen=True)
class Project:
    """A parsed copy of integration_tests, its exposures file and the environment to run in."""

    root: Path
    env: dict[str, str]

    @property
    def exposures_file(self) -> Path:
        return self.root / "models" / "moengage_exposures.yml"

    def dbt(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(DBT), *args, "--profiles-dir", str(self.root)],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        return done

    def exposures(self, *args: str) -> subprocess.CompletedProcess[str]:
        base = ["exposures", "--project-dir", str(self.root), "--profiles-dir", str(self.root)]
        return run_cli([*base, *args], self.env)

    def ls(self, selector: str) -> set[str]:
        """`dbt ls -s <selector>`: the names of the models (and exposures) it selects."""
        done = self.dbt("ls", "-s", selector, "--output", "name", "--quiet")
        return set(done.stdout.split())

    def parsed_exposures(self) -> dict[str, dict[str, Any]]:
        """`dbt parse`, then the exposures of the manifest it wrote, by name."""
        self.dbt("parse")
        manifest = json.loads((self.root / "target" / "manifest.json").read_text())
        return {node["name"]: node for node in manifest["exposures"].values()}


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """integration_tests copied, one cohort given an owner, `dbt deps` and `dbt parse` run."""
    work = tmp_path_factory.mktemp("exposures")
    root = copy_integration_project(work)
    cohorts = root / "models" / "cohorts" / "cohorts.yml"
    text = cohorts.read_text()
    marker = "          cohort_id: recently_active_30d\n"
    assert marker in text
    owner = f"          owner: {{name: {OWNER['name']}, email: {OWNER['email']}}}\n"
    text = text.replace(marker, marker + owner)
    # A cohort name with Jinja in it (written raw, so the model's own config keeps it).
    name = "        cohort_name: '.Recent Signups'\n"
    assert name in text
    raw = "        cohort_name: '.Recent Signups {% raw %}{{ x }}{% endraw %}'\n"
    cohorts.write_text(text.replace(name, raw))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBT_", "MOENGAGE_"))}
    env.update(
        {
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MOENGAGE_IT_DUCKDB_PATH": str(work / "integration_tests.duckdb"),
        }
    )
    project = Project(root, env)
    project.dbt("deps")
    project.dbt("parse")
    return project


@pytest.fixture
def project(parsed: Project) -> Iterator[Project]:
    """The parsed copy, with no exposures file before and after each test."""
    parsed.exposures_file.unlink(missing_ok=True)
    yield parsed
    parsed.exposures_file.unlink(missing_ok=True)


def test_dbt_parses_the_exposures_and_lists_each_cohorts_model(project: Project) -> None:
    done = project.exposures()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 added" in done.stdout
    exposures = project.parsed_exposures()
    assert set(exposures) == {f"moengage_{cohort_id}" for cohort_id in COHORTS}
    for cohort_id, model in MODELS.items():
        exposure = exposures[f"moengage_{cohort_id}"]
        assert exposure["type"] == "application"
        assert exposure["depends_on"]["nodes"] == [f"model.moengage_integration_tests.{model}"]
        assert exposure["config"]["meta"]["moengage_managed"] is True
        assert exposure["config"]["meta"]["moengage"]["cohort_id"] == cohort_id
        assert cohort_id in exposure["description"]
    assert exposures["moengage_recently_active_30d"]["owner"] == OWNER
    assert exposures["moengage_high_value_users"]["owner"]["name"] == "dbt-moengage"
    assert ".High Value Users" in exposures["moengage_high_value_users"]["label"]
    # dbt renders an exposure's strings: Jinja in a cohort name is shown as written.
    messy = exposures["moengage_messy_signups"]
    assert messy["label"] == "MoEngage: .Recent Signups {{ x }}"
    assert messy["config"]["meta"]["moengage"]["cohort_name"] == ".Recent Signups {{ x }}"
    assert ".Recent Signups {{ x }}" in messy["description"]
    # `+exposure:` lists the cohort's model and what it is built from.
    lineage = project.ls("+exposure:moengage_high_value_users")
    assert {"high_value_users", "user_ltv", "moengage_high_value_users"} <= lineage
    assert "recently_active" not in lineage
    assert set(MODELS.values()) <= project.ls("+tag:moengage")


def test_rerunning_leaves_the_file_byte_identical(project: Project) -> None:
    assert project.exposures().returncode == 0
    written = project.exposures_file.read_bytes()
    again = project.exposures()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "up to date" in again.stdout
    assert project.exposures_file.read_bytes() == written
    check = project.exposures("--check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_check_fails_and_writes_nothing_when_out_of_date(project: Project) -> None:
    done = project.exposures("--check")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "out of date" in done.stdout
    assert not project.exposures_file.exists()


def test_user_exposures_are_kept_and_stale_managed_ones_removed(project: Project) -> None:
    project.exposures_file.write_text(USER_FILE)
    user_part = USER_FILE.split("\n  - name: moengage_gone_cohort")[0]

    # A partial selection writes its cohort's exposure and removes nothing.
    selected = project.exposures("--select", "high_value_users")
    assert selected.returncode == 0, selected.stdout + selected.stderr
    found = yaml.safe_load(project.exposures_file.read_text())["exposures"]
    assert [e["name"] for e in found] == [
        "crm_weekly",
        "moengage_gone_cohort",
        "moengage_high_value_users",
    ]

    done = project.exposures()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removed" in done.stdout and "moengage_gone_cohort" in done.stdout
    text = project.exposures_file.read_text()
    assert text.startswith(user_part + "\n")
    exposures = project.parsed_exposures()
    assert "moengage_gone_cohort" not in exposures
    assert set(exposures) == {"crm_weekly", *(f"moengage_{c}" for c in COHORTS)}
    assert "user_ltv" in project.ls("+exposure:crm_weekly")
    assert project.exposures().stdout.count("up to date") == 1
    assert project.exposures_file.read_text() == text


def test_a_bad_owner_is_refused_by_name(project: Project) -> None:
    done = project.exposures("--owner-email", "not an email")
    assert done.returncode == 2
    assert "--owner-email" in done.stderr
    assert not project.exposures_file.exists()

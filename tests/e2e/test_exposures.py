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

from dbt_moengage.exposures_yaml import render_file

from ..conftest import COHORTS, run_cli
from .test_runner_recipes import copy_integration_project

DBT = Path(sys.executable).with_name("dbt")
MODELS = {cohort_id: relation for cohort_id, (relation, _) in COHORTS.items()}
OWNER = {"name": "Growth team", "email": "growth@example.com"}

# The user's own exposures, in a file of their own: dbt-moengage never opens it.
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

  # Taken over from dbt-moengage: its mark removed, so it is ours now.
  - name: moengage_enterprise_accounts
    type: dashboard
    owner: {name: Ana}
    depends_on: [ref('enterprise_accounts')]
"""

# A managed exposure whose cohort is gone, as an earlier run wrote it.
STALE_FILE = render_file(
    [
        {
            "name": "moengage_gone_cohort",
            "label": "MoEngage: .Gone",
            "type": "application",
            "owner": {"name": "dbt-moengage"},
            "depends_on": ["ref('user_ltv')"],
            "config": {"meta": {"moengage_managed": True, "moengage": {"model": "gone_cohort"}}},
        }
    ]
)

# Cohort names with Jinja in them (issue "Hardening, round three", item 9): a raw block
# closed early, and one that did so to read an environment variable into the docs.
ENDRAW_NAME = ".Recently Active {% endraw %}"
LEAK_NAME = ".Recent Signups {{ x }} {% endraw %}{{ env_var('SECRET_X') }}{% raw %}"
SECRET = "s3cr3t-value-of-SECRET_X"


@dataclass(frozen=True)
class Project:
    """A parsed copy of integration_tests, its exposures file and the environment to run in."""

    root: Path
    env: dict[str, str]

    @property
    def exposures_file(self) -> Path:
        return self.root / "models" / "moengage_exposures.yml"

    @property
    def user_file(self) -> Path:
        """The user's own exposures: a file dbt-moengage never writes."""
        return self.root / "models" / "crm_exposures.yml"

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
    # Cohort names with Jinja in them, each `{{`/`{%` written as an expression of a string,
    # so that the model's own config keeps them as written: ENDRAW_NAME and LEAK_NAME.
    names = {
        "          cohort_name: '.Recently Active'\n": (
            """          cohort_name: '.Recently Active {{ "{%" }} endraw %}'\n"""
        ),
        "        cohort_name: '.Recent Signups'\n": (
            """        cohort_name: '.Recent Signups {{ "{{" }} x }} {{ "{%" }} endraw %}"""
            """{{ "{{" }} env_var(''SECRET_X'') }}{{ "{%" }} raw %}'\n"""
        ),
    }
    for name, jinja in names.items():
        assert name in text
        text = text.replace(name, jinja)
    cohorts.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBT_", "MOENGAGE_"))}
    env.update(
        {
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MOENGAGE_IT_DUCKDB_PATH": str(work / "integration_tests.duckdb"),
            "SECRET_X": SECRET,
        }
    )
    project = Project(root, env)
    project.dbt("deps")
    project.dbt("parse")
    return project


@pytest.fixture
def project(parsed: Project) -> Iterator[Project]:
    """The parsed copy, with no exposures files before and after each test."""
    for path in (parsed.exposures_file, parsed.user_file):
        path.unlink(missing_ok=True)
    yield parsed
    for path in (parsed.exposures_file, parsed.user_file):
        path.unlink(missing_ok=True)


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
    # dbt renders an exposure's strings: Jinja in a cohort name is shown as written, a
    # raw block closed early included, and no environment variable is read.
    for cohort_id, name in (("recently_active_30d", ENDRAW_NAME), ("messy_signups", LEAK_NAME)):
        exposure = exposures[f"moengage_{cohort_id}"]
        assert exposure["label"] == f"MoEngage: {name}"
        assert exposure["config"]["meta"]["moengage"]["cohort_name"] == name
        assert exposure["description"].startswith(f"MoEngage cohort '{name}' (cohort_id ")
    assert SECRET not in (project.root / "target" / "manifest.json").read_text()
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


def test_user_exposures_live_in_their_own_file_and_stale_managed_ones_go(
    project: Project,
) -> None:
    project.user_file.write_text(USER_FILE)
    project.exposures_file.write_text(STALE_FILE)
    try:
        project.dbt("parse")

        # A partial selection writes its cohort's exposure and removes nothing.
        selected = project.exposures("--select", "high_value_users")
        assert selected.returncode == 0, selected.stdout + selected.stderr
        found = yaml.safe_load(project.exposures_file.read_text())["exposures"]
        assert [e["name"] for e in found] == ["moengage_gone_cohort", "moengage_high_value_users"]

        done = project.exposures()
        assert done.returncode == 0, done.stdout + done.stderr
        assert "removed" in done.stdout and "moengage_gone_cohort" in done.stdout
        # The exposure the user took over is theirs: none is generated in its place.
        assert "yours" in done.stdout and "moengage_enterprise_accounts" in done.stdout
        text = project.exposures_file.read_text()
        exposures = project.parsed_exposures()
        assert "moengage_gone_cohort" not in exposures
        assert set(exposures) == {"crm_weekly", *(f"moengage_{c}" for c in COHORTS)}
        assert exposures["moengage_enterprise_accounts"]["original_file_path"] == (
            "models/crm_exposures.yml"
        )
        assert "user_ltv" in project.ls("+exposure:crm_weekly")
        assert project.exposures().stdout.count("up to date") == 1
        assert project.exposures_file.read_text() == text
        assert project.user_file.read_text() == USER_FILE
    finally:
        # The next tests start from a manifest without the user's exposures.
        project.user_file.unlink()
        project.exposures_file.unlink(missing_ok=True)
        project.dbt("parse")


@pytest.mark.parametrize("check", [False, True])
def test_a_file_the_user_writes_in_is_refused_and_left_alone(project: Project, check: bool) -> None:
    """Issue "Hardening, round three", item 10: neither --path at the user's file nor
    their exposures in the generated file make dbt-moengage edit what it did not write."""
    project.user_file.write_text(USER_FILE)
    anchored = STALE_FILE.replace("    owner:\n", "    owner: &o\n") + (
        "  - name: mine\n    type: ml\n    owner: *o\n    depends_on: [ref('user_ltv')]\n"
    )
    project.exposures_file.write_text(anchored)
    flags = ["--check"] if check else []
    for args, says in (
        (["--path", "models/crm_exposures.yml"], "holds exposure `crm_weekly`"),
        ([], "uses YAML anchors or aliases (line 8: &o)"),
    ):
        done = project.exposures(*args, *flags)
        assert done.returncode == 2, done.stdout + done.stderr
        message = " ".join(done.stderr.split())
        assert says in message and "move your own exposures" in message, message
    assert project.user_file.read_text() == USER_FILE
    assert project.exposures_file.read_text() == anchored


def test_a_symlinked_file_is_written_through_its_link(project: Project) -> None:
    shared = project.root / "shared" / "moengage_exposures.yml"
    shared.parent.mkdir(exist_ok=True)
    shared.write_text(STALE_FILE)
    project.exposures_file.symlink_to(Path("..", "shared", "moengage_exposures.yml"))
    try:
        done = project.exposures()
        assert done.returncode == 0, done.stdout + done.stderr
        assert "4 added" in done.stdout and "1 removed" in done.stdout
        assert project.exposures_file.is_symlink()
        assert set(yaml.safe_load(shared.read_text())["exposures"][0]) >= {"name", "label"}
        # dbt reads the file where the link is: a re-run knows the exposures as its own.
        exposures = project.parsed_exposures()
        assert set(exposures) == {f"moengage_{cohort_id}" for cohort_id in COHORTS}
        path = exposures["moengage_high_value_users"]["original_file_path"]
        assert path == "models/moengage_exposures.yml"
        again = project.exposures("--check")
        assert again.returncode == 0 and "up to date" in again.stdout, again.stdout
    finally:
        project.exposures_file.unlink(missing_ok=True)
        shared.unlink(missing_ok=True)


def test_a_bad_owner_is_refused_by_name(project: Project) -> None:
    done = project.exposures("--owner-email", "not an email")
    assert done.returncode == 2
    assert "--owner-email" in done.stderr
    assert not project.exposures_file.exists()

"""Shared fixtures: a real `dbt build` of integration_tests and a real emulator on loopback."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dbt_moengage import uids
from dbt_moengage.cli import exit_code
from dbt_moengage.testing.emulator import Emulator, EmulatorConfig

# pytest-xdist's workers start with execnet's COLUMNS=80 and LINES=24: the tests, and the
# processes they start, get the environment a plain pytest run has.
if "PYTEST_XDIST_WORKER" in os.environ:
    for _name in ("COLUMNS", "LINES"):
        os.environ.pop(_name, None)

ROOT = Path(__file__).resolve().parents[1]
INTEGRATION = ROOT / "integration_tests"
WORKSPACE = "WS_E2E_TEST"
API_KEY = "sk-e2e-9f8e7d6c5b4a-do-not-print"

# Cohort id -> (relation, uid column) in integration_tests.
COHORTS = {
    "high_value_users": ("high_value_users", "uid"),
    "recently_active_30d": ("recently_active", "user_id"),
    "enterprise_accounts": ("enterprise_accounts", "customer_number"),
    "messy_signups": ("messy_signups", "user_ref"),
}


@dataclass(frozen=True)
class BuiltProject:
    """integration_tests after `dbt build`, with its target and database in a temp folder."""

    project_dir: Path
    target_dir: Path
    database: Path
    env: dict[str, str]

    def expected_members(self, cohort_id: str) -> set[str]:
        """The cohort's uids computed here, independently of the runner's SQL."""
        relation, column = COHORTS[cohort_id]
        with duckdb.connect(str(self.database), read_only=True) as conn:
            rows = conn.execute(f'select "{column}" from main.{relation}').fetchall()
        return {
            str(value) for (value,) in rows if value is not None and not uids.problem(str(value))
        }


def dbt(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run dbt from the virtualenv in integration_tests.

    `dbt deps` replaces integration_tests/dbt_packages, which every build there reads: the
    test processes (pytest-xdist's workers) run it one at a time, and not while another
    process starts a build.
    """
    exe = Path(sys.executable).with_name("dbt")
    with _packages_lock(exclusive=args[:1] == ["deps"]):
        return subprocess.run(
            [str(exe), *args, "--profiles-dir", str(INTEGRATION)],
            cwd=INTEGRATION,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )


@contextlib.contextmanager
def _packages_lock(exclusive: bool) -> Iterator[None]:
    """A lock on integration_tests/dbt_packages across the test processes (flock)."""
    path = (
        Path(tempfile.gettempdir())
        / f"dbt-moengage-tests-{hashlib.sha1(bytes(ROOT)).hexdigest()[:12]}.lock"
    )
    with path.open("a") as file:
        fcntl.flock(file, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def built_project(tmp_path_factory: pytest.TempPathFactory) -> BuiltProject:
    """`dbt deps` and `dbt build` of integration_tests, once per test session."""
    work = tmp_path_factory.mktemp("dbt")
    env = {
        **os.environ,
        "DBT_TARGET_PATH": str(work / "target"),
        "DBT_LOG_PATH": str(work / "logs"),
        "MOENGAGE_IT_DUCKDB_PATH": str(work / "integration_tests.duckdb"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    for args in (["deps"], ["build"]):
        done = dbt(args, env)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return BuiltProject(INTEGRATION, work / "target", work / "integration_tests.duckdb", env)


@pytest.fixture
def project(built_project: BuiltProject, tmp_path: Path) -> BuiltProject:
    """A per-test copy of the target folder and database, so state and reports do not leak."""
    target = tmp_path / "target"
    shutil.copytree(built_project.target_dir, target, ignore=shutil.ignore_patterns("*.duckdb"))
    # Same file name: the manifest's relation names carry the database (file stem).
    database = tmp_path / "db" / built_project.database.name
    database.parent.mkdir()
    shutil.copy(built_project.database, database)
    env = {
        **built_project.env,
        "DBT_TARGET_PATH": str(target),
        "MOENGAGE_IT_DUCKDB_PATH": str(database),
    }
    return BuiltProject(built_project.project_dir, target, database, env)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """An unlimited emulator on 127.0.0.1 that accepts the test workspace's credentials."""
    config = EmulatorConfig(workspace_id=WORKSPACE, api_key=API_KEY, rate_limit_per_min=None)
    with Emulator(config) as server:
        yield server


def sync_env(project: BuiltProject, emulator: Emulator, **extra: str) -> dict[str, str]:
    """Environment for a sync against the emulator, with fast retries."""
    return {
        **project.env,
        "MOENGAGE_WORKSPACE_ID": WORKSPACE,
        "MOENGAGE_API_KEY": API_KEY,
        "MOENGAGE_BASE_URL": emulator.url,
        "MOENGAGE_RETRY_INITIAL_SECONDS": "0.05",
        "MOENGAGE_RETRY_MAX_SECONDS": "0.5",
        **extra,
    }


def run_cli(
    args: list[str], env: dict[str, str], *, process: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `dbt-moengage` with `env` as its whole environment, from the repository root,
    and return its exit code, stdout and stderr.

    In this process (the command's own entry, `cli.exit_code`, with argv, the environment,
    the working folder and the standard streams swapped for the call), unless `process`:
    then in a subprocess, as a user's shell runs it. Tests of what only a process shows
    (signals, what reaches the real stdout and stderr, the process's exit) ask for one.
    """
    if process:
        return subprocess.run(
            [sys.executable, "-m", "dbt_moengage", *args],
            cwd=ROOT,
            env={**env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=600,
        )
    stdout, stderr = io.StringIO(), io.StringIO()
    saved = dict(os.environ), os.getcwd(), sys.argv
    os.environ.clear()
    os.environ.update({**env, "COLUMNS": "200"})
    os.chdir(ROOT)
    sys.argv = ["dbt-moengage", *args]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = exit_code()
    finally:
        os.environ.clear()
        os.environ.update(saved[0])
        os.chdir(saved[1])
        sys.argv = saved[2]
    return subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())


def sync_args(project: BuiltProject, *extra: str) -> list[str]:
    """`sync` arguments pointing at integration_tests."""
    return [
        "sync",
        "--project-dir",
        str(project.project_dir),
        "--profiles-dir",
        str(project.project_dir),
        *extra,
    ]


def sync(
    project: BuiltProject, emulator: Emulator, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """`dbt-moengage sync <args>` against the emulator."""
    return run_cli(sync_args(project, *args), sync_env(project, emulator, **env))


def ok(done: subprocess.CompletedProcess[str]) -> str:
    """What to show when a run that should have passed did not."""
    return done.stdout[-4000:] + done.stderr[-4000:]


def results(project: BuiltProject) -> dict[str, dict[str, Any]]:
    """target/moengage_sync_results.json, by cohort id (the model's name when it has none)."""
    data = json.loads((project.target_dir / "moengage_sync_results.json").read_text())
    return {c["cohort_id"] or c["model"]: c for c in data["cohorts"]}


from .bigquery_emulator import bigquery_dataset, bigquery_emulator  # noqa: E402, F401
from .pgbouncer import pgbouncer  # noqa: E402, F401
from .postgres_server import postgres_database, postgres_server  # noqa: E402, F401

TIERS = ("unit", "e2e")

# `make test-lowest` runs the unit tier on the lowest versions pyproject.toml allows; no
# fakesnow release installs beside DuckDB 1.4 and connector 3.13, so the modules built on
# fakesnow are left out there (and only there: `make test` runs them, fakesnow is in [dev]).
collect_ignore: list[str] = []
if os.environ.get("MOENGAGE_TEST_LOWEST") == "1" and importlib.util.find_spec("fakesnow") is None:
    collect_ignore = [
        str(path.relative_to(Path(__file__).parent))
        for path in sorted(Path(__file__).parent.glob("unit/test_*.py"))
        if re.search(r"^(import fakesnow|from fakesnow)", path.read_text(), re.MULTILINE)
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tier marker comes from the folder: tests/unit/ is `unit`, tests/e2e/ is `e2e`."""
    for item in items:
        tier = item.path.parent.name
        if tier not in TIERS:
            raise pytest.UsageError(
                f"{item.path}: every test module lives in tests/unit/ or tests/e2e/"
            )
        item.add_marker(getattr(pytest.mark, tier))

"""Secrets stay in memory: never in output, reports, exception text or state tables."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

import dbt_moengage
from dbt_moengage.client import MoEngageClient
from dbt_moengage.settings import MoEngageSettings, Secret
from dbt_moengage.testing.emulator import Emulator, Faults

from ..conftest import API_KEY, BuiltProject, run_cli, sync_args, sync_env

WRONG_KEY = "sk-wrong-0f9e8d7c6b5a4-never-printed"


def everything_written(project: BuiltProject) -> str:
    """Every text the run left behind: files under target/ and the state tables' rows."""
    texts = [
        path.read_text(errors="replace")
        for path in Path(project.target_dir).rglob("*")
        if path.is_file() and path.suffix in (".json", ".txt", ".log", ".csv", ".md")
    ]
    with duckdb.connect(str(project.database), read_only=True) as conn:
        tables = conn.execute(
            "select table_name from information_schema.tables "
            "where table_name like 'moengage_%' and table_type = 'BASE TABLE'"
        ).fetchall()
        for (table,) in tables:
            rows = conn.execute(f"select * from main.{table}").fetchall()
            texts.append(repr(rows))
    return "\n".join(texts)


def _break_url(project: BuiltProject, emulator: Emulator) -> dict[str, str]:
    return {"MOENGAGE_BASE_URL": "http://10.0.0.1:9"}


def _wrong_key(project: BuiltProject, emulator: Emulator) -> dict[str, str]:
    return {"MOENGAGE_API_KEY": WRONG_KEY}


def _server_errors(project: BuiltProject, emulator: Emulator) -> dict[str, str]:
    emulator.set_faults(Faults(error_before_rate=1.0))
    return {"MOENGAGE_MAX_ATTEMPTS": "2"}


def _rejected(project: BuiltProject, emulator: Emulator) -> dict[str, str]:
    emulator.config.max_body_bytes = 5_000
    return {}


def _no_workspace(project: BuiltProject, emulator: Emulator) -> dict[str, str]:
    return {"MOENGAGE_WORKSPACE_ID": ""}


def _success(project: BuiltProject, emulator: Emulator) -> dict[str, str]:
    return {}


SCENARIOS: dict[str, tuple[Callable[[BuiltProject, Emulator], dict[str, str]], int]] = {
    "success": (_success, 0),
    "wrong-key": (_wrong_key, 1),
    "server-errors": (_server_errors, 1),
    "rejected-413": (_rejected, 1),
    "no-workspace": (_no_workspace, 2),
    "plain-http": (_break_url, 2),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("dry_run", [False, True], ids=["sync", "dry-run"])
def test_api_key_is_never_written(
    project: BuiltProject, emulator: Emulator, scenario: str, dry_run: bool
) -> None:
    prepare, exit_code = SCENARIOS[scenario]
    env = sync_env(project, emulator, **prepare(project, emulator))
    done = run_cli(sync_args(project, *(["--dry-run"] if dry_run else [])), env)
    if not dry_run:
        assert done.returncode == exit_code, done.stdout + done.stderr
    written = everything_written(project)
    for secret in (API_KEY, WRONG_KEY):
        assert secret not in done.stdout
        assert secret not in done.stderr
        assert secret not in written


def test_tls_verification_is_never_turned_off() -> None:
    settings = MoEngageSettings(
        workspace_id="W", api_key=Secret("k"), base_url="https://api-01.moengage.com"
    )
    with MoEngageClient(settings) as client:
        assert client.session.verify is True
    package = Path(dbt_moengage.__file__).parent
    for source in package.rglob("*.py"):
        text = source.read_text()
        assert not re.search(r"verify\s*=\s*False", text), source
        assert "insecure_mode=True" not in text or "snowflake_connect" in source.name


def test_secret_and_settings_reprs_hide_the_key() -> None:
    settings = MoEngageSettings(workspace_id="W", api_key=Secret(API_KEY), base_url="https://x")
    for text in (repr(settings), str(settings), f"{settings.api_key}", repr(settings.api_key)):
        assert API_KEY not in text


def test_sync_options_repr_holds_no_environment() -> None:
    from dbt_moengage.sync import SyncOptions

    environ = {"MOENGAGE_API_KEY": "sk-in-env-123", "SNOWFLAKE_PASSWORD": "pw-in-env-456"}
    options = SyncOptions(environ=environ)
    for text in (repr(options), str(options), f"{options}"):
        assert "sk-in-env-123" not in text and "pw-in-env-456" not in text
        assert "environ" not in text

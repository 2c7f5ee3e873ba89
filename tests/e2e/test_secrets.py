"""Secrets stay in memory: never in output, reports, exception text or state tables."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import duckdb
import pytest

import dbt_moengage
from dbt_moengage.client import MoEngageClient
from dbt_moengage.settings import MoEngageSettings, Secret
from dbt_moengage.testing.emulator import Emulator, Faults

from ..conftest import API_KEY, ROOT, WORKSPACE, BuiltProject, ok, run_cli, sync_args, sync_env
from ..slow_server import RawServer, answer
from ..unit.test_client_bodies import HUGE, Flood

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
    done = run_cli(sync_args(project, *(["--dry-run"] if dry_run else [])), env, process=True)
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
    from dbt_moengage.pipeline import SyncOptions

    environ = {"MOENGAGE_API_KEY": "sk-in-env-123", "SNOWFLAKE_PASSWORD": "pw-in-env-456"}
    options = SyncOptions(environ=environ)
    for text in (repr(options), str(options), f"{options}"):
        assert "sk-in-env-123" not in text and "pw-in-env-456" not in text
        assert "environ" not in text


# -- what a server echoes, or floods (issue "Hardening, round three", items 11 to 13) --------


def echoed_forms() -> dict[str, str]:
    """The key as a server echoing the request's Authorization header may give it back."""
    token, key = f"{WORKSPACE}:{API_KEY}".encode(), API_KEY.encode()
    return {
        "key upper-cased": API_KEY.upper(),
        "key lower-cased": API_KEY.lower(),
        "key url-quoted": quote(API_KEY, safe=""),
        "key hex": key.hex(),
        "key base64": base64.b64encode(key).decode(),
        "token base64": base64.b64encode(token).decode(),
        "token base64 unpadded": base64.b64encode(token).decode().rstrip("="),
        "token base64 url-safe": base64.urlsafe_b64encode(token).decode(),
        "token base64 url-safe unpadded": base64.urlsafe_b64encode(token).decode().rstrip("="),
    }


def test_an_echoed_key_in_any_form_is_never_stored(
    project: BuiltProject, emulator: Emulator
) -> None:
    forms = echoed_forms()
    echoed = list(dict.fromkeys(forms.values()))  # one sync, each distinct form once
    body = json.dumps({"error": "bad request", "authorization_seen": echoed}).encode()
    with RawServer(answer("400 Bad Request", body)) as server:
        env = sync_env(project, emulator, MOENGAGE_BASE_URL=server.url)
        done = run_cli(sync_args(project), env, process=True)
    assert done.returncode == 1, ok(done)
    # Not in the output, the results file nor the state's run rows, in any case.
    for text in (done.stdout, done.stderr, everything_written(project)):
        leaked = [name for name, form in forms.items() if form.lower() in text.lower()]
        assert leaked == []
    # The echo was quoted, masked: the test reached the code that quotes answers.
    masked = '"authorization_seen": [' + ", ".join(['"***"'] * len(echoed)) + "]"
    report = json.loads((project.target_dir / "moengage_sync_results.json").read_text())
    errors = [cohort["error"] for cohort in report["cohorts"]]
    assert all(masked in error for error in errors), errors
    runs = "select error from main.moengage_sync_runs where status = 'failed'"
    with duckdb.connect(str(project.database), read_only=True) as conn:
        stored = [error for (error,) in conn.execute(runs).fetchall()]
    assert stored and all(masked in error for error in stored), stored


def run_measured(args: list[str], env: dict[str, str], log_path: Path) -> tuple[str, int, int]:
    """`dbt-moengage <args>` as run_cli runs it: its output, exit code and peak memory in
    bytes (this one child's, from wait4: RUSAGE_CHILDREN would give the largest child's)."""
    with log_path.open("w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dbt_moengage", *args],
            cwd=ROOT,
            env={**env, "COLUMNS": "200"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read()
    return text, proc.returncode, usage.ru_maxrss * 1024  # Linux gives KB


def test_a_huge_error_body_costs_no_memory_and_the_run_reports(
    project: BuiltProject, emulator: Emulator, tmp_path: Path
) -> None:
    log = tmp_path / "run.log"
    output, code, baseline = run_measured(sync_args(project), sync_env(project, emulator), log)
    assert code == 0, output[-4000:]
    with Flood("400 Bad Request", start=b'{"error": "cohort_id is invalid"') as server:
        env = sync_env(project, emulator, MOENGAGE_BASE_URL=server.url)
        output, code, peak = run_measured(sync_args(project), env, log)
    assert code == 1, output[-4000:]
    assert peak - baseline < 50 * 1024 * 1024, f"{peak:,} bytes at peak, {baseline:,} usually"
    assert server.sent < HUGE // 2
    report = json.loads((project.target_dir / "moengage_sync_results.json").read_text())
    for cohort in report["cohorts"]:
        assert cohort["status"] == "failed"
        assert "HTTP 400" in cohort["error"] and "cohort_id is invalid" in cohort["error"]
        assert "a body over 64 KB: only its start was read" in cohort["error"]
        assert len(cohort["error"]) < 1_000
    assert "MemoryError" not in output and "Traceback" not in output


def test_a_base_url_whose_host_depends_on_the_parser_is_refused_before_any_request(
    project: BuiltProject, emulator: Emulator
) -> None:
    port = emulator.url.rsplit(":", 1)[1]
    # urlsplit sees 127.0.0.1; requests would connect to 127.1 (this machine) at `port`.
    crafted = f"http://127.1:{port}\\@127.0.0.1/hidden-path"
    done = run_cli(
        sync_args(project), sync_env(project, emulator, MOENGAGE_BASE_URL=crafted), process=True
    )
    assert done.returncode == 2, ok(done)
    assert "MOENGAGE_BASE_URL holds a backslash" in done.stdout + done.stderr
    assert "hidden-path" not in done.stdout + done.stderr
    assert emulator.requests() == []

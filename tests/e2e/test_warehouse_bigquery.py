"""The BigQuery engine opened from a dbt profile, as dbt-bigquery opens it, on the emulator.

Profiles are rendered by dbt and turned into a client by dbt-bigquery's connection manager:
`oauth-secrets` with a token, and `service-account-json` whose key signs a real OAuth token
request, answered by a token server on 127.0.0.1 (the emulator checks no token; the
server sees the signed request). The profile's project, dataset, location, priority,
job timeout, maximum_bytes_billed and api_endpoint reach the engine and every job, and a
failure to authenticate shows no secret.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dbt_moengage.errors import ProfileError, WarehouseError
from dbt_moengage.integrations.dbt_cloud import CloudRun, RunLedger, WebhookConfig
from dbt_moengage.settings import Secret
from dbt_moengage.state import SCHEMA_VERSION, StateStore
from dbt_moengage.warehouse import connect, load_profile_target
from dbt_moengage.warehouse.bigquery import BigQueryWarehouse

from ..bigquery_emulator import TOKEN, BigQueryEmulator

ACCESS_TOKEN = "ya29.minted-by-the-local-token-server"


def project_dir(tmp_path: Path, profile: str) -> Path:
    """A dbt project folder whose profiles.yml holds `profile` (target `bq`)."""
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    (folder / "dbt_project.yml").write_text(
        "name: shop\nversion: '1.0'\nconfig-version: 2\nprofile: shop\n"
    )
    (folder / "profiles.yml").write_text(
        "shop:\n  target: bq\n  outputs:\n    bq:\n      type: bigquery\n"
        + "".join(f"      {line}\n" for line in profile.strip().splitlines())
    )
    return folder


def open_engine(folder: Path, **kwargs: Any) -> BigQueryWarehouse:
    target = load_profile_target(folder, folder, environ={})
    engine = connect(target, folder, **kwargs)
    assert isinstance(engine, BigQueryWarehouse)
    return engine


def test_an_oauth_secrets_profile_sets_every_job(
    bigquery_emulator: BigQueryEmulator, bigquery_dataset: str, tmp_path: Path
) -> None:
    folder = project_dir(
        tmp_path,
        f"""
method: oauth-secrets
token: {TOKEN}
project: {bigquery_emulator.project}
dataset: {bigquery_dataset}
location: US
priority: batch
job_execution_timeout_seconds: 120
maximum_bytes_billed: 1000000000
api_endpoint: {bigquery_emulator.endpoint}
""",
    )
    with open_engine(folder) as engine:
        # The state goes to the profile's dataset unless MOENGAGE_STATE_SCHEMA says otherwise.
        assert (engine.project, engine.state_schema) == (
            bigquery_emulator.project,
            bigquery_dataset,
        )
        assert engine.jobs.location == "US"
        config = engine.jobs.config(())
        assert config.priority == "BATCH"
        assert int(config.job_timeout_ms) == 120_000
        assert int(config.maximum_bytes_billed) == 1_000_000_000
        StateStore(engine).prepare(create=True)
        assert engine.one("state_version")[0] == SCHEMA_VERSION
    found = bigquery_emulator.query(
        f"select count(*) from `{bigquery_emulator.project}.{bigquery_dataset}.moengage_sync_runs`"
    )
    assert found == [(0,)]
    with open_engine(folder, state_schema="elsewhere") as engine:
        StateStore(engine).prepare(create=True)
    assert bigquery_emulator.query(
        f"select count(*) from `{bigquery_emulator.project}.elsewhere.moengage_sync_locks`"
    ) == [(0,)]


def test_the_webhook_receivers_runs_are_kept_on_bigquery(
    bigquery_emulator: BigQueryEmulator, bigquery_dataset: str, tmp_path: Path
) -> None:
    folder = project_dir(
        tmp_path,
        f"""
method: oauth-secrets
token: {TOKEN}
project: {bigquery_emulator.project}
dataset: {bigquery_dataset}
location: US
api_endpoint: {bigquery_emulator.endpoint}
""",
    )
    config = WebhookConfig(
        secret=Secret("s"),
        api_token=Secret("t"),
        project_dir=folder,
        profiles_dir=folder,
        environ={},
    )
    ledger = RunLedger(config)
    ledger.open()
    run = CloudRun(account_id="1", job_id="10", run_id="100", status="Success")
    # Typed inserts: a null finished_at and error are a TIMESTAMP and a STRING.
    assert ledger.claim(run).duplicate == ""
    assert ledger.claim(run).duplicate == "is in progress (queued or syncing)"
    ledger.attempted(run, 2)
    assert ledger.queued() == [(run, 2)]
    ledger.finish(run, "given_up", 2, None)
    assert ledger.claim(run).duplicate == ""
    ledger.finish(run, "synced", 1, None)
    assert ledger.claim(run).duplicate == "was already synced"
    assert ledger.queued() == []


class TokenServer:
    """An OAuth token endpoint on 127.0.0.1: answers a service account's signed JWT grant
    with an access token, or refuses every one."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.grants: list[dict[str, list[str]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def __enter__(self) -> TokenServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                owner.grants.append(parse_qs(self.rfile.read(length).decode()))
                body: dict[str, Any]
                if owner.refuse:
                    status, body = 400, {"error": "invalid_grant", "error_description": "no"}
                else:
                    status = 200
                    body = {
                        "access_token": ACCESS_TOKEN,
                        "expires_in": 3600,
                        "token_type": "Bearer",
                    }
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def private_key() -> Iterator[str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    yield key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def service_account_profile(
    emulator: BigQueryEmulator, dataset: str, key: str, token_uri: str
) -> str:
    pem = key.replace("\n", "\\n")
    return f"""
method: service-account-json
project: {emulator.project}
dataset: {dataset}
location: US
api_endpoint: {emulator.endpoint}
keyfile_json:
  type: service_account
  project_id: {emulator.project}
  private_key_id: "0123456789abcdef0123456789abcdef01234567"
  private_key: "{pem}"
  client_email: moengage-sync@{emulator.project}.iam.gserviceaccount.com
  client_id: "1234567890"
  token_uri: {token_uri}
"""


def test_a_service_account_signs_its_token_request(
    bigquery_emulator: BigQueryEmulator, bigquery_dataset: str, tmp_path: Path, private_key: str
) -> None:
    with TokenServer() as tokens:
        profile = service_account_profile(
            bigquery_emulator, bigquery_dataset, private_key, tokens.url
        )
        with open_engine(project_dir(tmp_path, profile)) as engine:
            StateStore(engine).prepare(create=True)
    # dbt-bigquery's client asked for a token with a JWT the key signed (a real grant).
    assert tokens.grants
    grant = tokens.grants[0]
    assert grant["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    assert grant["assertion"][0].count(".") == 2


def test_a_refused_grant_names_the_settings_and_shows_no_secret(
    bigquery_emulator: BigQueryEmulator,
    bigquery_dataset: str,
    tmp_path: Path,
    private_key: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with TokenServer(refuse=True) as tokens:
        profile = service_account_profile(
            bigquery_emulator, bigquery_dataset, private_key, tokens.url
        )
        folder = project_dir(tmp_path, profile)
        with pytest.raises((ProfileError, WarehouseError)) as caught, open_engine(folder) as engine:
            StateStore(engine).prepare(create=True)
    message = str(caught.value)
    assert "invalid_grant" in message
    shown = message + "".join(capsys.readouterr())
    body = "".join(private_key.splitlines()[1:-1])
    for line in private_key.splitlines()[1:-1]:
        assert line not in shown
    assert body[:40] not in shown
    assert "0123456789abcdef0123456789abcdef01234567" not in shown

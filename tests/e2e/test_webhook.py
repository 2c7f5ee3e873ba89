"""The dbt Cloud webhook receiver: the real uvicorn server on 127.0.0.1, a stand-in dbt Cloud
API (http.server, a test double), and end to end with the emulator and DuckDB."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import duckdb
import pytest
import requests
from click.testing import CliRunner

from dbt_moengage import retry
from dbt_moengage.errors import ArtifactError, SettingsError, WarehouseError
from dbt_moengage.integrations.dbt_cloud import (
    CloudRun,
    RunOutcome,
    WebhookConfig,
    WebhookReceiver,
    artifact_url,
    check_cloud_host,
    fetch_artifacts,
    serve_webhook,
)
from dbt_moengage.pipeline import SyncOptions, run_sync
from dbt_moengage.report import RunReport
from dbt_moengage.report.progress import Progress
from dbt_moengage.settings import Secret
from dbt_moengage.testing.emulator import Emulator, Faults

from ..conftest import API_KEY, COHORTS, BuiltProject, sync_env
from ..http_receiver import serving

ACCOUNT = "70403"
JOB = "123"
OTHER_JOB = "456"
WEBHOOK_SECRET = "whsec-e2e-3c1f0a9d-do-not-print"
CLOUD_TOKEN = "dbtc_e2e_5b7d9e1f-do-not-print"
SECRETS = (WEBHOOK_SECRET, CLOUD_TOKEN, API_KEY)
WORKER = "dbt_moengage.integrations.dbt_cloud.worker"


@dataclass
class ArtifactRequest:
    """One request the stand-in saw."""

    path: str
    authorized: bool
    status: int


class CloudApi:
    """dbt Cloud's Administrative API v2 artifacts endpoint, serving folders per run id.

    `failure` makes every authorized request answer that status; `script` answers the next
    requests with (status, headers) in turn, before anything else; with `hold` set to an event,
    each request sets `held` and waits for `hold` before it is answered.
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self.runs: dict[str, Path] = {}
        self.requests: list[ArtifactRequest] = []
        self.failure: int | None = None
        self.script: deque[tuple[int, dict[str, str]]] = deque()
        self.hold: threading.Event | None = None
        self.held = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _CloudHandler)
        cast(Any, self._server).api = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL, standing in for https://cloud.getdbt.com."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, path: str, authorization: str) -> tuple[int, dict[str, str], bytes]:
        """The status, extra headers and body for GET `path`."""
        hold = self.hold
        if hold is not None:
            self.held.set()
            hold.wait(60)
        authorized = hmac.compare_digest(authorization, f"Token {self.token}")
        status, body = 404, b'{"status": {"code": 404}}'
        headers: dict[str, str] = {}
        parts = path.strip("/").split("/")
        with self._lock:
            scripted = self.script.popleft() if self.script else None
        if scripted is not None:
            status, headers = scripted
            body = b'{"status": {"code": %d}}' % status
        elif not authorized:
            status, body = 401, b'{"status": {"code": 401}}'
        elif self.failure is not None:
            status, body = self.failure, b'{"status": {"code": %d}}' % self.failure
        elif (
            len(parts) == 8
            and parts[:3] == ["api", "v2", "accounts"]
            and parts[3] == ACCOUNT
            and parts[4] == "runs"
            and parts[6] == "artifacts"
            and parts[5] in self.runs
            and parts[7] in ("manifest.json", "run_results.json")
        ):
            status, body = 200, (self.runs[parts[5]] / parts[7]).read_bytes()
        with self._lock:
            self.requests.append(ArtifactRequest(path, authorized, status))
        return status, headers, body

    def __enter__(self) -> CloudApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _CloudHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        api = cast(CloudApi, cast(Any, self.server).api)
        path = self.path.split("?")[0]
        status, headers, body = api.answer(path, self.headers.get("Authorization", ""))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def cloud() -> Iterator[CloudApi]:
    """The stand-in dbt Cloud API on 127.0.0.1."""
    with CloudApi(CLOUD_TOKEN) as api:
        yield api


def publish_run(cloud: CloudApi, project: BuiltProject, run_id: str, tmp_path: Path) -> Path:
    """Serve the project's manifest and run results as dbt Cloud run `run_id`; return the folder."""
    folder = tmp_path / f"cloud-run-{run_id}"
    folder.mkdir()
    for name in ("manifest.json", "run_results.json"):
        shutil.copy(project.target_dir / name, folder / name)
    cloud.runs[run_id] = folder
    return folder


def fail_model(folder: Path, unique_id: str) -> None:
    """Mark the model as errored in the published run_results.json."""
    path = folder / "run_results.json"
    run_results = json.loads(path.read_text())
    found = [r for r in run_results["results"] if r["unique_id"] == unique_id]
    assert found, f"{unique_id} is not in run_results.json"
    for result in found:
        result["status"] = "error"
        result["message"] = "Runtime Error: division by zero"
    path.write_text(json.dumps(run_results))


def make_receiver(
    project: BuiltProject,
    emulator: Emulator,
    cloud: CloudApi,
    tmp_path: Path,
    env: dict[str, str] | None = None,
    **extra: Any,
) -> WebhookReceiver:
    """A receiver for integration_tests, syncing to the emulator, reading from the stand-in;
    its runs are kept in the project's DuckDB database, beside the sync state."""
    environ = sync_env(project, emulator, **(env or {}))
    # The artifacts come from the stand-in, never from the project's own target folder.
    environ.pop("DBT_TARGET_PATH", None)
    settings: dict[str, Any] = {
        "fetch_attempts": 2,
        "fetch_backoff": 0.05,
        "run_attempts": 2,
        "run_backoff": 0.05,
        **extra,
    }
    config = WebhookConfig(
        secret=Secret(WEBHOOK_SECRET),
        api_token=Secret(CLOUD_TOKEN),
        project_dir=project.project_dir,
        profiles_dir=project.project_dir,
        cloud_host=cloud.url,
        work_dir=tmp_path / "webhook-work",
        environ={
            **environ,
            "DBT_CLOUD_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "DBT_CLOUD_API_TOKEN": CLOUD_TOKEN,
        },
        **settings,
    )
    return WebhookReceiver(config)


def stamp(age: float = 0.0) -> str:
    """A timestamp as dbt Cloud writes it (UTC, nanoseconds), `age` seconds ago."""
    when = datetime.now(UTC) - timedelta(seconds=age)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "936Z"


def webhook_runs(database: Path) -> dict[str, tuple[str, int, str | None]]:
    """run_id -> (status, attempts, error) of moengage_webhook_runs in a DuckDB file."""
    with duckdb.connect(str(database), read_only=True) as conn:
        rows = conn.execute(
            "select run_id, status, attempts, error from main.moengage_webhook_runs"
        ).fetchall()
    return {run_id: (status, attempts, error) for run_id, status, attempts, error in rows}


def event(run_id: str, job_id: str = JOB, status: str = "Success", **changes: Any) -> bytes:
    """A job.run.completed payload as dbt Cloud documents it, made now."""
    payload: dict[str, Any] = {
        "accountId": int(ACCOUNT),
        "webhookId": "wsu_e2e",
        "eventId": f"wev_{run_id}",
        "timestamp": stamp(),
        "eventType": "job.run.completed",
        "webhookName": "moengage",
        "data": {
            "jobId": job_id,
            "jobName": "Daily build",
            "runId": run_id,
            "environmentId": "1234",
            "environmentName": "Production",
            "dbtVersion": "1.10.0",
            "projectName": "analytics",
            "projectId": "167194",
            "runStatus": status,
            "runStatusCode": 10 if status == "Success" else 20,
            "runStatusMessage": "None",
            "runReason": "scheduled",
            "runStartedAt": "2026-01-31T19:28:07Z",
            "runFinishedAt": "2026-01-31T19:29:32Z",
        },
    }
    payload.update(changes)
    return json.dumps(payload).encode("utf-8")


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    """dbt Cloud's Authorization header: hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def post(receiver: WebhookReceiver, body: bytes, signature: str) -> requests.Response:
    """Deliver an event over HTTP, as dbt Cloud does."""
    return requests.post(
        receiver.url + "/dbt-cloud",
        data=body,
        headers={"Authorization": signature, "Content-Type": "application/json"},
        timeout=5,
    )


def cohort_statuses(receiver: WebhookReceiver) -> dict[str, str]:
    """Status by model in the last synced run's report."""
    report = receiver.last_reports[-1].report
    assert report is not None, receiver.last_reports[-1].error
    return {r.model: r.status for r in report.results}


def test_signed_completed_run_syncs_every_cohort(
    project: BuiltProject,
    emulator: Emulator,
    cloud: CloudApi,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    publish_run(cloud, project, "9001", tmp_path)
    with make_receiver(project, emulator, cloud, tmp_path) as receiver:
        assert requests.get(receiver.url + "/healthz", timeout=5).status_code == 200
        body = event("9001")
        answer = post(receiver, body, sign(body))
        assert answer.status_code == 200
        assert answer.json()["status"] == "queued"
        assert receiver.wait_idle(300)

        for cohort_id in COHORTS:
            assert emulator.members(cohort_id) == project.expected_members(cohort_id), cohort_id
        outcome = receiver.last_reports[-1]
        assert outcome.exit_code == 0, outcome
        assert set(cohort_statuses(receiver).values()) == {"synced"}
        assert outcome.folder is not None
        written = json.loads((outcome.folder / "moengage_sync_results.json").read_text())
        assert written["exit_code"] == 0

        # Both artifacts of run 9001 were fetched with the token, from the documented paths.
        paths = sorted(r.path for r in cloud.requests)
        base = f"/api/v2/accounts/{ACCOUNT}/runs/9001/artifacts/"
        assert paths == [base + "manifest.json", base + "run_results.json"]
        assert all(r.authorized for r in cloud.requests)

        # dbt Cloud re-delivering the same event does not sync twice.
        again = post(receiver, body, sign(body))
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
        assert receiver.wait_idle(10)
        assert len(receiver.last_reports) == 1

    logged = caplog.text
    assert "dbt Cloud run 9001 (job 123, Success): 4 synced; exit 0" in logged
    for secret in SECRETS:
        assert secret not in logged
        assert secret not in answer.text
        assert secret not in json.dumps(written)


def test_bad_signature_is_refused_and_nothing_happens(
    project: BuiltProject,
    emulator: Emulator,
    cloud: CloudApi,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    publish_run(cloud, project, "9002", tmp_path)
    with make_receiver(project, emulator, cloud, tmp_path) as receiver:
        body = event("9002")
        forged = [
            sign(body, "not-the-secret"),
            sign(body + b" "),  # signed, then the body was changed
            "",
            "Token " + sign(body),
            "é" * 64,
        ]
        for signature in forged:
            answer = post(receiver, body, signature)
            assert answer.status_code == 401, signature
            assert receiver.handle_event(body, signature) == 401
        assert receiver.wait_idle(10)
        assert list(receiver.last_reports) == []
    assert cloud.requests == []
    assert emulator.requests() == []
    for secret in SECRETS:
        assert secret not in caplog.text


def test_other_events_and_jobs_are_ignored(
    project: BuiltProject, emulator: Emulator, cloud: CloudApi, tmp_path: Path
) -> None:
    publish_run(cloud, project, "9003", tmp_path)
    with make_receiver(
        project, emulator, cloud, tmp_path, job_ids=frozenset({JOB}), account_id=ACCOUNT
    ) as receiver:
        ignored = [
            event("9003", job_id=OTHER_JOB),
            event("9003", eventType="job.run.started"),
            event("9003", eventType="job.run.errored", status="Errored"),
            event("9003", accountId=99999),
        ]
        for body in ignored:
            answer = post(receiver, body, sign(body))
            assert answer.status_code == 200
            assert answer.json()["status"] == "ignored", body
        bad = b"not json"
        assert post(receiver, bad, sign(bad)).status_code == 400
        no_run = event("9003", data={"jobId": JOB})
        assert post(receiver, no_run, sign(no_run)).status_code == 400
        assert receiver.wait_idle(10)
        assert list(receiver.last_reports) == []
    assert cloud.requests == []
    assert emulator.requests() == []


def test_errored_run_syncs_only_the_models_that_built(
    project: BuiltProject,
    emulator: Emulator,
    cloud: CloudApi,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    folder = publish_run(cloud, project, "9004", tmp_path)
    fail_model(folder, "model.moengage_integration_tests.high_value_users")

    with make_receiver(project, emulator, cloud, tmp_path) as receiver:
        body = event("9004", status="Errored")
        assert post(receiver, body, sign(body)).status_code == 200
        assert receiver.wait_idle(300)
        statuses = cohort_statuses(receiver)
        outcome = receiver.last_reports[-1]

    assert statuses["high_value_users"] == "skipped"
    assert emulator.members("high_value_users") == set()
    report = outcome.report
    assert report is not None
    skipped = next(r for r in report.results if r.model == "high_value_users")
    assert "dbt status: error" in str(skipped.error)
    assert "skipped high_value_users: not synced" in caplog.text
    for cohort_id in set(COHORTS) - {"high_value_users"}:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id), cohort_id
    assert outcome.exit_code == 1


def test_wrong_api_token_is_reported_without_the_token(
    project: BuiltProject,
    emulator: Emulator,
    cloud: CloudApi,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    publish_run(cloud, project, "9005", tmp_path)
    cloud.token = "dbtc_the_right_token"
    with make_receiver(project, emulator, cloud, tmp_path) as receiver:
        body = event("9005")
        assert post(receiver, body, sign(body)).status_code == 200
        assert receiver.wait_idle(60)
        outcome = receiver.last_reports[-1]
    assert outcome.report is None
    assert "HTTP 401" in str(outcome.error) and "DBT_CLOUD_API_TOKEN" in str(outcome.error)
    assert [r.status for r in cloud.requests] == [401]  # no retry of a refused token
    assert emulator.requests() == []
    assert "9005" in caplog.text and "not synced" in caplog.text
    for secret in SECRETS:
        assert secret not in caplog.text
        assert secret not in str(outcome.error)


def test_missing_artifact_is_retried_then_reported(
    project: BuiltProject, emulator: Emulator, cloud: CloudApi, tmp_path: Path
) -> None:
    with make_receiver(project, emulator, cloud, tmp_path) as receiver:
        body = event("9006")  # the stand-in has no run 9006
        assert post(receiver, body, sign(body)).status_code == 200
        assert receiver.wait_idle(60)
        outcome = receiver.last_reports[-1]
    assert outcome.exit_code == 2
    assert "HTTP 404" in str(outcome.error)
    # fetch_attempts=2 requests per fetch, run_attempts=2 fetches: then given up.
    assert [r.status for r in cloud.requests] == [404] * 4
    assert outcome.attempts == 2
    assert emulator.requests() == []
    assert webhook_runs(project.database)["9006"][:2] == ("given_up", 2)


def test_runs_are_synced_one_at_a_time_in_order(
    project: BuiltProject, emulator: Emulator, cloud: CloudApi, tmp_path: Path
) -> None:
    for run_id in ("9101", "9102", "9103"):
        publish_run(cloud, project, run_id, tmp_path)
    with make_receiver(project, emulator, cloud, tmp_path) as receiver:
        for run_id in ("9101", "9102", "9103"):
            body = event(run_id)
            assert post(receiver, body, sign(body)).status_code == 200
        assert receiver.wait_idle(300)
        outcomes = list(receiver.last_reports)
    assert [o.run.run_id for o in outcomes] == ["9101", "9102", "9103"]
    assert [o.exit_code for o in outcomes] == [0, 0, 0]
    first, *rest = outcomes
    assert first.report is not None
    assert sum(r.added for r in first.report.results) > 0
    # Later runs of the same build send nothing new: the state says MoEngage has it all.
    for later in rest:
        assert later.report is not None
        assert sum(r.added for r in later.report.results) == 0
    for cohort_id in COHORTS:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id)


@pytest.mark.parametrize(
    "failure", ["token refused", "server error", "broken manifest", "sync crashed"]
)
def test_run_not_synced_is_synced_when_delivered_again(
    project: BuiltProject,
    emulator: Emulator,
    cloud: CloudApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:
    folder = publish_run(cloud, project, "9301", tmp_path)
    manifest = (folder / "manifest.json").read_bytes()
    crashed: list[SyncOptions] = []
    if failure == "token refused":
        cloud.token = "dbtc_the_right_token"
    elif failure == "server error":
        cloud.failure = 500
    elif failure == "broken manifest":
        (folder / "manifest.json").write_bytes(manifest[:100])
    else:

        def crash_once(options: SyncOptions, progress: Progress | None = None) -> RunReport:
            if not crashed:
                crashed.append(options)
                raise RuntimeError("the sync crashed")
            return run_sync(options, progress)

        monkeypatch.setattr(f"{WORKER}.run_sync", crash_once)

    with make_receiver(project, emulator, cloud, tmp_path) as receiver:
        body = event("9301")
        assert post(receiver, body, sign(body)).json()["status"] == "queued"
        assert receiver.wait_idle(300)
        first = receiver.last_reports[-1]
        assert first.report is None and first.exit_code == 2, first
        assert emulator.requests() == []

        # dbt Cloud is put right, then redelivers the event: the run is synced this time.
        cloud.token, cloud.failure = CLOUD_TOKEN, None
        (folder / "manifest.json").write_bytes(manifest)
        again = post(receiver, body, sign(body))
        assert again.status_code == 200
        assert again.json() == {"status": "queued", "detail": "run 9301 queued"}
        assert receiver.wait_idle(300)
        outcomes = list(receiver.last_reports)

    assert [o.run.run_id for o in outcomes] == ["9301", "9301"]
    assert outcomes[-1].exit_code == 0, outcomes[-1]
    assert [r.status for r in cloud.requests][-2:] == [200, 200]
    assert len(crashed) == (failure == "sync crashed")
    for cohort_id in COHORTS:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id), cohort_id


def test_redelivery_while_queued_or_syncing_is_a_duplicate(
    project: BuiltProject, emulator: Emulator, cloud: CloudApi, tmp_path: Path
) -> None:
    for run_id in ("9401", "9402"):
        publish_run(cloud, project, run_id, tmp_path)
    hold = cloud.hold = threading.Event()
    with make_receiver(project, emulator, cloud, tmp_path) as receiver:
        # Released before the receiver stops, whatever happens: stop() waits for the sync.
        try:
            syncing, queued = event("9401"), event("9402")
            assert post(receiver, syncing, sign(syncing)).json()["status"] == "queued"
            # The worker is fetching 9401's artifacts, so 9402 waits in the queue behind it.
            assert cloud.held.wait(60)
            assert post(receiver, queued, sign(queued)).json()["status"] == "queued"
            for run_id, body in (("9401", syncing), ("9402", queued)):
                answer = post(receiver, body, sign(body))
                assert answer.status_code == 200
                assert answer.json()["status"] == "duplicate", run_id
                assert answer.json()["detail"] == f"run {run_id} is in progress (queued or syncing)"
        finally:
            hold.set()
        assert receiver.wait_idle(300)
        outcomes = list(receiver.last_reports)

    assert [o.run.run_id for o in outcomes] == ["9401", "9402"]
    assert [o.exit_code for o in outcomes] == [0, 0]
    # Each artifact of each run was fetched once: the redeliveries queued nothing.
    assert sorted(r.path.split("/")[6] for r in cloud.requests) == ["9401"] * 2 + ["9402"] * 2
    for cohort_id in COHORTS:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id), cohort_id


@pytest.mark.parametrize("model_failed", [False, True], ids=["all synced", "one skipped"])
def test_redelivery_after_a_finished_sync_is_a_duplicate(
    project: BuiltProject, emulator: Emulator, cloud: CloudApi, tmp_path: Path, model_failed: bool
) -> None:
    folder = publish_run(cloud, project, "9501", tmp_path)
    if model_failed:
        fail_model(folder, "model.moengage_integration_tests.high_value_users")
    with make_receiver(project, emulator, cloud, tmp_path) as receiver:
        body = event("9501")
        assert post(receiver, body, sign(body)).json()["status"] == "queued"
        assert receiver.wait_idle(300)
        sent = len(emulator.requests())
        assert sent > 0

        again = post(receiver, body, sign(body))
        assert again.status_code == 200
        assert again.json() == {"status": "duplicate", "detail": "run 9501 was already synced"}
        assert receiver.wait_idle(10)
        outcomes = list(receiver.last_reports)

    # Whatever the cohorts' statuses, a sync that ended with a report is not repeated.
    assert len(outcomes) == 1
    assert outcomes[0].exit_code == (1 if model_failed else 0)
    assert len(cloud.requests) == 2
    assert len(emulator.requests()) == sent


def test_run_accepted_then_stopped_is_synced_after_restart(
    project: BuiltProject,
    emulator: Emulator,
    cloud: CloudApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    publish_run(cloud, project, "9602", tmp_path)
    # The first receiver's worker is busy with 9601 (its sync held) when 9602 comes in.
    busy = CountingSync()
    busy.release.clear()
    first = make_receiver(project, emulator, cloud, tmp_path)
    monkeypatch.setattr(first.worker, "sync_run", busy)
    first.start()
    stopper = threading.Thread(target=first.stop)
    try:
        syncing, queued = event("9601"), event("9602")
        assert post(first, syncing, sign(syncing)).json()["status"] == "queued"
        assert wait_for(lambda: busy.runs == ["9601"], 30)
        answer = post(first, queued, sign(queued))
        assert answer.json() == {"status": "queued", "detail": "run 9602 queued"}
        # The receiver is stopped (a deploy, SIGTERM) while 9601 syncs and 9602 waits.
        stopper.start()
        assert wait_for(first.worker.stopping.is_set, 10)
    finally:
        busy.release.set()
        if stopper.is_alive():
            stopper.join(120)
        else:
            first.stop()
    # The sync in progress finished; 9602 was answered `queued` and stays queued.
    assert busy.runs == ["9601"]
    assert webhook_runs(project.database) == {
        "9601": ("synced", 0, None),
        "9602": ("queued", 0, None),
    }
    assert "dbt Cloud run 9602 not synced yet: the receiver is stopping" in caplog.text
    assert cloud.requests == [] and emulator.requests() == []

    with make_receiver(project, emulator, cloud, tmp_path) as second:
        assert second.wait_idle(300)
        outcomes = list(second.last_reports)
        # A delivery of either run now is a duplicate: the warehouse says both synced.
        for body in (syncing, queued):
            assert post(second, body, sign(body)).json()["status"] == "duplicate"
        assert second.wait_idle(10)

    assert "resuming 1 dbt Cloud run(s) accepted before: 9602" in caplog.text
    assert [(o.run.run_id, o.exit_code) for o in outcomes] == [("9602", 0)]
    assert len(second.last_reports) == 1
    assert sorted(r.path.split("/")[6] for r in cloud.requests) == ["9602"] * 2
    assert webhook_runs(project.database)["9602"] == ("synced", 1, None)
    for cohort_id in COHORTS:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id), cohort_id


def test_artifact_fetch_failing_twice_is_tried_again_and_synced(
    project: BuiltProject,
    emulator: Emulator,
    cloud: CloudApi,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    publish_run(cloud, project, "9701", tmp_path)
    # dbt Cloud fails the first two fetches (each one request: fetch_attempts=1).
    cloud.script.extend([(503, {}), (502, {})])
    with make_receiver(
        project, emulator, cloud, tmp_path, fetch_attempts=1, run_attempts=3
    ) as receiver:
        body = event("9701")
        assert post(receiver, body, sign(body)).json()["status"] == "queued"
        assert receiver.wait_idle(300)
        outcome = receiver.last_reports[-1]

    assert outcome.exit_code == 0 and outcome.status == "synced", outcome
    assert outcome.attempts == 3
    assert [r.status for r in cloud.requests] == [503, 502, 200, 200]
    assert webhook_runs(project.database)["9701"] == ("synced", 3, None)
    assert "dbt Cloud run 9701: artifacts not fetched" in caplog.text
    assert "trying again in" in caplog.text
    for cohort_id in COHORTS:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id), cohort_id


def test_run_given_up_is_recorded_and_notified(
    project: BuiltProject,
    emulator: Emulator,
    cloud: CloudApi,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    posts: list[tuple[str, Any]] = []

    def answer(path: str, body: Any) -> tuple[int, bytes]:
        posts.append((path, body))
        return 200, b"ok"

    cloud.failure = 503  # dbt Cloud stays down past every attempt
    with serving(answer) as port:
        hook = f"http://127.0.0.1:{port}/hooks/given-up-secret"
        with make_receiver(
            project, emulator, cloud, tmp_path, env={"MOENGAGE_NOTIFY_URL": hook}
        ) as receiver:
            body = event("9801")
            assert post(receiver, body, sign(body)).json()["status"] == "queued"
            assert receiver.wait_idle(120)
            outcome = receiver.last_reports[-1]

    assert outcome.status == "given_up" and outcome.exit_code == 2
    assert outcome.attempts == 2
    assert [r.status for r in cloud.requests] == [503] * 4
    assert emulator.requests() == []
    status, attempts, error = webhook_runs(project.database)["9801"]
    assert (status, attempts) == ("given_up", 2)
    assert "HTTP 503" in str(error)

    assert len(posts) == 1
    path, message = posts[0]
    assert path == "/hooks/given-up-secret"
    assert message["event"] == "webhook_run_given_up"
    assert message["source"] == "dbt-moengage"
    fields = message["dbt_cloud_run"]
    assert (fields["account_id"], fields["job_id"], fields["run_id"]) == (ACCOUNT, JOB, "9801")
    assert fields["attempts"] == 2 and "HTTP 503" in fields["error"]
    assert "dbt Cloud run 9801 (job 123, Success) not synced, given up" in message["text"]
    assert "what to do" in message["text"]
    for secret in SECRETS:
        assert secret not in json.dumps(message)
        assert secret not in caplog.text
    assert "given-up-secret" not in caplog.text
    assert "dbt Cloud run 9801 (job 123, Success): not synced, given up" in caplog.text


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def receiver_process(
    project: BuiltProject, emulator: Emulator, cloud: CloudApi, tmp_path: Path, **extra: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`dbt-moengage serve-webhook` in a process of its own, healthy; its process, URL and
    log. Ended by SIGTERM if still running at the block's end; one that does not exit is
    made to print where each thread is (SIGABRT) into the failure."""
    port = free_port()
    env = {
        **sync_env(project, emulator),
        "DBT_CLOUD_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "DBT_CLOUD_API_TOKEN": CLOUD_TOKEN,
        "DBT_CLOUD_HOST": cloud.url,
        "DBT_CLOUD_ACCOUNT_ID": ACCOUNT,
        "PYTHONFAULTHANDLER": "1",
        **extra,
    }
    env.pop("DBT_TARGET_PATH")
    command = [sys.executable, "-m", "dbt_moengage", "serve-webhook"]
    args = ["--port", str(port), "--project-dir", str(project.project_dir)]
    args += ["--profiles-dir", str(project.project_dir), "--job-id", JOB]
    args += ["--work-dir", str(tmp_path / "work")]
    log_file = tmp_path / "serve-webhook.log"
    with log_file.open("w") as log_out:
        server = subprocess.Popen(
            [*command, *args], env=env, stdout=log_out, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        # Until the state in the warehouse is open, the bound port accepts and waits.
        try:
            return requests.get(url + "/healthz", timeout=1).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            return False

    try:
        assert wait_for(healthy, 60), log_file.read_text()
        yield server, url, log_file
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.send_signal(signal.SIGABRT)
            server.wait(timeout=30)
            raise AssertionError("no exit 60 s after SIGTERM\n" + log_file.read_text()) from None


def test_serve_webhook_command_end_to_end(
    project: BuiltProject, emulator: Emulator, cloud: CloudApi, tmp_path: Path
) -> None:
    publish_run(cloud, project, "9201", tmp_path)
    with receiver_process(project, emulator, cloud, tmp_path) as (server, url, log_file):
        body = event("9201")
        answer = requests.post(url, data=body, headers={"Authorization": sign(body)}, timeout=5)
        assert answer.status_code == 200 and answer.json()["status"] == "queued"
        forged = requests.post(url, data=body, headers={"Authorization": "0" * 64}, timeout=5)
        assert forged.status_code == 401
        assert wait_for(lambda: "exit 0; report" in log_file.read_text(), 300), log_file.read_text()
    log = log_file.read_text()
    assert server.returncode == 0, log
    assert "dbt Cloud run 9201 (job 123, Success): 4 synced; exit 0" in log
    for cohort_id in COHORTS:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id), cohort_id
    for secret in SECRETS:
        assert secret not in log
    reports = list((tmp_path / "work").glob("run-9201-*/moengage_sync_results.json"))
    assert len(reports) == 1


# Small bodies, one at a time, each answered in 0.3 s: a sync of about 10 s to stop.
SLOW_SYNC = {"MOENGAGE_MAX_BODY_BYTES": "2000", "MOENGAGE_MAX_IN_FLIGHT": "1"}


@pytest.mark.parametrize("signals", [1, 2], ids=["once", "twice"])
def test_serve_webhook_signalled_mid_sync(
    project: BuiltProject, emulator: Emulator, cloud: CloudApi, tmp_path: Path, signals: int
) -> None:
    """SIGTERM while a run syncs: the receiver takes no more events, the sync finishes, and
    it exits 0. Sent again 1.5 s later (sooner is the first sent twice, as `timeout` does),
    it exits at once (143), and the run stays queued for the next start."""
    emulator.set_faults(Faults(slow_rate=1.0, slow_seconds=0.3))
    publish_run(cloud, project, "9301", tmp_path)
    with receiver_process(project, emulator, cloud, tmp_path, **SLOW_SYNC) as (
        server,
        url,
        log_file,
    ):
        body = event("9301")
        answer = requests.post(url, data=body, headers={"Authorization": sign(body)}, timeout=5)
        assert answer.status_code == 200
        assert wait_for(lambda: len(emulator.requests()) >= 1, 120), log_file.read_text()
        server.send_signal(signal.SIGTERM)
        if signals == 2:
            time.sleep(1.5)
            server.send_signal(signal.SIGTERM)
        returncode = server.wait(timeout=120)
    log = log_file.read_text()
    assert "SIGTERM: stopping the receiver" in log
    if signals == 1:
        assert returncode == 0, log
        assert "dbt Cloud run 9301 (job 123, Success): 4 synced; exit 0" in log
        for cohort_id in COHORTS:
            assert emulator.members(cohort_id) == project.expected_members(cohort_id)
        assert webhook_runs(project.database)["9301"][0] == "synced"
    else:
        assert returncode == 128 + signal.SIGTERM, log
        assert "interrupted again: exiting now" in log and "exit 0; report" not in log
        assert webhook_runs(project.database)["9301"][0] == "queued"


# -- no dbt needed ---------------------------------------------------------------------------


def test_cloud_host_must_be_https_except_loopback() -> None:
    check_cloud_host("https://cloud.getdbt.com")
    check_cloud_host("https://ab123.us1.dbt.com")
    check_cloud_host("http://127.0.0.1:8000")
    check_cloud_host("http://localhost:8000")
    for bad in ("http://cloud.getdbt.com", "ftp://x", "https://user:pw@cloud.getdbt.com", "x"):
        with pytest.raises(SettingsError) as info:
            check_cloud_host(bad)
        assert "DBT_CLOUD_HOST" in str(info.value)
        assert "pw" not in str(info.value)


def test_artifact_urls_follow_the_admin_api(tmp_path: Path) -> None:
    config = WebhookConfig(
        secret=Secret("s"),
        api_token=Secret("t"),
        project_dir=tmp_path,
        cloud_host="https://ab123.us1.dbt.com/",
    )
    run = CloudRun(account_id="1", job_id="2", run_id="3", status="Success")
    assert artifact_url(config, run, "manifest.json") == (
        "https://ab123.us1.dbt.com/api/v2/accounts/1/runs/3/artifacts/manifest.json"
    )


def test_command_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"DBT_CLOUD_WEBHOOK_SECRET": "", "DBT_CLOUD_API_TOKEN": ""}
    done = runner.invoke(serve_webhook, ["--project-dir", str(tmp_path)], env=env)
    assert done.exit_code == 2
    assert "DBT_CLOUD_WEBHOOK_SECRET" in done.output
    env = {
        "DBT_CLOUD_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "DBT_CLOUD_API_TOKEN": CLOUD_TOKEN,
        "DBT_CLOUD_HOST": "http://cloud.getdbt.com",
    }
    done = runner.invoke(serve_webhook, ["--project-dir", str(tmp_path)], env=env)
    assert done.exit_code == 2
    assert "https" in done.output
    for secret in (WEBHOOK_SECRET, CLOUD_TOKEN):
        assert secret not in done.output


def bare_project(tmp_path: Path) -> Path:
    """A dbt project with no model, whose profile is a DuckDB file (made here): where a bare
    receiver keeps the runs it accepted. The same folder is the same warehouse."""
    folder = tmp_path / "bare-project"
    if not folder.exists():
        folder.mkdir()
        (folder / "dbt_project.yml").write_text(
            'name: bare\nversion: "1.0"\nconfig-version: 2\nprofile: bare\n'
        )
        database = folder / "bare.duckdb"
        (folder / "profiles.yml").write_text(
            "bare:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
            f"      path: {json.dumps(str(database))}\n      schema: main\n"
        )
        duckdb.connect(str(database)).close()
    return folder


def bare_receiver(
    tmp_path: Path, environ: dict[str, str] | None = None, **extra: Any
) -> WebhookReceiver:
    """A receiver whose sync is replaced by the test; it never reaches a dbt Cloud API. Its
    runs are kept in bare_project's DuckDB file."""
    folder = bare_project(tmp_path)
    config = WebhookConfig(
        secret=Secret(WEBHOOK_SECRET),
        api_token=Secret(CLOUD_TOKEN),
        project_dir=folder,
        profiles_dir=folder,
        cloud_host="http://127.0.0.1:9",
        work_dir=tmp_path / "work",
        environ=environ or {},
        **extra,
    )
    return WebhookReceiver(config)


def deliver(receiver: WebhookReceiver, run_id: str) -> str:
    """Deliver run `run_id`'s event without HTTP, wait for its sync; return the answer's status."""
    body = event(run_id)
    decision = receiver.decide(body, sign(body))
    assert receiver.wait_idle(30)
    return decision.outcome


def test_report_not_written_still_counts_as_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_artifacts(config: WebhookConfig, run: CloudRun, folder: Path, **kwargs: Any) -> None:
        pass

    def sync(options: SyncOptions, progress: Progress | None = None) -> RunReport:
        return RunReport(run_id="r", started_at="", dry_run=False)

    def disk_full(self: RunReport, target_dir: Path) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(f"{WORKER}.fetch_artifacts", no_artifacts)
    monkeypatch.setattr(f"{WORKER}.run_sync", sync)
    monkeypatch.setattr(RunReport, "write", disk_full)
    with bare_receiver(tmp_path) as receiver:
        assert deliver(receiver, "7") == "queued"
        assert deliver(receiver, "7") == "duplicate"
        outcomes = list(receiver.last_reports)
    assert len(outcomes) == 1
    assert outcomes[0].report is not None and outcomes[0].exit_code == 0
    assert "report not written" in str(outcomes[0].error)
    assert "No space left on device" in str(outcomes[0].error)


def test_config_repr_holds_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    password = "pg-e2e-7a6b5c-do-not-print"
    environ = {
        "DBT_CLOUD_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "DBT_CLOUD_API_TOKEN": CLOUD_TOKEN,
        "MOENGAGE_API_KEY": API_KEY,
        "DBT_ENV_SECRET_PASSWORD": password,
    }
    given = bare_receiver(tmp_path, environ).config
    # As `serve-webhook` builds it: the environment is the process's own.
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    default = WebhookConfig(
        secret=Secret(WEBHOOK_SECRET), api_token=Secret(CLOUD_TOKEN), project_dir=tmp_path
    )
    assert default.environ["MOENGAGE_API_KEY"] == API_KEY
    for config in (given, default):
        shown = [repr(config), str(config), f"{config}", f"{config!r}"]
        for secret in (*SECRETS, password):
            for text in shown:
                assert secret not in text
        assert "environ" not in repr(config)
        assert "Secret('***')" in repr(config)


# -- the real server, no dbt: the sync is replaced by the test -------------------------------


class CountingSync:
    """Stands in for the worker's sync_run: counts runs, and holds each until `release` is set."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.release = threading.Event()
        self.release.set()
        self._lock = threading.Lock()

    def __call__(self, run: CloudRun) -> RunOutcome:
        with self._lock:
            self.runs.append(run.run_id)
        assert self.release.wait(30)
        report = RunReport(run_id=run.run_id, started_at="", dry_run=False)
        return RunOutcome(run, None, report=report)


Served = tuple[WebhookReceiver, CountingSync]


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """A receiver served by uvicorn on 127.0.0.1, whose sync only counts."""
    counter = CountingSync()
    receiver = bare_receiver(tmp_path)
    monkeypatch.setattr(receiver.worker, "sync_run", counter)
    with receiver:
        assert receiver.url.startswith("http://127.0.0.1:")
        yield receiver, counter
        assert receiver.wait_idle(30)


def deliver_http(url: str, body: bytes, signature: str | None) -> requests.Response:
    """POST an event as dbt Cloud does; `signature` None sends no Authorization header."""
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Authorization"] = signature
    return requests.post(url + "/dbt-cloud", data=body, headers=headers, timeout=10)


def test_server_refuses_unsigned_and_forged_events_and_runs_nothing(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver, counter = served
    url = receiver.url
    body = event("31")
    for signature in (None, "", sign(body, "not-the-secret"), sign(body + b" "), "0" * 64):
        answer = deliver_http(url, body, signature)
        assert answer.status_code == 401, signature
        assert answer.json() == {"status": "unauthorized", "detail": "signature does not match"}
    assert receiver.wait_idle(10)
    assert counter.runs == []
    for secret in SECRETS:
        assert secret not in caplog.text


def test_server_runs_the_sync_once_per_run_id(served: Served) -> None:
    receiver, counter = served
    url = receiver.url
    first, second = event("41"), event("42")
    assert deliver_http(url, first, sign(first)).json() == {
        "status": "queued",
        "detail": "run 41 queued",
    }
    assert deliver_http(url, second, sign(second)).json()["status"] == "queued"
    assert receiver.wait_idle(30)
    assert counter.runs == ["41", "42"]
    # A duplicate delivery after the sync finished does not run it again.
    again = deliver_http(url, first, sign(first))
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "detail": "run 41 was already synced"}
    assert receiver.wait_idle(30)
    assert counter.runs == ["41", "42"]


def test_concurrent_redeliveries_queue_one_sync(served: Served) -> None:
    receiver, counter = served
    url = receiver.url
    counter.release.clear()  # the first sync holds until every delivery was answered
    body = event("51")
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda _: deliver_http(url, body, sign(body)), range(8)))
    finally:
        counter.release.set()
    outcomes = sorted(answer.json()["status"] for answer in answers)
    assert outcomes == ["duplicate"] * 7 + ["queued"]
    assert receiver.wait_idle(30)
    assert counter.runs == ["51"]


def test_server_answers_health_and_refuses_what_is_not_an_event(served: Served) -> None:
    receiver, counter = served
    url = receiver.url
    health = requests.get(url + "/healthz", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    # A maintained server stack does not advertise itself.
    assert "server" not in health.headers
    assert requests.get(url + "/other", timeout=10).status_code == 405
    too_large = b"x" * 1_000_001
    assert deliver_http(url, too_large, sign(too_large)).status_code == 413
    # Chunked, without a Content-Length: refused before anything is read.
    chunked = requests.post(url, data=iter([event("61")]), timeout=10)
    assert chunked.status_code == 411
    assert counter.runs == []


def test_idle_connections_neither_lock_out_deliveries_nor_stay_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = CountingSync()
    receiver = bare_receiver(tmp_path, header_timeout=5.0)
    monkeypatch.setattr(receiver.worker, "sync_run", counter)
    idle: list[socket.socket] = []
    with receiver:
        url = receiver.url
        address = url.removeprefix("http://").split(":")
        host, port = address[0], int(address[1])
        try:
            # 200 sockets that send one byte of a request, then nothing.
            for _ in range(200):
                sock = socket.create_connection((host, port), timeout=10)
                sock.sendall(b"P")
                idle.append(sock)
            # A kept-alive connection that sends half of its second request's head.
            kept = http.client.HTTPConnection(host, port, timeout=10)
            kept.request("GET", "/healthz")
            first = kept.getresponse()
            assert first.status == 200 and first.read() == b'{"status":"ok"}'
            assert kept.sock is not None
            idle.append(kept.sock)
            kept.sock.sendall(b"GET /heal")

            health = requests.get(url + "/healthz", timeout=10)
            assert health.status_code == 200
            body = event("95")
            answer = deliver_http(url, body, sign(body))
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"status": "queued", "detail": "run 95 queued"}
            assert receiver.wait_idle(30)
            assert counter.runs == ["95"]
            # They were all still open then: nothing has closed them yet.
            for sock in idle:
                sock.setblocking(False)
                with pytest.raises(BlockingIOError):
                    sock.recv(1)
            # Past the header timeout, the server closes every one of them.
            for sock in idle:
                sock.settimeout(30)
                with contextlib.suppress(ConnectionResetError):
                    assert sock.recv(1) == b""
        finally:
            for sock in idle:
                sock.close()
        assert requests.get(url + "/healthz", timeout=10).status_code == 200


def test_a_number_too_long_to_read_is_a_bad_request(served: Served) -> None:
    receiver, counter = served
    url = receiver.url
    digits = b"9" * 5000
    unreadable = [
        event("84").replace(b'"runId": "84"', b'"runId": ' + digits),
        event("84").replace(b'"webhookId": "wsu_e2e"', b'"webhookId": -' + digits),
        b'{"eventType": "job.run.completed", "n": ' + digits + b"}",
        b"[" * 100_000 + b"]" * 100_000,
    ]
    for body in unreadable:
        answer = deliver_http(url, body, sign(body))
        assert answer.status_code == 400, body[:80]
        assert answer.json()["status"] == "bad_request"
    # A long number Python can read is still no dbt Cloud id.
    long_id = event("84").replace(b'"runId": "84"', b'"runId": ' + b"9" * 4000)
    answer = deliver_http(url, long_id, sign(long_id))
    assert answer.status_code == 400
    assert "is not a dbt Cloud id" in answer.json()["detail"]
    assert receiver.wait_idle(10)
    assert counter.runs == []
    # The receiver is fine after them.
    body = event("84")
    assert deliver_http(url, body, sign(body)).json()["status"] == "queued"


def test_stale_and_future_events_are_refused(served: Served) -> None:
    receiver, counter = served
    url = receiver.url
    for age in (301, 86400, -301):
        body = event("83", timestamp=stamp(age))
        answer = deliver_http(url, body, sign(body))
        assert answer.status_code == 400, age
        assert answer.json()["status"] == "stale"
    for timestamp in (None, "", "yesterday", 1769887775, "2026-13-01T00:00:00Z"):
        payload = json.loads(event("83"))
        payload["timestamp"] = timestamp
        body = json.dumps(payload).encode()
        answer = deliver_http(url, body, sign(body))
        assert answer.status_code == 400, timestamp
        assert answer.json()["detail"] == "the event has no RFC 3339 'timestamp'"
    assert receiver.wait_idle(10)
    assert counter.runs == []
    # Within the window (300 s by default), and in another offset: accepted.
    body = event("83", timestamp=stamp(200))
    assert deliver_http(url, body, sign(body)).json()["status"] == "queued"
    later = datetime.now(UTC).astimezone(timezone(timedelta(hours=5, minutes=30)))
    body = event("85", timestamp=later.isoformat())
    assert deliver_http(url, body, sign(body)).json()["status"] == "queued"
    assert receiver.wait_idle(30)
    assert counter.runs == ["83", "85"]


def test_replay_after_a_restart_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = CountingSync()
    body = event("81")
    first = bare_receiver(tmp_path)
    monkeypatch.setattr(first.worker, "sync_run", counter)
    with first:
        assert deliver_http(first.url, body, sign(body)).json()["status"] == "queued"
        assert first.wait_idle(30)
    # A new process, the same warehouse: the captured event is delivered again.
    second = bare_receiver(tmp_path)
    monkeypatch.setattr(second.worker, "sync_run", counter)
    with second:
        again = deliver_http(second.url, body, sign(body))
        assert again.status_code == 200
        assert again.json() == {"status": "duplicate", "detail": "run 81 was already synced"}
        assert second.wait_idle(30)
    assert counter.runs == ["81"]
    assert webhook_runs(bare_project(tmp_path) / "bare.duckdb") == {"81": ("synced", 0, None)}


def test_a_run_the_warehouse_cannot_record_is_not_accepted(
    served: Served, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    receiver, counter = served

    def down(run: CloudRun) -> Any:
        raise WarehouseError("insert webhook run failed: the warehouse is down")

    monkeypatch.setattr(receiver.worker.ledger, "claim", down)
    body = event("86")
    answer = deliver_http(receiver.url, body, sign(body))
    # Not a 200: dbt Cloud delivers it again.
    assert answer.status_code == 503
    assert answer.json()["status"] == "unavailable"
    assert receiver.wait_idle(10)
    assert counter.runs == []
    assert "the warehouse is down" in caplog.text


def test_command_without_the_webhook_extra_names_the_install() -> None:
    # Starlette and uvicorn made unimportable, as in an install without [webhook].
    blocked = "import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None; "
    env = {
        **os.environ,
        "DBT_CLOUD_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "DBT_CLOUD_API_TOKEN": CLOUD_TOKEN,
    }
    code = blocked + (
        "import dbt_moengage, dbt_moengage.integrations.dbt_cloud; "
        "from dbt_moengage.cli import run; sys.argv = ['dbt-moengage', *sys.argv[1:]]; run()"
    )
    helped = subprocess.run(
        [sys.executable, "-c", code, "--help"], env=env, capture_output=True, text=True
    )
    assert helped.returncode == 0, helped.stderr
    assert "serve-webhook" in helped.stdout
    done = subprocess.run(
        [sys.executable, "-c", code, "serve-webhook"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr
    assert 'pip install "dbt-moengage[webhook]"' in done.stderr
    assert "Traceback" not in done.stderr
    for secret in SECRETS:
        assert secret not in done.stdout + done.stderr


# -- the artifacts client on the shared retry policy, against the stand-in -------------------


def cloud_config(cloud_url: str, tmp_path: Path, attempts: int = 4) -> WebhookConfig:
    """A config whose artifacts client reads from the stand-in, with a 0.5 s first backoff."""
    return WebhookConfig(
        secret=Secret(WEBHOOK_SECRET),
        api_token=Secret(CLOUD_TOKEN),
        project_dir=tmp_path,
        cloud_host=cloud_url,
        fetch_attempts=attempts,
        fetch_backoff=0.5,
    )


def published(cloud: CloudApi, tmp_path: Path, run_id: str) -> CloudRun:
    """Serve two small artifacts as run `run_id`; return the run."""
    folder = tmp_path / f"published-{run_id}"
    folder.mkdir()
    for name in ("manifest.json", "run_results.json"):
        (folder / name).write_text(json.dumps({"artifact": name, "run": run_id}))
    cloud.runs[run_id] = folder
    return CloudRun(account_id=ACCOUNT, job_id=JOB, run_id=run_id, status="Success")


def test_artifacts_client_honours_retry_after_then_backs_off(
    cloud: CloudApi, tmp_path: Path
) -> None:
    run = published(cloud, tmp_path, "71")
    cloud.script.extend([(429, {"Retry-After": "7"}), (503, {})])
    waits: list[float] = []
    out = tmp_path / "out"
    out.mkdir()
    fetch_artifacts(cloud_config(cloud.url, tmp_path), run, out, sleep=waits.append)

    assert [r.status for r in cloud.requests] == [429, 503, 200, 200]
    # The server's Retry-After first; then the policy's backoff: 0.5 s doubled, plus jitter.
    assert waits[0] == 7.0
    assert 1.0 <= waits[1] <= 1.5
    assert len(waits) == 2
    for name in ("manifest.json", "run_results.json"):
        assert json.loads((out / name).read_text()) == {"artifact": name, "run": "71"}
    assert not list(out.glob("*.part"))


def test_artifacts_client_caps_a_long_retry_after(cloud: CloudApi, tmp_path: Path) -> None:
    run = published(cloud, tmp_path, "72")
    cloud.script.append((429, {"Retry-After": "86400"}))
    waits: list[float] = []
    fetch_artifacts(cloud_config(cloud.url, tmp_path), run, tmp_path, sleep=waits.append)
    assert waits == [retry.MAX_RETRY_AFTER]


def test_artifacts_client_gives_up_on_server_errors_by_type(
    cloud: CloudApi, tmp_path: Path
) -> None:
    run = published(cloud, tmp_path, "73")
    cloud.failure = 502
    waits: list[float] = []
    with pytest.raises(ArtifactError) as info:
        fetch_artifacts(cloud_config(cloud.url, tmp_path, 3), run, tmp_path, sleep=waits.append)
    message = str(info.value)
    assert "failed after 3 attempts (HTTP 502)" in message
    assert "/runs/73/artifacts/manifest.json" in message
    assert [r.status for r in cloud.requests] == [502, 502, 502]
    assert len(waits) == 2
    assert CLOUD_TOKEN not in message


def test_artifacts_client_does_not_retry_a_refused_token(cloud: CloudApi, tmp_path: Path) -> None:
    run = published(cloud, tmp_path, "74")
    cloud.token = "dbtc_the_right_token"
    waits: list[float] = []
    with pytest.raises(ArtifactError) as info:
        fetch_artifacts(cloud_config(cloud.url, tmp_path), run, tmp_path, sleep=waits.append)
    assert "HTTP 401" in str(info.value) and "DBT_CLOUD_API_TOKEN" in str(info.value)
    assert [r.status for r in cloud.requests] == [401]
    assert waits == []
    assert CLOUD_TOKEN not in str(info.value)


def test_artifacts_client_retries_a_refused_connection(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    run = CloudRun(account_id=ACCOUNT, job_id=JOB, run_id="75", status="Success")
    waits: list[float] = []
    with pytest.raises(ArtifactError) as info:
        fetch_artifacts(cloud_config(url, tmp_path, 2), run, tmp_path, sleep=waits.append)
    assert "failed after 2 attempts (ConnectionError)" in str(info.value)
    assert len(waits) == 1


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry.retry_after("12") == 12.0
    assert retry.retry_after("-3") == 0.0
    assert retry.retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412470.0) == 10.0
    for unusable in (None, "", "soon"):
        assert retry.retry_after(unusable) is None

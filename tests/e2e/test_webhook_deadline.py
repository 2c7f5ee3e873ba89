"""The dbt Cloud artifacts client against an API that trickles its answer (issue "Hardening,
round three", item 3): each GET ends by its wall-clock deadline, a stop ends it at once, and
`serve-webhook` stopped by SIGTERM mid-fetch (twice, as `timeout` sends it) shuts uvicorn
down and exits within seconds, without a traceback."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from dbt_moengage.errors import ArtifactError, Interrupted
from dbt_moengage.integrations.dbt_cloud import CloudRun, WebhookConfig, fetch_artifacts
from dbt_moengage.settings import Secret
from dbt_moengage.testing.emulator import Emulator

from ..conftest import BuiltProject, sync_env
from ..slow_server import RawServer, answer
from .test_webhook import (
    ACCOUNT,
    CLOUD_TOKEN,
    JOB,
    SECRETS,
    WEBHOOK_SECRET,
    event,
    free_port,
    sign,
    wait_for,
)

# A byte a second: an answer of a hundred bytes takes minutes.
TRICKLE = answer("200 OK", b'{"artifact": "manifest.json"}')
RUN = CloudRun(account_id=ACCOUNT, job_id=JOB, run_id="8801", status="Success")


def config(cloud_url: str, tmp_path: Path, **changes: float) -> WebhookConfig:
    return WebhookConfig(
        secret=Secret(WEBHOOK_SECRET),
        api_token=Secret(CLOUD_TOKEN),
        project_dir=tmp_path,
        cloud_host=cloud_url,
        fetch_attempts=2,
        fetch_backoff=0.05,
        **changes,  # type: ignore[arg-type]
    )


def test_a_get_that_trickles_ends_at_its_deadline(tmp_path: Path) -> None:
    with RawServer(TRICKLE, gap=1.0) as api:
        started = time.monotonic()
        with pytest.raises(ArtifactError) as caught:
            fetch_artifacts(config(api.url, tmp_path, fetch_deadline=1.5), RUN, tmp_path)
        took = time.monotonic() - started
        assert len(api.received()) == 2  # each attempt cut off at its deadline
    assert took < 2 * 1.5 + 2, took
    text = str(caught.value)
    assert "failed after 2 attempts (no complete answer within 1.5 s)" in text
    assert CLOUD_TOKEN not in text
    assert not (tmp_path / "manifest.json").exists()


def test_a_stop_ends_a_get_at_once(tmp_path: Path) -> None:
    stop = threading.Event()

    def pause(seconds: float) -> None:
        stop.wait(seconds)

    with RawServer(TRICKLE, gap=1.0) as api:
        threading.Timer(0.5, stop.set).start()
        started = time.monotonic()
        with pytest.raises(Interrupted, match="the receiver is stopping"):
            fetch_artifacts(config(api.url, tmp_path), RUN, tmp_path, sleep=pause, stop=stop)
        took = time.monotonic() - started
        assert len(api.received()) == 1  # no attempt after the stop
    assert took < 2, took


def test_serve_webhook_stops_at_once_while_the_api_trickles(
    project: BuiltProject, emulator: Emulator, tmp_path: Path
) -> None:
    port = free_port()
    with RawServer(TRICKLE, gap=1.0) as api:
        env = {
            **sync_env(project, emulator),
            "DBT_CLOUD_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "DBT_CLOUD_API_TOKEN": CLOUD_TOKEN,
            "DBT_CLOUD_HOST": api.url,
            "DBT_CLOUD_ACCOUNT_ID": ACCOUNT,
        }
        env.pop("DBT_TARGET_PATH")
        command = [sys.executable, "-m", "dbt_moengage", "serve-webhook", "--port", str(port)]
        command += ["--project-dir", str(project.project_dir)]
        command += ["--profiles-dir", str(project.project_dir), "--job-id", JOB]
        command += ["--work-dir", str(tmp_path / "work")]
        log_file = tmp_path / "serve-webhook.log"
        with log_file.open("w") as log_out:
            server = subprocess.Popen(
                command, env=env, stdout=log_out, stderr=subprocess.STDOUT, cwd=tmp_path
            )
        try:
            url = f"http://127.0.0.1:{port}"

            def healthy() -> bool:
                try:
                    return requests.get(url + "/healthz", timeout=1).status_code == 200
                except requests.RequestException:  # bound, not serving yet: a timeout
                    return False

            assert wait_for(healthy, 60), log_file.read_text()
            body = event(RUN.run_id)
            queued = requests.post(url, data=body, headers={"Authorization": sign(body)}, timeout=5)
            assert queued.json()["status"] == "queued", queued.text
            assert wait_for(lambda: bool(api.received()), 60), log_file.read_text()
            time.sleep(1)  # the worker is reading the trickle
        finally:
            # As GNU `timeout` sends it: to the process, then to its group.
            server.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            time.sleep(0.05)
            server.send_signal(signal.SIGTERM)
            returncode = server.wait(timeout=120)
            took = time.monotonic() - signalled
    log = log_file.read_text()
    print(f"serve-webhook exited {took:.2f} s after SIGTERM")
    assert returncode == 0, log
    assert took < 10, log
    # One stop: uvicorn shut down before the process ended, the run stays queued.
    assert log.count("SIGTERM: stopping the receiver") == 1, log
    assert "Shutting down" in log and "Finished server process" in log, log
    assert f"dbt Cloud run {RUN.run_id} (job {JOB}, Success): not synced yet" in log, log
    for text in ("Traceback", "CancelledError", "Invalid file descriptor", "Aborted", "exiting"):
        assert text not in log, log
    for secret in SECRETS:
        assert secret not in log

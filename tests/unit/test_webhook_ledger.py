"""The dbt Cloud receiver's pieces without a server: when an event was made (events.py), the
runs it keeps in the warehouse (ledger.py, on a DuckDB profile), a run given up as posted."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from dbt_moengage.errors import SettingsError
from dbt_moengage.integrations.dbt_cloud import CloudRun, RunLedger, RunOutcome, WebhookConfig
from dbt_moengage.integrations.dbt_cloud.events import cloud_run, event_time
from dbt_moengage.integrations.dbt_cloud.worker import given_up_message
from dbt_moengage.settings import Secret


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-31T19:29:35.789265936Z", datetime(2026, 1, 31, 19, 29, 35, 789265, UTC)),
        ("2026-01-31T19:29:35Z", datetime(2026, 1, 31, 19, 29, 35, tzinfo=UTC)),
        ("2026-01-31T21:29:35.5+02:00", datetime(2026, 1, 31, 19, 29, 35, 500000, UTC)),
        ("2026-01-31t19:29:35z", datetime(2026, 1, 31, 19, 29, 35, tzinfo=UTC)),
    ],
)
def test_event_time_reads_rfc_3339_in_utc(value: str, expected: datetime) -> None:
    assert event_time({"timestamp": value}) == expected


@pytest.mark.parametrize(
    "value",
    [None, "", "yesterday", 1769887775, "2026-01-31T19:29:35", "2026-02-30T00:00:00Z", "9" * 5000],
)
def test_event_time_is_none_when_there_is_no_time(value: object) -> None:
    assert event_time({"timestamp": value}) is None
    assert event_time({}) is None


def test_run_ids_are_dbt_cloud_ids() -> None:
    event = {"accountId": 1, "data": {"runId": 2, "jobId": 3, "runStatus": "Success"}}
    run, problem = cloud_run(event, None)
    assert run == CloudRun(account_id="1", job_id="3", run_id="2", status="Success")
    for bad in ("1" * 21, "-1", "1e5", "\uff11\uff12"):
        event["data"]["runId"] = bad  # type: ignore[index]
        run, problem = cloud_run(event, None)
        assert run is None and "data.runId" in problem and "is not a dbt Cloud id" in problem
        assert len(problem) < 120


@pytest.fixture
def ledger(tmp_path: Path) -> RunLedger:
    """A ledger over a dbt project whose profile is a DuckDB file, opened."""
    database = tmp_path / "state.duckdb"
    (tmp_path / "dbt_project.yml").write_text(
        'name: bare\nversion: "1.0"\nconfig-version: 2\nprofile: bare\n'
    )
    (tmp_path / "profiles.yml").write_text(
        "bare:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        f"      path: {json.dumps(str(database))}\n      schema: main\n"
    )
    duckdb.connect(str(database)).close()
    config = WebhookConfig(
        secret=Secret("s"),
        api_token=Secret("t"),
        project_dir=tmp_path,
        profiles_dir=tmp_path,
        environ={},
    )
    opened = RunLedger(config)
    opened.open()
    return opened


def rows(ledger: RunLedger) -> list[tuple[object, ...]]:
    database = ledger.config.project_dir / "state.duckdb"
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.execute(
            "select run_id, job_id, run_status, status, attempts, error, finished_at is null "
            "from main.moengage_webhook_runs order by received_at"
        ).fetchall()


def test_a_run_is_queued_once_synced_once_and_given_up_runs_come_again(
    ledger: RunLedger,
) -> None:
    first = CloudRun(account_id="1", job_id="10", run_id="100", status="Success")
    second = CloudRun(account_id="1", job_id="10", run_id="101", status="Errored")
    assert ledger.claim(first).duplicate == ""
    assert ledger.claim(first).duplicate == "is in progress (queued or syncing)"
    assert ledger.claim(second).duplicate == ""
    assert ledger.queued() == [(first, 0), (second, 0)]

    ledger.attempted(first, 2)
    assert ledger.queued()[0] == (first, 2)
    ledger.finish(first, "given_up", 2, "GET ... failed\x1b[31m after 2 attempts")
    stored = r"GET ... failed\x1b[31m after 2 attempts"  # control characters escaped
    assert rows(ledger)[0] == ("100", "10", "Success", "given_up", 2, stored, False)
    # A run given up never synced: a delivery of it queues it again, from no attempt.
    assert ledger.claim(first).duplicate == ""
    assert ledger.queued() == [(second, 0), (first, 0)]

    ledger.finish(second, "synced", 1, None)
    ledger.finish(first, "synced", 1, None)
    assert ledger.claim(first).duplicate == "was already synced"
    assert ledger.claim(second).duplicate == "was already synced"
    assert ledger.queued() == []
    # The same run id in another account is another run.
    other = CloudRun(account_id="2", job_id="10", run_id="100", status="Success")
    assert ledger.claim(other).duplicate == ""


def test_a_run_given_up_is_posted_with_its_facts() -> None:
    run = CloudRun(account_id="1", job_id="10", run_id="100", status="Errored")
    outcome = RunOutcome(run, None, error="GET <https://x> answered HTTP 401 & more", attempts=1)
    message = given_up_message(outcome)
    assert message["event"] == "webhook_run_given_up"
    assert message["dbt_cloud_run"] == {
        "account_id": "1",
        "job_id": "10",
        "run_id": "100",
        "run_status": "Errored",
        "attempts": 1,
        "error": "GET <https://x> answered HTTP 401 & more",
    }
    text = str(message["text"])
    assert text.startswith("*dbt-moengage*: dbt Cloud run 100 (job 10, Errored) not synced")
    assert "after 1 fetch of its artifacts" in text
    # Slack's markup characters are shown as they are.
    assert "&lt;https://x&gt; answered HTTP 401 &amp; more" in text


@pytest.mark.parametrize(
    ("token", "said"),
    [
        ("dbtc_\u2019abc", "at character 6 of 9; HTTP headers take printable Latin-1 only"),
        ("dbtc_abc\n", "whitespace"),
    ],
    ids=["curly-quote", "line-break"],
)
def test_a_dbt_cloud_token_no_header_can_carry_is_refused_at_start(
    tmp_path: Path, token: str, said: str
) -> None:
    with pytest.raises(SettingsError) as info:
        WebhookConfig(secret=Secret("s"), api_token=Secret(token), project_dir=tmp_path, environ={})
    message = str(info.value)
    assert "DBT_CLOUD_API_TOKEN" in message and said in message
    assert "the service token" in message and "MoEngage" not in message
    assert ("Service tokens" in message) == ("Latin-1" in said)
    assert token.strip() not in message

"""What dbt Cloud sends: a `job.run.completed` event, read into the run it is about."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

COMPLETED = "job.run.completed"


@dataclass(frozen=True)
class CloudRun:
    """The dbt Cloud run a webhook event is about."""

    account_id: str
    job_id: str
    run_id: str
    status: str
    event_id: str = ""


def cloud_run(event: dict[str, Any], default_account: str | None) -> tuple[CloudRun | None, str]:
    """The run an event is about, or None and what is wrong with the event."""
    data = event.get("data")
    if not isinstance(data, dict):
        return None, "the event has no 'data' object"
    run_id, job_id = str(data.get("runId") or ""), str(data.get("jobId") or "")
    # The documented payload has accountId at the top; some deliveries put it in data.
    account = str(event.get("accountId") or data.get("accountId") or default_account or "")
    for name, value in (("data.runId", run_id), ("data.jobId", job_id), ("accountId", account)):
        if not (value.isascii() and value.isdigit()):
            return None, f"{name} = {value!r} is not a dbt Cloud id"
    run = CloudRun(
        account_id=account,
        job_id=job_id,
        run_id=run_id,
        status=str(data.get("runStatus") or "unknown"),
        event_id=str(event.get("eventId") or ""),
    )
    return run, ""

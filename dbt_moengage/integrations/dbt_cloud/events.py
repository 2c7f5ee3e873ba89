"""What dbt Cloud sends: a `job.run.completed` event, read into the run it is about.

The signed body carries the moment dbt Cloud made the event (`timestamp`, RFC 3339 in UTC
with nanoseconds, e.g. 2026-01-31T19:29:35.789265936Z): the receiver refuses an event too
far from now, so a captured delivery cannot be replayed later (`event_time`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

COMPLETED = "job.run.completed"
# dbt Cloud's ids are 64-bit integers: at most 20 digits.
MAX_ID_DIGITS = 20


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
        if not (value.isascii() and value.isdigit() and len(value) <= MAX_ID_DIGITS):
            shown = value if len(value) <= 40 else f"{value[:20]}... ({len(value)} characters)"
            return None, f"{name} = {shown!r} is not a dbt Cloud id"
    run = CloudRun(
        account_id=account,
        job_id=job_id,
        run_id=run_id,
        status=str(data.get("runStatus") or "unknown"),
        event_id=str(event.get("eventId") or ""),
    )
    return run, ""


# RFC 3339: date, time, fraction of any length, Z or an offset.
_TIMESTAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})"
)


def event_time(event: dict[str, Any]) -> datetime | None:
    """When dbt Cloud made the event (its signed `timestamp`), aware in UTC; None when the
    event has none, or not one that reads as an RFC 3339 time."""
    value = event.get("timestamp")
    if not isinstance(value, str) or len(value) > 64:
        return None
    found = _TIMESTAMP.fullmatch(value.strip())
    if found is None:
        return None
    day, clock, fraction, zone = found.groups()
    # Python reads at most microseconds: the nanoseconds dbt Cloud sends are cut.
    micro = f".{(fraction or '0')[:6]}"
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        return datetime.fromisoformat(f"{day}T{clock}{micro}{zone}").astimezone(UTC)
    except ValueError:
        return None

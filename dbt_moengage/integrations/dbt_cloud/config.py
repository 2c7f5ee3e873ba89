"""What the dbt Cloud receiver needs: credentials, the dbt project, and its limits."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import SettingsError
from ...settings import Secret, check_header_value
from ...urls import check_url

DEFAULT_CLOUD_HOST = "https://cloud.getdbt.com"


@dataclass(frozen=True)
class WebhookConfig:
    """What the receiver needs: dbt Cloud credentials, the dbt project, and its limits."""

    secret: Secret
    api_token: Secret
    project_dir: Path
    profiles_dir: Path | None = None
    target: str | None = None
    cloud_host: str = DEFAULT_CLOUD_HOST
    account_id: str | None = None
    job_ids: frozenset[str] = frozenset()
    # The run step whose artifacts to fetch; None is dbt Cloud's default, the last step.
    step: int | None = None
    work_dir: Path | None = None
    keep_runs: int = 20
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    # The wall-clock deadline of one artifact's GET, its body included: a read timeout bounds
    # each read only, so an API trickling its answer would hold the worker forever. A
    # manifest of some hundreds of MB comes well within it.
    fetch_deadline: float = 300.0
    # The artifacts client's retry policy (see dbt_moengage/retry.py): attempts per artifact
    # and the first backoff, doubling up to 30 s; a 429's Retry-After comes first.
    fetch_attempts: int = 4
    fetch_backoff: float = 2.0
    # While dbt Cloud keeps failing (the client gave up on an artifact), the whole fetch is
    # tried again later on the same policy: attempts per run, and the first wait, doubling
    # up to 10 minutes (about 15 minutes in all by default). Then the run is given up.
    run_attempts: int = 6
    run_backoff: float = 30.0
    # An event whose `timestamp` is further than this from now (seconds) is refused: a
    # captured delivery cannot be replayed later.
    max_event_age: float = 300.0
    # A connection must send a request's head (request line and headers) within this many
    # seconds of opening, or of its previous answer; else it is closed.
    header_timeout: float = 10.0
    # The sync's environment holds MoEngage and warehouse secrets: never part of a repr.
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)

    def __post_init__(self) -> None:
        check_cloud_host(self.cloud_host)
        if not self.secret:
            raise SettingsError("DBT_CLOUD_WEBHOOK_SECRET is empty: set the webhook's secret")
        if not self.api_token:
            raise SettingsError("DBT_CLOUD_API_TOKEN is empty: set a dbt Cloud service token")
        # Sent in the Authorization header of every artifact request: refused here, at start,
        # rather than as an encoding error deep in a fetch.
        check_header_value(
            "DBT_CLOUD_API_TOKEN",
            self.api_token.reveal(),
            "the service token",
            source="dbt Cloud (Account settings -> Service tokens)",
        )
        if self.fetch_attempts < 1:
            raise SettingsError(f"fetch_attempts = {self.fetch_attempts}: must be at least 1")
        if self.run_attempts < 1:
            raise SettingsError(f"run_attempts = {self.run_attempts}: must be at least 1")
        if not self.max_event_age > 0:
            raise SettingsError(f"max_event_age = {self.max_event_age}: must be above 0")
        if not self.header_timeout > 0:
            raise SettingsError(f"header_timeout = {self.header_timeout}: must be above 0")


def check_cloud_host(url: str) -> None:
    """Refuse a dbt Cloud host that would carry the API token in clear or is not a URL (the
    one rule of every URL setting, urls.py)."""
    check_url(
        url,
        "DBT_CLOUD_HOST",
        carries="the API token",
        example="https://cloud.getdbt.com or your account's access URL",
        fix="use DBT_CLOUD_API_TOKEN",
    )

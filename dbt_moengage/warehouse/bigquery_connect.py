"""Opening BigQuery: a google-cloud-bigquery client for a dbt-bigquery profile target,
opened by dbt-bigquery's own connection manager, so every profile `method` dbt supports
(oauth, service-account, service-account-json, oauth-secrets, impersonation) works here.
A failure names the settings to check and no secret."""

from __future__ import annotations

from typing import Any

from .profiles import ProfileTarget, open_handle
from .redact import redact_path


def open_client(target: ProfileTarget) -> Any:
    """A google-cloud-bigquery client for the profile target, opened by dbt-bigquery."""
    from dbt.adapters.bigquery.connections import BigQueryConnectionManager

    return open_handle(target, BigQueryConnectionManager, lambda exc: _failure(target, exc))


def _secrets(credentials: Any) -> list[str]:
    """The values of dbt-bigquery's secret fields that are set."""
    keyfile = credentials.keyfile_json or {}
    values = (
        credentials.token,
        credentials.refresh_token,
        credentials.client_secret,
        keyfile.get("private_key"),
        keyfile.get("private_key_id"),
    )
    return [str(value) for value in values if value]


def _failure(target: ProfileTarget, exc: BaseException) -> str:
    """What went wrong opening the client, the settings to check, and no secret."""
    credentials = target.credentials
    text = " ".join(str(exc).split())
    for secret in _secrets(credentials):
        for line in secret.splitlines() or [secret]:
            if len(line.strip()) >= 4:
                text = text.replace(line.strip(), "***")
    method = getattr(credentials.method, "value", credentials.method)
    return (
        f"{target.where}: cannot open BigQuery for project '{credentials.database}' "
        f"(method {method}): {redact_path(text)}; check method and its credentials "
        "(keyfile, keyfile_json, token, refresh_token, impersonate_service_account), project "
        "and location"
    )

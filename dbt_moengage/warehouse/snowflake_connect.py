"""Open a Snowflake session the way dbt does: through dbt-snowflake's connection manager.

dbt-snowflake's `SnowflakeConnectionManager.open()` turns the profile's credentials
(password, key pair from a file or inline with its passphrase, externalbrowser, OAuth and
its refresh, JWT, programmatic access tokens, workload identity, MFA) into the
connector's arguments, and retries connecting as `connect_retries` / `connect_timeout`
say. The runner calls it, so a profile that works for `dbt build` works here, and only
adds what dbt has no setting for: `?` parameters and its own query tag, so its queries
are found in query history. The connector takes its paramstyle from the module switch
`snowflake.connector.paramstyle` when a connection is made: the runner sets it only while
its own connection is made, then puts back what was there, so dbt's connections in the same
process (seeds bind with pyformat) are untouched. A failure names the profile settings to
check and holds no secret.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable
from typing import Any

import snowflake.connector

from .profiles import ProfileTarget, open_handle

QUERY_TAG = "dbt-moengage"
# Held while the module's paramstyle is the runner's (connections opened side by side).
_PARAMSTYLE = threading.Lock()

_NETWORK_HINT = (
    "account (and host, port, proxy_host, proxy_port if set) and that this machine can "
    "reach Snowflake"
)
_KEY_HINT = (
    "user and the private key (private_key_path or private_key, private_key_passphrase): "
    "its public key must be the user's RSA_PUBLIC_KEY"
)
# Snowflake login error codes (snowflake-connector-python network.py names most of them).
_HINTS = {
    250001: _NETWORK_HINT,
    390100: "user and password",
    390144: _KEY_HINT,
    **dict.fromkeys(range(394300, 394307), _KEY_HINT),
    390189: "role: it must exist and be granted to user",
    390201: "warehouse, database and role: they must exist and role must be allowed to use them",
    390303: "token: Snowflake says the OAuth access token is invalid",
    390318: "token: the OAuth access token has expired; get a new one",
}
_DEFAULT_HINT = (
    "account, user, role, warehouse and the credentials (password, private key and "
    "private_key_passphrase, or token)"
)


def session_credentials(target: ProfileTarget) -> Any:
    """The profile's dbt-snowflake credentials, with the runner's query tag."""
    return dataclasses.replace(target.credentials, query_tag=QUERY_TAG)


def open_connection(target: ProfileTarget) -> Any:
    """A connector session for the profile target, opened by dbt-snowflake itself."""
    from dbt.adapters.snowflake.connections import SnowflakeConnectionManager

    with _PARAMSTYLE:
        # The runner's statements bind with `?`; dbt's own default is pyformat. The
        # connection keeps the style it was made with.
        before = snowflake.connector.paramstyle
        snowflake.connector.paramstyle = "qmark"
        try:
            return open_handle(
                target,
                SnowflakeConnectionManager,
                lambda exc: _failure(target, exc),
                session_credentials(target),
            )
        finally:
            snowflake.connector.paramstyle = before


def _failure(target: ProfileTarget, exc: BaseException) -> str:
    """What went wrong connecting, the settings to check, and no secret."""
    credentials = target.credentials
    error = _connector_error(exc)
    errno = error.errno if error is not None else None
    kind = type(error or exc).__name__
    code = f", errno {errno}" if errno else ""
    reason = _scrub(" ".join(str(error or exc).split()), _secrets(credentials))
    hint = _HINTS.get(errno or 0, _DEFAULT_HINT)
    who = f"as user '{credentials.user}' " if credentials.user else ""
    return (
        f"{target.where}: cannot connect to Snowflake account '{credentials.account}' {who}"
        f"({kind}{code}): {reason}; check {hint}"
    )


def _connector_error(exc: BaseException) -> snowflake.connector.errors.Error | None:
    """The connector's own error behind dbt's wrapper, if there is one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, snowflake.connector.errors.Error):
            return current
        current = current.__cause__ or current.__context__
    return None


def _secrets(credentials: Any) -> list[str]:
    """The values of dbt-snowflake's secret fields that are set."""
    values = (
        credentials.password,
        credentials.private_key,
        credentials.private_key_passphrase,
        credentials.token,
        credentials.oauth_client_secret,
    )
    return [str(value) for value in values if value]


def _scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret, and its URL-quoted form, replaced by ***."""
    from urllib.parse import quote

    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            if len(form) >= 4:
                text = text.replace(form, "***")
    return text

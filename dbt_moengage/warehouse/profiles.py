"""Find and render the user's dbt profile with dbt's own code, as `dbt build` does.

The profiles folder is looked up in dbt's order (--profiles-dir, DBT_PROFILES_DIR, the
current folder, ~/.dbt); dbt then renders it: the `profile:` of dbt_project.yml,
`env_var()`, `var()` with `--vars`, `--profile` and `--target` (or DBT_TARGET), and
builds the installed adapter's own credentials from it. A profile that works for
`dbt build` works here, by construction. The credentials hold secrets: nothing here
prints them, and dbt's errors are shown with secret values masked.
"""

from __future__ import annotations

import os
import re
from argparse import Namespace
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ProfileError

# Environment variables whose values never appear in a message (dbt's own secret prefix,
# and names that say what they hold).
_SECRET_NAME = re.compile(r"DBT_ENV_SECRET_|PASSWORD|PASSPHRASE|SECRET|TOKEN|KEY", re.IGNORECASE)
# What each adapter's extra installs.
EXTRAS = {
    "duckdb": "duckdb",
    "snowflake": "snowflake",
    "postgres": "postgres",
    "bigquery": "bigquery",
}


@dataclass(frozen=True)
class ProfileTarget:
    """One rendered target of a dbt profile: where it came from and the adapter's
    credentials (an object of dbt-duckdb, dbt-snowflake, dbt-postgres or dbt-bigquery)."""

    profile_name: str
    target_name: str
    profiles_dir: Path
    credentials: Any

    def __repr__(self) -> str:
        # The credentials hold passwords and keys: show only where the target came from.
        return (
            f"ProfileTarget(profile_name={self.profile_name!r}, "
            f"target_name={self.target_name!r}, type={self.type!r})"
        )

    @property
    def type(self) -> str:
        """The adapter type, e.g. 'duckdb', 'snowflake', 'postgres' or 'bigquery'."""
        return str(self.credentials.type)

    @property
    def where(self) -> str:
        """`profile 'p' target 't'`, for messages."""
        return f"profile '{self.profile_name}' target '{self.target_name}'"

    def state_schema(self, override: str | None, default: str = "") -> str:
        """The schema (BigQuery: dataset) the sync state goes in: `override` (the runner's
        --state-schema) when given, else the target's own, else `default`."""
        return override or str(self.credentials.schema or default)

    def state_location(self, override: str | None, fields: str, warehouse: str) -> tuple[str, str]:
        """The target's database (BigQuery: project) and the state's schema (state_schema);
        ProfileError naming the profile's `fields` when either is missing."""
        database, schema = str(self.credentials.database or ""), self.state_schema(override)
        if not database or not schema:
            raise ProfileError(f"{self.where}: {fields} are required for {warehouse}")
        return database, schema


def find_profiles_dir(
    profiles_dir: Path | None,
    project_dir: Path,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """--profiles-dir, then DBT_PROFILES_DIR, then dbt's own default (the current folder if
    it holds profiles.yml, else ~/.dbt)."""
    from dbt.cli.resolvers import default_profiles_dir

    env = os.environ if environ is None else environ
    if profiles_dir is not None:
        source, folder = "--profiles-dir", profiles_dir
    elif env.get("DBT_PROFILES_DIR"):
        source, folder = "DBT_PROFILES_DIR", Path(env["DBT_PROFILES_DIR"]).expanduser()
    else:
        folder = default_profiles_dir()
        source = "the current folder" if folder == Path.cwd() else "~/.dbt"
    if not (folder / "profiles.yml").is_file():
        raise ProfileError(
            f"no profiles.yml in {folder} (from {source}); pass --profiles-dir, set "
            f"DBT_PROFILES_DIR, or create ~/.dbt/profiles.yml as for dbt (project: {project_dir})"
        )
    return folder


def parse_vars(text: str | None) -> dict[str, Any]:
    """`--vars` as dbt reads it: a YAML (or JSON) mapping."""
    if not text:
        return {}
    from dbt.config.utils import parse_cli_vars
    from dbt_common.exceptions import DbtValidationError

    try:
        return dict(parse_cli_vars(text))
    except DbtValidationError:
        raise ProfileError(
            "--vars is not a YAML mapping, e.g. --vars '{region: eu, days: 30}'"
        ) from None


def load_profile_target(
    project_dir: Path,
    profiles_dir: Path | None = None,
    target: str | None = None,
    environ: Mapping[str, str] | None = None,
    profile: str | None = None,
    cli_vars: Mapping[str, Any] | None = None,
) -> ProfileTarget:
    """The project's profile target, rendered and turned into credentials by dbt itself."""
    from dbt.config.runtime import load_profile
    from dbt.flags import set_from_args
    from dbt_common.context import set_invocation_context
    from dbt_common.exceptions import DbtRuntimeError

    env = dict(os.environ if environ is None else environ)
    folder = find_profiles_dir(profiles_dir, project_dir, env)
    if not (project_dir / "dbt_project.yml").is_file():
        raise ProfileError(
            f"no dbt_project.yml in {project_dir}: run from the dbt project or pass --project-dir"
        )
    # dbt reads env_var() from its invocation context, and the profiles folder from its flags.
    set_invocation_context(env)
    set_from_args(Namespace(PROFILES_DIR=str(folder), PROJECT_DIR=str(project_dir)), None)
    try:
        rendered = load_profile(
            str(project_dir), dict(cli_vars or {}), profile, target or env.get("DBT_TARGET")
        )
    except DbtRuntimeError as exc:
        raise ProfileError(_dbt_message(exc, env, folder)) from None
    return ProfileTarget(rendered.profile_name, rendered.target_name, folder, rendered.credentials)


def _dbt_message(exc: Exception, env: Mapping[str, str], folder: Path) -> str:
    """dbt's error on one line, with secret values masked and the fix named."""
    from dbt_common.exceptions.base import scrub_secrets

    text = " ".join(str(exc).replace("Runtime Error", "", 1).split())
    # dbt's own scrubbing, given every value whose name says it is secret (dbt's would only
    # take DBT_ENV_SECRET_* from os.environ, not the environment the run was given).
    secrets = [v for name, v in env.items() if len(v) >= 4 and _SECRET_NAME.search(name)]
    text = str(scrub_secrets(text, secrets))
    missing = re.search(r"Could not find adapter type (\w+)", text)
    if missing:
        kind = missing.group(1)
        extra = EXTRAS.get(kind)
        hint = (
            f'pip install "dbt-moengage[{extra}]"'
            if extra
            else f"dbt-moengage supports {', '.join(EXTRAS)}"
        )
        return f"the profile's target has type '{kind}', whose dbt adapter is not installed: {hint}"
    return f"dbt profile in {folder}: {text}"


def open_handle(
    target: ProfileTarget,
    manager: Any,
    failure: Callable[[BaseException], str],
    credentials: Any = None,
) -> Any:
    """The driver's handle that the adapter's own connection manager (`manager`) opens for
    the target, as dbt opens it; a failure is a ProfileError whose text `failure` writes
    (it must hold no secret). `credentials`: the target's, changed (Snowflake's query tag)."""
    from dbt.adapters.contracts.connection import Connection, ConnectionState, Identifier

    connection = Connection(
        type=Identifier(target.type),
        name="dbt-moengage",
        state=ConnectionState.INIT,
        transaction_open=False,
        handle=None,
        credentials=target.credentials if credentials is None else credentials,
    )
    message = None
    try:
        manager.open(connection)
    except Exception as exc:  # dbt's, the driver's or a key's error: shown alike
        message = failure(exc)
    if message is not None:
        # Raised outside the handler: the driver's error (its args may hold a secret) is
        # kept neither as cause nor as context.
        raise ProfileError(message)
    return connection.handle

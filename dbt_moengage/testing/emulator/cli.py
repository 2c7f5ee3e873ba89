"""`dbt-moengage emulator`: the emulator in the foreground, with faults from options.

Only click is imported here; the server loads when the command runs, so the CLI starts
as fast without it.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option(
    "--workspace-id",
    envvar="MOENGAGE_WORKSPACE_ID",
    required=True,
    help="Workspace id to accept [env: MOENGAGE_WORKSPACE_ID].",
)
@click.option(
    "--api-key",
    envvar="MOENGAGE_API_KEY",
    required=True,
    help="API key to accept [env: MOENGAGE_API_KEY].",
)
@click.option(
    "--rate-limit",
    type=int,
    default=300,
    show_default=True,
    help="Requests per minute per workspace; 0 for unlimited.",
)
@click.option("--max-body-bytes", type=int, default=131072, show_default=True)
@click.option(
    "--error-before-rate",
    type=float,
    default=0.0,
    help="Share of requests answered 503, not applied.",
)
@click.option(
    "--error-after-rate", type=float, default=0.0, help="Share applied, then answered 500."
)
@click.option(
    "--drop-before-rate", type=float, default=0.0, help="Share dropped unanswered, not applied."
)
@click.option(
    "--drop-after-rate", type=float, default=0.0, help="Share applied, then dropped unanswered."
)
@click.option("--slow-rate", type=float, default=0.0, help="Share answered after --slow-seconds.")
@click.option("--slow-seconds", type=float, default=0.0)
@click.option("--storm-429", type=int, default=0, help="Answer 429 to the first N requests.")
@click.option("--no-retry-after", is_flag=True, help="Send 429s without a Retry-After header.")
@click.option("--seed", type=int, default=0, help="Seed of the fault dice.")
@click.option(
    "--known-users",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="File of the uids MoEngage knows, one per line: adds of others are dropped.",
)
@click.option(
    "--no-removals",
    is_flag=True,
    help="Refuse remove_members with a 400, as a workspace without removals does.",
)
def emulator(
    host: str,
    port: int,
    workspace_id: str,
    api_key: str,
    rate_limit: int,
    max_body_bytes: int,
    error_before_rate: float,
    error_after_rate: float,
    drop_before_rate: float,
    drop_after_rate: float,
    slow_rate: float,
    slow_seconds: float,
    storm_429: int,
    no_retry_after: bool,
    seed: int,
    known_users: Path | None,
    no_removals: bool,
) -> None:
    """Run a local MoEngage Cohort Sync API for demos and tests."""
    from .config import EmulatorConfig
    from .faults import Faults
    from .server import serve_forever

    faults = Faults(
        error_before_rate=error_before_rate,
        error_after_rate=error_after_rate,
        drop_before_rate=drop_before_rate,
        drop_after_rate=drop_after_rate,
        slow_rate=slow_rate,
        slow_seconds=slow_seconds,
        storm_429=storm_429,
        retry_after=not no_retry_after,
        seed=seed,
    )
    config = EmulatorConfig(
        workspace_id=workspace_id,
        api_key=api_key,
        rate_limit_per_min=rate_limit or None,
        max_body_bytes=max_body_bytes,
        faults=faults,
        known_users=_read_users(known_users) if known_users else None,
        removals=not no_removals,
    )
    serve_forever(config, host, port)


def _read_users(path: Path) -> frozenset[str]:
    """The uids of a --known-users file, one per line (blank lines skipped)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line.strip())

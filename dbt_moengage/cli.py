"""The `dbt-moengage` command: sync cohorts, or run the local MoEngage emulator."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from rich.console import Console

from . import __version__
from .errors import ConfigError, MoEngageSyncError
from .progress import LinePrinter
from .report import print_summary
from .sync import SyncOptions, run_sync

EXIT_USAGE = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dbt-moengage")
def main() -> None:
    """Keep MoEngage cohorts in step with dbt models."""


@main.command()
@click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The dbt project folder (holds dbt_project.yml and target/).",
)
@click.option(
    "--profiles-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder holding profiles.yml (default: DBT_PROFILES_DIR, the current folder, ~/.dbt).",
)
@click.option("--target", "-t", default=None, help="The profile target to use.")
@click.option(
    "--select",
    "-s",
    multiple=True,
    help="Sync only these cohort models (repeat, or give several names separated by spaces).",
)
@click.option(
    "--dry-run", is_flag=True, help="Validate and count what would be sent; send nothing."
)
@click.option(
    "--full-refresh",
    is_flag=True,
    help="Resend every member of the selected cohorts and rebuild their state.",
)
@click.option(
    "--state-schema",
    default=None,
    help="Schema of the sync state tables [env: MOENGAGE_STATE_SCHEMA; default: the profile's].",
)
def sync(
    project_dir: Path,
    profiles_dir: Path | None,
    target: str | None,
    select: tuple[str, ...],
    dry_run: bool,
    full_refresh: bool,
    state_schema: str | None,
) -> None:
    """Sync every cohort model of the dbt project to MoEngage."""
    console = make_console()
    options = SyncOptions(
        project_dir=project_dir,
        profiles_dir=profiles_dir,
        target=target,
        select=tuple(name for chunk in select for name in chunk.split()),
        dry_run=dry_run,
        full_refresh=full_refresh,
        state_schema=state_schema,
    )
    try:
        report = run_sync(options, LinePrinter(console))
    except ConfigError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", soft_wrap=True, highlight=False)
        sys.exit(EXIT_USAGE)
    path = report.write(options.target_dir)
    print_summary(report, console, path)
    sys.exit(report.exit_code)


@main.command()
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
) -> None:
    """Run a local MoEngage Cohort Sync API for demos and tests."""
    from .emulator import EmulatorConfig, Faults, serve_forever

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
    )
    serve_forever(config, host, port)


def make_console() -> Console:
    """A console for stdout; logs and pipes get a wide one so tables do not wrap."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console()
    return Console(width=160)


def run() -> None:
    """Entry point that maps unexpected library errors to exit code 1 without a traceback."""
    try:
        main()
    except MoEngageSyncError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", soft_wrap=True, highlight=False)
        sys.exit(1)

"""`dbt-moengage serve-webhook`: the receiver as a command, settings from the environment."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ...errors import MoEngageSyncError, SettingsError
from ...interrupt import stop_on_signals
from ...settings import Secret
from .config import DEFAULT_CLOUD_HOST, WebhookConfig

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "dbt-moengage[webhook]"'
# What the [webhook] extra brings; an ImportError naming another module is a real bug.
_EXTRA_MODULES = {"starlette", "uvicorn", "anyio", "h11"}
_F = TypeVar("_F", bound=Callable[..., Any])


def _required_env(name: str, what: str) -> Secret:
    value = os.environ.get(name, "")
    if not value:
        raise click.UsageError(f"{name} is not set: {what}")
    return Secret(value)


def _folder_option(
    flag: str, text: str, default: Path | None = None, **kwargs: Any
) -> Callable[[_F], _F]:
    """An option naming a folder, given to the command as a Path (`default` when not given);
    `text` is its help."""
    folder = click.Path(file_okay=False, path_type=Path)
    return click.option(flag, type=folder, default=default, help=text, **kwargs)


@click.command("serve-webhook")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@_folder_option(
    "--project-dir",
    "The dbt project folder (its dbt_project.yml names the profile).",
    default=Path("."),
    show_default=True,
)
@_folder_option(
    "--profiles-dir",
    "Folder holding profiles.yml (default: DBT_PROFILES_DIR, the current folder, ~/.dbt).",
)
@click.option("--target", "-t", default=None, help="The profile target to use.")
@click.option(
    "--job-id",
    "job_ids",
    multiple=True,
    help="Sync only runs of this dbt Cloud job (repeat for several); default: every job.",
)
@click.option(
    "--step",
    type=click.IntRange(min=1),
    default=None,
    help="Fetch the artifacts of this run step (1 = first); default: the last step.",
)
@_folder_option(
    "--work-dir", "Where each run's artifacts and report go (default: a new temporary folder)."
)
@click.option(
    "--max-event-age",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Refuse an event whose signed timestamp is further than this from now (seconds).",
)
def serve_webhook(
    host: str,
    port: int,
    project_dir: Path,
    profiles_dir: Path | None,
    target: str | None,
    job_ids: tuple[str, ...],
    step: int | None,
    work_dir: Path | None,
    max_event_age: float,
) -> None:
    """Receive dbt Cloud job.run.completed webhooks and sync the cohorts that built.

    Reads DBT_CLOUD_WEBHOOK_SECRET, DBT_CLOUD_API_TOKEN, DBT_CLOUD_ACCOUNT_ID (optional) and
    DBT_CLOUD_HOST (default https://cloud.getdbt.com) from the environment, and the MoEngage
    settings as `dbt-moengage sync` does. Needs the [webhook] extra. Put it behind HTTPS.
    """
    try:
        from .server import WebhookReceiver
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in _EXTRA_MODULES:
            raise
        raise click.UsageError(
            f"serve-webhook needs the webhook extra, and {exc.name} is not installed: "
            f"{INSTALL_HINT}"
        ) from None
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    for job in job_ids:
        if not (job.isascii() and job.isdigit()):
            raise click.BadParameter(f"{job!r} is not a dbt Cloud job id", param_hint="--job-id")
    try:
        config = WebhookConfig(
            secret=_required_env(
                "DBT_CLOUD_WEBHOOK_SECRET", "the secret dbt Cloud shows for the webhook"
            ),
            api_token=_required_env(
                "DBT_CLOUD_API_TOKEN", "a dbt Cloud token that reads run artifacts"
            ),
            project_dir=project_dir,
            profiles_dir=profiles_dir,
            target=target,
            cloud_host=os.environ.get("DBT_CLOUD_HOST") or DEFAULT_CLOUD_HOST,
            account_id=os.environ.get("DBT_CLOUD_ACCOUNT_ID") or None,
            job_ids=frozenset(job_ids),
            step=step,
            work_dir=work_dir,
            max_event_age=max_event_age,
            environ=os.environ,
        )
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    receiver = WebhookReceiver(config, host, port)
    try:
        receiver.bind()
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or type(exc).__name__}; "
            "choose another --host or --port"
        ) from None

    jobs = ", ".join(sorted(job_ids)) or "every job"
    log.info("listening on %s for dbt Cloud runs of %s (%s)", receiver.url, jobs, config.cloud_host)
    # SIGTERM stops it as Ctrl-C does; two a moment apart (`timeout`) are one stop, a later
    # one exits at once (interrupt.py).
    says = "stopping the receiver (the sync in progress finishes; queued runs stay queued)"
    try:
        with stop_on_signals(says) as stop:
            receiver.serve_forever(stop.event)
    except MoEngageSyncError as exc:  # the profile, or the state in the warehouse
        raise click.ClickException(
            f"cannot keep the runs in the warehouse (moengage_webhook_runs): {exc}"
        ) from None

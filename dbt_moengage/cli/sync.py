"""`dbt-moengage sync` and `dbt-moengage build` (dbt build, then sync what built): they run
the pipeline, print the summary, write the JSON report and exit with its code; SIGINT and
SIGTERM stop them cleanly (interrupt.py)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Any, TextIO

import click

from .. import selection
from ..errors import ConfigError
from ..interrupt import stop_dbt_on_signals, stop_on_signals
from ..pipeline import SyncOptions, run_sync
from ..report import print_summary
from ..report.progress import Progress, make_progress
from ..settings import MoEngageSettings
from .group import (
    EXIT_USAGE,
    PROFILE,
    VARS,
    SelectorCommand,
    make_console,
    print_error,
    profiles_dir_option,
    project_dir_option,
    project_options,
    state_schema_option,
    sync_options,
    target_option,
)

ALLOW_LARGE_REMOVAL = click.option(
    "--allow-large-removal",
    is_flag=True,
    help="Let mirror cohorts remove more than max_remove_fraction of their members, or all.",
)
LOG_FORMAT = click.option(
    "--log-format",
    type=click.Choice(["auto", "text", "json"]),
    default="auto",
    show_default=True,
    help="auto: progress bars on a terminal, plain lines otherwise; json: one event per line.",
)


def run_and_report(options: SyncOptions, log_format: str) -> int:
    """Sync, print the summary, write the JSON report; return the exit code.

    SIGINT and SIGTERM stop the sync cleanly (see interrupt.py): the report is still
    written, and the exit code is 128 + the signal.
    """
    console = make_console()
    # In JSON mode stdout carries events only; the summary goes to stderr, as wide.
    summary_console = make_console(stderr=True) if log_format == "json" else console
    progress: Progress = Progress()
    with stop_on_signals() as stop:
        try:
            rate = MoEngageSettings.from_env(options.environ, require_credentials=False)
            progress = make_progress(log_format, console, rate.rate_limit_per_min)
            report = run_sync(options, progress, stop.event)
        except ConfigError as exc:
            progress.close()
            print_error(str(exc))
            progress.finished(None, None, error=str(exc))
            return EXIT_USAGE
        finally:
            progress.close()
    report.interrupted_by = stop.signum
    path = report.write(options.target_dir)
    print_summary(report, summary_console, path)
    progress.finished(report, path)
    return report.exit_code


@click.command(cls=SelectorCommand)
@project_options
@click.option(
    "--dry-run", is_flag=True, help="Validate and count what would be sent; send nothing."
)
@click.option(
    "--full-refresh",
    is_flag=True,
    help="Resend every member of the selected cohorts and rebuild their state.",
)
@click.option(
    "--only-built",
    is_flag=True,
    help="Sync only cohorts whose model built, and passed its tests, in target/run_results.json.",
)
@state_schema_option()
@ALLOW_LARGE_REMOVAL
@LOG_FORMAT
def sync(log_format: str, **kwargs: Any) -> None:
    """Sync every cohort model of the dbt project to MoEngage."""
    sys.exit(run_and_report(sync_options(**kwargs), log_format))


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@project_dir_option()
@profiles_dir_option()
@target_option()
@PROFILE
@VARS
@state_schema_option("Schema of the sync state tables.")
@ALLOW_LARGE_REMOVAL
@LOG_FORMAT
@click.argument("dbt_args", nargs=-1, type=click.UNPROCESSED)
def build(log_format: str, dbt_args: tuple[str, ...], **kwargs: Any) -> None:
    """Run `dbt build [DBT_ARGS]`, then sync the cohorts whose models built and passed tests.

    Everything after the options goes to dbt as is (e.g. --select tag:audiences).
    """
    from dbt.cli.main import dbtRunner

    args = selection.dbt_args(
        "build",
        kwargs["project_dir"],
        kwargs["profiles_dir"],
        kwargs["target"],
        kwargs["profile"],
        kwargs["vars"],
    )
    # In JSON mode stdout is the event stream: dbt's own log lines go to stderr.
    dbt_out = sys.stderr if log_format == "json" else sys.stdout
    outcome = None
    # Once stopped, dbt's lines (its cancellations, its stack trace) are not shown: the
    # signal handler said what happened, in one line.
    with (
        stop_dbt_on_signals() as stop,
        contextlib.suppress(KeyboardInterrupt),
        contextlib.redirect_stdout(_Hushable(dbt_out, stop.event)),
    ):
        outcome = dbtRunner().invoke([*args, *dbt_args])
    if stop.signum is not None or outcome is None:
        sys.exit(128 + (stop.signum or signal.SIGINT))
    if outcome.exception is not None and outcome.result is None:
        print_error(f"dbt build did not run: {outcome.exception}")
        sys.exit(EXIT_USAGE)
    try:
        options = sync_options(**kwargs, only_built=True)
    except ConfigError as exc:
        print_error(str(exc))
        sys.exit(EXIT_USAGE)
    code = run_and_report(options, log_format)
    sys.exit(max(code, 0 if outcome.success else 1))


class _Hushable:
    """A text stream that drops what is written to it once `hushed` is set."""

    def __init__(self, stream: TextIO, hushed: threading.Event) -> None:
        self.stream = stream
        self.hushed = hushed

    def write(self, text: str) -> int:
        """Write `text`, unless hushed."""
        if self.hushed.is_set():
            return len(text)
        return self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

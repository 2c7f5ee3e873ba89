"""The commands that look at the project and its state without syncing: `ls` (the cohort
models), `validate` (their config, and with --warehouse their relations), `exposures` (a
dbt exposure per cohort, written to a YAML file), `status` (each cohort's health from the
sync state) and `report` (an HTML page of each cohort's history)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from ..errors import ConfigError
from ..exposures import ExposureUpdate, default_owner, update_exposures
from ..manifest import load_manifest
from ..pipeline import discover_cohorts, validate
from ..report.listing import print_cohorts
from ..report.status import print_status
from ..report.tables import labelled
from ..state.health import collect_status
from .group import (
    EXIT_USAGE,
    SelectorCommand,
    file_option,
    make_console,
    print_error,
    project_options,
    state_schema_option,
    sync_options,
)


@click.command(name="ls", cls=SelectorCommand)
@project_options
def list_cohorts(**kwargs: Any) -> None:
    """List the cohort models: model, cohort id and name, mode, uid column, destination."""
    options = sync_options(**kwargs)
    try:
        discovery = discover_cohorts(options)
        near_misses = load_manifest(options.target_dir).near_misses()
    except ConfigError as exc:
        print_error(str(exc))
        sys.exit(EXIT_USAGE)
    print_cohorts(discovery.specs, make_console(), near_misses, discovery.problems)
    sys.exit(1 if discovery.problems else 0)


@click.command(name="validate", cls=SelectorCommand)
@project_options
@click.option(
    "--warehouse",
    "check_warehouse",
    is_flag=True,
    help="Also check each model's relation and uid column in the warehouse (no API call).",
)
def validate_command(check_warehouse: bool, **kwargs: Any) -> None:
    """Check every cohort's config and the MoEngage settings, without the API."""
    options = sync_options(**kwargs)
    console = make_console()
    try:
        found = validate(options, check_warehouse)
    except ConfigError as exc:
        print_error(str(exc))
        sys.exit(EXIT_USAGE)
    for warning in found.warnings:
        console.print(f"[yellow]warning[/yellow] {escape(warning)}", soft_wrap=True)
    for problem in found.problems:
        console.print(f"[red]invalid[/red] {escape(problem)}", soft_wrap=True)
    for conflict in found.unsettled:
        console.print(f"[yellow]unsettled[/yellow] {escape(conflict)}", soft_wrap=True)
    count = len(found.specs)
    if not found.warehouse_checked:
        console.print(
            "relations and uid columns were not checked: `validate --warehouse` checks them",
            soft_wrap=True,
        )
    if found.unsettled:
        # A sync refuses one of them at least (all, before any synced): not ok either way.
        console.print(
            f"{len(found.problems)} problem(s); {len(found.unsettled)} cohort(s) sharing a "
            "cohort_id or cohort_name, which the sync state settles (`validate --warehouse` "
            f"says which keep syncing); {count} cohort(s) valid",
            soft_wrap=True,
        )
        sys.exit(1)
    if found.problems:
        console.print(f"{len(found.problems)} problem(s); {count} cohort(s) valid")
        sys.exit(1)
    console.print(f"[green]ok[/green]: {count} cohort(s) valid")


@click.command(name="exposures", cls=SelectorCommand)
@project_options
@file_option(
    "--path",
    "exposures_path",
    "The YAML file, relative to --project-dir [default: <model-path>/moengage_exposures.yml].",
)
@click.option(
    "--owner-name",
    envvar="MOENGAGE_EXPOSURE_OWNER_NAME",
    show_envvar=True,
    default=None,
    help="Owner of cohorts without meta.moengage.owner [default: dbt-moengage].",
)
@click.option(
    "--owner-email",
    envvar="MOENGAGE_EXPOSURE_OWNER_EMAIL",
    show_envvar=True,
    default=None,
    help="Owner email of cohorts without meta.moengage.owner.",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if the file is out of date.")
def exposures_command(
    exposures_path: Path | None,
    owner_name: str | None,
    owner_email: str | None,
    check: bool,
    **kwargs: Any,
) -> None:
    """Write one dbt exposure per cohort, so dbt lineage shows where each audience goes."""
    options = sync_options(**kwargs)
    try:
        owner = default_owner(owner_name, owner_email)
        update = update_exposures(options, exposures_path, owner, check)
    except ConfigError as exc:
        print_error(str(exc))
        sys.exit(EXIT_USAGE)
    print_exposures(update, check, make_console())
    sys.exit(1 if update.problems or (check and update.changed) else 0)


def print_exposures(update: ExposureUpdate, check: bool, console: Console) -> None:
    """One line per exposure that changed (or would), then what it comes to."""
    shown = {"added", "updated", "removed", "yours"} if update.changed else {"yours"}
    for change in update.changes:
        if change.action in shown:
            verb = f"would be {change.action}" if check and change.action != "yours" else ""
            line = Text(f"{verb or change.action:<17} {change.name}")
            if change.model:
                line.append(f"  (model {change.model})", style="dim")
            console.print(line, soft_wrap=True)
    for warning in update.warnings:
        console.print(f"[yellow]warning[/yellow] {escape(warning)}", soft_wrap=True)
    for problem in update.problems:
        console.print(
            f"[red]invalid[/red] {escape(str(problem))}; its exposure is left as it was",
            soft_wrap=True,
        )
    counts = ", ".join(
        f"{update.count(action)} {action}"
        for action in ("added", "updated", "removed", "kept", "yours")
        if update.count(action)
    )
    where = escape(str(update.path))
    if not update.changed:
        total = sum(1 for c in update.changes if c.action in ("unchanged", "kept"))
        console.print(f"[green]up to date[/green]: {where} ({total} cohort exposure(s))")
    elif check:
        console.print(
            f"[red]out of date[/red]: {where} ({counts}); run `dbt-moengage exposures`",
            soft_wrap=True,
        )
    else:
        console.print(f"[green]wrote[/green] {where}: {counts or 'layout only'}", soft_wrap=True)
        console.print(
            "dbt reads it at its next parse: `dbt ls -s +exposure:<name>` lists what feeds one",
            soft_wrap=True,
        )


@click.command(name="status", cls=SelectorCommand)
@project_options
@state_schema_option()
@click.option(
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table: for people (stacked on a narrow console); json: for machines.",
)
def status_command(output: str, **kwargs: Any) -> None:
    """Show each cohort's members, last run and last success, from the sync state (read only).

    Exits 1 when a cohort's last run failed, was guarded or interrupted, or did not sync
    because its model failed in dbt, or a cohort's config is invalid; 0 otherwise (also when
    nothing was synced yet, while a sync holds a DuckDB file, and for cohorts left behind:
    state with no model in the project).
    """
    options = sync_options(**kwargs)
    try:
        found = collect_status(options)
    except ConfigError as exc:
        print_error(str(exc))
        sys.exit(EXIT_USAGE)
    if output == "json":
        click.echo(json.dumps(found.to_json(), indent=2))
    else:
        print_status(found, make_console())
    sys.exit(found.exit_code)


@click.command(name="report", cls=SelectorCommand)
@project_options
@state_schema_option()
@file_option(
    "--out", "out_path", "Where to write the page [default: <target>/moengage_report.html]."
)
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Runs per cohort to show (the latest).",
)
def report_command(out_path: Path | None, runs: int, **kwargs: Any) -> None:
    """Write a self-contained HTML page (no network needed) of each cohort's sync history:
    members over time, adds, removes and re-sends per run, failures and guards."""
    try:
        from ..report.html import REPORT_FILE, write_report
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in ("plotly", "narwhals", "packaging"):
            raise
        raise click.UsageError(
            f"report needs the report extra, and {exc.name} is not installed: "
            'pip install "dbt-moengage[report]"'
        ) from None
    options = sync_options(**kwargs)
    try:
        found = collect_status(options, history_runs=runs)
    except ConfigError as exc:
        print_error(str(exc))
        sys.exit(EXIT_USAGE)
    path = write_report(found, out_path or options.target_dir / REPORT_FILE)
    console = make_console()
    for problem in found.problems:
        console.print(labelled("invalid", "red", problem), soft_wrap=True)
    for note in found.notes:
        console.print(labelled("note", "yellow", note), soft_wrap=True)
    console.print(Text(f"report written to {path}"), soft_wrap=True)

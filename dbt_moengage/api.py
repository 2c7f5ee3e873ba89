"""The Python API: run a sync from an orchestrator (Airflow, Dagster, Prefect) without the CLI.

    from dbt_moengage import sync

    report = sync("/opt/dbt/analytics", target="prod", only_built=True)
    if not report.ok:
        raise RuntimeError(report.failure_summary())

`sync` does what `dbt-moengage sync` does, with the same arguments: it reads the dbt
project's manifest and profile, syncs the selected cohorts, writes
target/moengage_sync_results.json, and returns the typed `RunReport`. Problems that stop
the whole run before any request (no manifest, a profile dbt cannot render, missing
MoEngage credentials) raise `ConfigError`, the CLI's exit code 2; a cohort that fails does
not raise: it is in the report, and `report.ok` is False.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .pipeline import SyncOptions, run_sync
from .report import RunReport
from .report.progress import Progress


def sync(
    project_dir: str | Path = ".",
    *,
    target: str | None = None,
    profiles_dir: str | Path | None = None,
    profile: str | None = None,
    vars: Mapping[str, Any] | None = None,
    select: str | Iterable[str] = (),
    exclude: str | Iterable[str] = (),
    dry_run: bool = False,
    full_refresh: bool = False,
    only_built: bool = False,
    state_schema: str | None = None,
    allow_large_removal: bool = False,
    target_path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
    write_report: bool = True,
) -> RunReport:
    """Sync the project's cohorts to MoEngage, as `dbt-moengage sync` does; return the report.

    `select`/`exclude` take dbt selection syntax, as one string ("tag:daily +audience")
    or a list. `environ` replaces os.environ as the source of MOENGAGE_* settings and of
    the profile's env_var() (the default reads the process environment). Setting `stop`
    stops the run cleanly: requests in flight finish and are recorded, the rest is
    reported `interrupted`.
    """
    options = SyncOptions(
        project_dir=Path(project_dir),
        profiles_dir=None if profiles_dir is None else Path(profiles_dir),
        target=target,
        profile=profile,
        vars=dict(vars or {}),
        select=_selectors(select),
        exclude=_selectors(exclude),
        dry_run=dry_run,
        full_refresh=full_refresh,
        only_built=only_built,
        state_schema=state_schema,
        allow_large_removal=allow_large_removal,
        target_path=None if target_path is None else Path(target_path),
        environ=dict(os.environ if environ is None else environ),
    )
    report = run_sync(options, Progress(), stop)
    if write_report:
        report.write(options.target_dir)
    return report


def _selectors(value: str | Iterable[str]) -> tuple[str, ...]:
    """dbt's selector words, from one string or a list of them."""
    chunks = [value] if isinstance(value, str) else list(value)
    return tuple(word for chunk in chunks for word in chunk.split())

"""The pipeline wired together: manifest -> cohorts -> warehouse -> packing -> client -> report."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

from .client import MoEngageClient, Tally
from .cohorts import CohortSpec, discover
from .errors import (
    CohortError,
    CohortSpecError,
    ConfigError,
    TransientError,
    WorkspaceFatal,
)
from .manifest import load_manifest
from .packing import ADD, BodyPacker
from .report import DRY_RUN, FAILED, INVALID, SKIPPED, SYNCED, CohortResult, RunReport
from .settings import MoEngageSettings
from .warehouse import Warehouse, connect, load_profile_target


@dataclass
class SyncOptions:
    """What the user asked for on the command line."""

    project_dir: Path = Path(".")
    profiles_dir: Path | None = None
    target: str | None = None
    select: tuple[str, ...] = ()
    dry_run: bool = False
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def target_dir(self) -> Path:
        """dbt's target folder (DBT_TARGET_PATH, else <project>/target)."""
        custom = self.environ.get("DBT_TARGET_PATH")
        if custom:
            path = Path(custom)
            return path if path.is_absolute() else self.project_dir / path
        return self.project_dir / "target"


def run_sync(options: SyncOptions, console: Console) -> RunReport:
    """Sync every selected cohort; config problems raise ConfigError before any request."""
    report = RunReport(run_id=uuid.uuid4().hex, started_at=_now(), dry_run=options.dry_run)
    manifest = load_manifest(options.target_dir)
    nodes = list(manifest.cohort_nodes())
    unknown = _unknown_selection(options.select, [n.name for n in nodes])
    if unknown:
        raise ConfigError(
            f"--select {' '.join(unknown)}: no cohort model of that name in "
            f"{manifest.path}; cohort models: {', '.join(n.name for n in nodes) or 'none'}"
        )
    discovery = discover(nodes, options.select)
    settings = MoEngageSettings.from_env(options.environ, require_credentials=not options.dry_run)
    target = load_profile_target(
        options.project_dir, options.profiles_dir, options.target, options.environ
    )

    report.results.extend(_invalid_results(discovery.problems, console))
    if not discovery.specs:
        console.print("no valid cohort to sync")
    with connect(target, options.project_dir) as warehouse:
        specs = []
        for spec in discovery.specs:
            try:
                warehouse.check_uid_column(spec)
                specs.append(spec)
            except CohortError as exc:
                console.print(f"[red]invalid cohort[/red] {exc}", soft_wrap=True)
                report.results.append(_invalid(spec, exc))
        client = None if options.dry_run else MoEngageClient(settings)
        try:
            fatal: WorkspaceFatal | None = None
            for spec in specs:
                if fatal is not None:
                    report.results.append(_skipped(spec, fatal))
                    continue
                result, fatal = sync_cohort(spec, warehouse, client, settings)
                report.results.append(result)
                _print_result(result, console)
        finally:
            if client is not None:
                client.close()
    report.finished_at = _now()
    return report


def sync_cohort(
    spec: CohortSpec,
    warehouse: Warehouse,
    client: MoEngageClient | None,
    settings: MoEngageSettings,
) -> tuple[CohortResult, WorkspaceFatal | None]:
    """Send one cohort's uids (or, with no client, count what would be sent)."""
    result = CohortResult(model=spec.model, cohort_id=spec.cohort_id, cohort_name=spec.cohort_name)
    started = time.monotonic()
    tally = Tally()
    fatal: WorkspaceFatal | None = None
    try:
        stats = warehouse.audience_stats(spec)
        result.uids_total = stats.distinct
        result.dropped = stats.dropped()
        packer = BodyPacker(
            action=ADD,
            partner=settings.partner,
            cohort_name=spec.cohort_name,
            cohort_id=spec.cohort_id,
            description=spec.description,
            max_bytes=settings.max_body_bytes,
        )
        bodies = packer.pack(warehouse.stream_uids(spec))
        if client is None:
            result.planned_requests = sum(1 for _ in bodies)
            result.status = DRY_RUN
        else:
            client.send_all(bodies, tally)
            result.status = SYNCED
    except WorkspaceFatal as exc:
        fatal = exc
        result.error = str(exc)
    except (CohortError, TransientError) as exc:
        result.error = str(exc)
    finally:
        result.requests = tally.requests
        result.retries = tally.retries
        result.uids_sent = tally.uids_accepted
        if result.status == FAILED:
            result.uids_unsynced = max(result.uids_total - tally.uids_accepted, 0)
        result.seconds = round(time.monotonic() - started, 3)
    return result, fatal


def _invalid_results(problems: Iterable[CohortSpecError], console: Console) -> list[CohortResult]:
    by_model: dict[str, list[CohortSpecError]] = {}
    for problem in problems:
        by_model.setdefault(problem.model, []).append(problem)
        console.print(f"[red]invalid cohort[/red] {problem}", soft_wrap=True)
    return [
        CohortResult(
            model=model,
            cohort_id=None,
            cohort_name=None,
            status=INVALID,
            error="; ".join(str(p) for p in found),
        )
        for model, found in by_model.items()
    ]


def _invalid(spec: CohortSpec, exc: CohortError) -> CohortResult:
    return CohortResult(
        model=spec.model,
        cohort_id=spec.cohort_id,
        cohort_name=spec.cohort_name,
        status=INVALID,
        error=str(exc),
    )


def _skipped(spec: CohortSpec, fatal: WorkspaceFatal) -> CohortResult:
    return CohortResult(
        model=spec.model,
        cohort_id=spec.cohort_id,
        cohort_name=spec.cohort_name,
        status=SKIPPED,
        error=f"not sent: the workspace refused an earlier request ({fatal})",
    )


def _print_result(result: CohortResult, console: Console) -> None:
    if result.status == SYNCED:
        console.print(
            f"[green]synced[/green] {result.model} -> {result.cohort_id}: "
            f"{result.uids_sent:,} uids in {_plural(result.requests, 'request')} "
            f"({result.seconds:.1f} s)"
        )
    elif result.status == DRY_RUN:
        console.print(
            f"[cyan]dry run[/cyan] {result.model} -> {result.cohort_id}: would send "
            f"{result.uids_total:,} uids in {_plural(result.planned_requests, 'request')}"
        )
    else:
        console.print(f"[red]failed[/red] {result.model}: {result.error}", soft_wrap=True)


def _unknown_selection(select: Iterable[str], names: list[str]) -> list[str]:
    return [s for s in select if s not in names and not s.startswith("model.")]


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")

"""One destination (a workspace with its own quota) in a run: its settings, its client and
pacer, the quota shared with other runners, its cohorts in order."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import replace

from ..client import MoEngageClient
from ..cohorts import CohortSpec, Discovery
from ..errors import WorkspaceFatal
from ..report import INTERRUPTED, INVALID, SKIPPED, CohortResult, RunReport
from ..report.progress import Progress
from ..settings import MoEngageSettings
from ..state import StateStore
from ..state.peers import sharing_quota
from ..warehouse import Engine
from .cohort import CohortSync
from .options import Destinations, SyncOptions, state_key
from .validation import result_of


def usable_destinations(
    discovery: Discovery, read: Destinations, report: RunReport, progress: Progress
) -> tuple[dict[str | None, MoEngageSettings], Discovery]:
    """Settings per destination the cohorts name, and the cohorts whose destination is set.

    The default destination's settings missing is a configuration error (exit 2); a named
    destination's only fails its own cohorts.
    """
    every = [*discovery.specs, *discovery.contested]
    senders, refused = read.named_by(every)
    for spec in every:
        if spec.destination in refused:
            result = result_of(spec, INVALID, refused[spec.destination])
            report.results.append(result)
            progress.problem(f"model '{spec.model}': {refused[spec.destination]}")
    return senders, replace(
        discovery,
        specs=[s for s in discovery.specs if s.destination not in refused],
        contested=[s for s in discovery.contested if s.destination not in refused],
    )


def sync_destination(
    specs: list[CohortSpec],
    settings: MoEngageSettings,
    warehouse: Engine,
    state: StateStore,
    options: SyncOptions,
    run_id: str,
    progress: Progress,
    stop: threading.Event,
) -> list[CohortResult]:
    """The cohorts of one destination, in order, through one client and its pacer (none in
    a dry run), its quota shared with the other runners sending to the workspace."""
    client = None
    sharing: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if not options.dry_run:
        client = MoEngageClient(settings, stop=stop, on_wait=progress.waiting)
        sharing = _sharing_quota(warehouse, settings, run_id, client, progress)
    results: list[CohortResult] = []
    fatal: WorkspaceFatal | None = None
    try:
        with sharing:
            for spec in specs:
                result = _not_started(spec, stop, fatal, client)
                if result is None:
                    job = CohortSync(
                        spec,
                        warehouse,
                        state,
                        client,
                        settings,
                        run_id,
                        progress,
                        allow_large_removal=options.allow_large_removal,
                        stop=stop,
                    )
                    if client is None:
                        result = job.dry_run(options.full_refresh)
                    else:
                        result = job.run(options.full_refresh)
                    fatal = job.fatal
                results.append(result)
                progress.cohort_finished(result)
    finally:
        if client is not None:
            client.close()
    return results


def _not_started(
    spec: CohortSpec,
    stop: threading.Event,
    fatal: WorkspaceFatal | None,
    client: MoEngageClient | None,
) -> CohortResult | None:
    """Why the cohort is not started: the run was stopped, or its destination failed for
    every cohort or past its retry budget (the next run sends what this one could not)."""
    if stop.is_set():
        return result_of(spec, INTERRUPTED, "not started: the run was interrupted")
    if fatal is not None:
        return result_of(
            spec, SKIPPED, f"not sent: the destination failed for every cohort ({fatal})"
        )
    if client is not None and client.down is not None:
        return result_of(spec, SKIPPED, f"not attempted: {client.down}")
    return None


def _sharing_quota(
    warehouse: Engine,
    settings: MoEngageSettings,
    run_id: str,
    client: MoEngageClient,
    progress: Progress,
) -> contextlib.AbstractContextManager[object]:
    """The workspace's quota shared with the other runners sending to it (state/peers.py)."""
    workspace = settings.workspace_id
    limit = client.pacer.limit

    def changed(others: int, share: int) -> None:
        if others:
            runners = "runner is" if others == 1 else "runners are"
            # `share` is what this beat allowed (less while the others' windows drain);
            # the fair share is what the run settles at.
            progress.message(
                f"workspace '{workspace}': {others} other {runners} sending to it; this run "
                f"paces to its share of the {limit} requests/min quota: at most "
                f"{limit // (others + 1)}, {share} for now"
            )
        else:
            progress.message(f"workspace '{workspace}': no other runner is sending to it now")

    def failed(error: str) -> None:
        progress.problem(
            f"workspace '{workspace}': cannot share its quota with other runners ({error}); "
            f"this run paces to all of it ({limit} requests/min)"
        )

    return sharing_quota(warehouse, state_key(settings), run_id, client.pacer, changed, failed)

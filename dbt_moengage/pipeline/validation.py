"""Before any request: the cohorts of the manifest, selected and validated, the
warehouse checked for each model's relation and uid column; `validate` runs every check a
sync makes without the API."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from ..cohorts import CohortSpec, Discovery, Owner, declared_mode, discover, doubtful_names
from ..errors import (
    CohortError,
    CohortSpecError,
    ConfigError,
    ManifestError,
    RelationMissing,
    SettingsError,
    UnsettledConflict,
    WarehouseError,
)
from ..manifest import Manifest, build_outcome, load_manifest, load_run_results
from ..notify import NotifySettings
from ..report import INVALID, SKIPPED, CohortResult, RunReport
from ..report.progress import Progress
from ..selection import resolve as resolve_selection
from ..selection import shown as shown_selection
from ..settings import MoEngageSettings, data_center_warning
from ..state import StateStore
from ..state.history import StateHistory
from ..state.left_behind import default_id_warnings, find_left_behind
from ..warehouse import Engine, ProfileTarget, connect
from .options import Destinations, SyncOptions, cohort_defaults, profile_target, state_key


def discover_cohorts(
    options: SyncOptions, manifest: Manifest | None = None, settle: bool = True
) -> Discovery:
    """The selected cohorts of the manifest, validated (no warehouse, no API).

    With `settle`, cohorts sharing a cohort_id or cohort_name are all refused, as nothing
    says which is live; a sync settles them with the state instead.
    """
    manifest = manifest or load_manifest(options.target_dir)
    nodes = list(manifest.cohort_nodes())
    selected = select_cohorts(options, manifest, [n.unique_id for n in nodes])
    discovery = discover(nodes, selected, cohort_defaults(options.environ))
    return discovery.settle() if settle else discovery


def select_cohorts(
    options: SyncOptions, manifest: Manifest, cohort_ids: list[str]
) -> tuple[str, ...]:
    """Unique ids of the cohorts `--select`/`--exclude` pick (all when neither is given),
    resolved against the manifest being synced."""
    if not options.select and not options.exclude:
        return ()
    chosen = resolve_selection(
        manifest.path, options.project_dir, options.select, options.exclude, options.environ
    )
    picked = tuple(uid for uid in cohort_ids if uid in chosen)
    if not picked:
        names = ", ".join(uid.rsplit(".", 1)[-1] for uid in cohort_ids) or "none"
        raise ConfigError(
            f"{shown_selection(options.select, options.exclude)} selects no cohort model "
            f"({len(chosen)} models selected); cohort models: {names}"
        )
    return picked


def check_built_for(manifest: Manifest, target: ProfileTarget) -> None:
    """Refuse a manifest dbt wrote for another kind of warehouse than the target the run
    reads: none of its relations can be there."""
    built = manifest.adapter_type
    if built is None or built == target.type:
        return
    raise ManifestError(
        f"{manifest.path} was built for a {built} warehouse, and this run reads "
        f"{target.where}, a {target.type} warehouse, so no model of the manifest is there: "
        f"build (or `dbt parse`) with the target the sync reads (`dbt build --target "
        f"{target.target_name}`), or sync with --target set to the one that built it"
    )


def checked_column(
    warehouse: Engine, spec: CohortSpec, manifest: Manifest, target: ProfileTarget
) -> CohortSpec:
    """The spec with its uid column as the warehouse spells it. A missing relation that the
    manifest puts in another database than the target's says so: the manifest was built
    for another target, and building the model in this one is not the fix."""
    try:
        column = warehouse.check_uid_column(spec)
    except RelationMissing:
        built = manifest.target_database_of(spec.unique_id)
        reads = str(getattr(target.credentials, "database", "") or "")
        if built is None or not reads or built.casefold() == reads.casefold():
            raise
        raise RelationMissing(
            f"model '{spec.model}': relation {spec.relation_name} is not in the warehouse "
            f"this run reads: {manifest.path} was built for database '{built}', and "
            f"{target.where} reads database '{reads}'. Build (or `dbt parse`) with the "
            f"target the sync reads (`dbt build --target {target.target_name}`), or sync "
            "with --target set to the one that built the manifest"
        ) from None
    return replace(spec, uid_column=column.name)


@dataclass
class Validation:
    """What `validate` found: the cohorts that would sync, problems, and warnings."""

    specs: list[CohortSpec]
    problems: list[str]
    warnings: list[str]
    warehouse_checked: bool = False
    # Cohorts sharing a cohort_id or cohort_name, judged without the sync state: which of
    # them keeps syncing, the state says (`--warehouse` reads it).
    unsettled: list[str] = field(default_factory=list)


def validate(options: SyncOptions, check_warehouse: bool = False) -> Validation:
    """Every check a sync makes before sending, without the API; the warehouse if asked.

    Settings of the default destination that are missing or wrong raise SettingsError
    (exit 2, as `sync` does); a named destination's are problems of its cohorts.
    """
    manifest = load_manifest(options.target_dir)
    discovery = discover_cohorts(options, manifest, settle=False)
    problems: list[str] = []
    warnings = manifest.near_misses()
    read = Destinations(options.environ, require_credentials=True)
    senders, refused = read.named_by([*discovery.specs, *discovery.contested])
    problems.extend(refused.values())
    for name in senders:
        warning = data_center_warning(options.environ, name)
        if warning:
            warnings.append(warning)
    try:
        NotifySettings.from_env(options.environ)
    except SettingsError as exc:
        warnings.append(f"{exc}; no notification would be sent")
    if not check_warehouse:
        discovery = discovery.settle()
        found = discovery.problems
        problems[:0] = [str(p) for p in found if not isinstance(p, UnsettledConflict)]
        unsettled = [str(p) for p in found if isinstance(p, UnsettledConflict)]
        warnings.extend(default_id_warnings(manifest.cohort_nodes(), discovery.specs))
        warnings.extend(doubtful_names(discovery.specs))
        return Validation(discovery.specs, problems, warnings, unsettled=unsettled)
    target = profile_target(options)
    check_built_for(manifest, target)
    state_schema = options.state_schema or options.environ.get("MOENGAGE_STATE_SCHEMA") or None
    with connect(
        target, options.project_dir, state_schema=state_schema, read_only=True
    ) as warehouse:
        state = StateStore(warehouse)
        status = state.prepare(create=False)
        if status.note:
            warnings.append(status.note)
        discovery = discovery.settle(ownership(state, senders))
        problems[:0] = [str(p) for p in discovery.problems]
        specs = []
        for spec in discovery.specs:
            try:
                spec = checked_column(warehouse, spec, manifest, target)
                specs.append(spec)
                long = warehouse.long_uids(spec)
                if long is not None:
                    warnings.append(long.message(spec))
            except CohortError as exc:
                problems.append(str(exc))
        keys = {destination: state_key(settings) for destination, settings in senders.items()}
        try:
            left = find_left_behind(StateHistory(warehouse), keys, manifest.cohort_nodes())
            warnings.extend(c.message() for c in left)
        except WarehouseError as exc:
            warnings.append(f"could not look for cohorts left behind in the sync state: {exc}")
    warnings.extend(default_id_warnings(manifest.cohort_nodes(), discovery.specs))
    warnings.extend(doubtful_names(discovery.specs))
    return Validation(specs, problems, warnings, warehouse_checked=True)


def ownership(
    state: StateStore, senders: Mapping[str | None, MoEngageSettings]
) -> dict[tuple[str | None, str], Owner]:
    """(destination, cohort_id) -> what the state says of it, for settling conflicts."""
    found: dict[tuple[str | None, str], Owner] = {}
    for destination, settings in senders.items():
        for cohort_id, owner in state.owners(state_key(settings)).items():
            found[(destination, cohort_id)] = owner
    return found


def only_built(
    manifest: Manifest, discovery: Discovery, report: RunReport, progress: Progress
) -> Discovery:
    """Keep the cohorts whose model built, and passed its tests, in run_results.json."""
    statuses = load_run_results(manifest.path.parent)
    kept: list[CohortSpec] = []
    for spec in discovery.specs:
        outcome = build_outcome(manifest, spec.unique_id, statuses)
        if outcome.built:
            kept.append(spec)
            continue
        result = result_of(spec, SKIPPED, f"not synced: {outcome.reason}")
        # Left out of the invocation (`build --select`) is the user's choice, not a failure.
        result.unselected = not outcome.selected
        report.results.append(result)
        progress.cohort_finished(result)
    return Discovery(specs=kept, problems=discovery.problems)


def invalid_results(
    problems: Iterable[CohortSpecError], progress: Progress, manifest: Manifest
) -> list[CohortResult]:
    """One `invalid` result per model with problems, in the mode its config declares."""
    by_model: dict[str, list[CohortSpecError]] = {}
    for problem in problems:
        by_model.setdefault(problem.model, []).append(problem)
        progress.problem(str(problem))
    modes = {node.name: declared_mode(node.meta) for node in manifest.cohort_nodes()}
    return [
        CohortResult(
            model=model,
            cohort_id=None,
            cohort_name=None,
            mode=modes.get(model, "-"),
            status=INVALID,
            error="; ".join(str(p) for p in found),
        )
        for model, found in by_model.items()
    ]


def result_of(spec: CohortSpec, status: str, error: str) -> CohortResult:
    return CohortResult(
        model=spec.model,
        cohort_id=spec.cohort_id,
        cohort_name=spec.cohort_name,
        mode=spec.mode,
        status=status,
        error=error,
    )

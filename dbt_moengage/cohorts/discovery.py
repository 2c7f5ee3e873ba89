"""Every cohort of a manifest: the specs validated together, and the conflicts between
them (two models sharing a cohort_id or a cohort_name in one destination) found, then
settled from the sync state: the cohort that owns a conflict keeps syncing, the others are
refused."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import CohortSpecError, UnsettledConflict
from ..manifest import ModelNode
from .parse import parse_cohort
from .spec import CohortDefaults, CohortSpec


@dataclass(frozen=True)
class Conflict:
    """Cohorts of one destination sharing a cohort_id or a cohort_name, selected or not."""

    field: str  # "cohort_id" or "cohort_name"
    value: str
    destination: str | None
    specs: tuple[CohortSpec, ...]


@dataclass(frozen=True)
class Owner:
    """What the sync state says of a live cohort: the model that fed it, the name it got."""

    model: str | None
    name_sent: str | None = None


# (destination, cohort_id) -> what the state says of it.
Ownership = Mapping[tuple[str | None, str], Owner]


@dataclass(frozen=True)
class Discovery:
    """Every cohort found in a manifest: the valid specs and the problems, all at once.

    `contested` are selected, valid specs caught in a conflict: `settle` decides, from the
    sync state, which of them keep syncing (the live one) and which are refused.
    """

    specs: list[CohortSpec]
    problems: list[CohortSpecError]
    contested: list[CohortSpec] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    # unique_ids in the manifest's order, which the settled specs keep.
    order: tuple[str, ...] = ()

    def settle(self, ownership: Ownership | None = None) -> Discovery:
        """Contested specs that own every conflict they are in sync; the others are refused.

        A conflict's owner is the one cohort with state in the workspace: the model that
        last synced its cohort_id, or the cohort MoEngage last got that cohort_name for.
        Before any of them synced (state read, no owner) every contested cohort is refused.
        Without `ownership` (the state not read) every contested cohort is refused too, as
        an UnsettledConflict: the state may well let one of them keep syncing.
        """
        owners = ownership or {}
        specs, problems = list(self.specs), list(self.problems)
        for spec in self.contested:
            lost = [c for c in self.conflicts if spec in c.specs and _owner(c, owners) != spec]
            if lost:
                problems.extend(
                    _conflict_problem(spec, c, _owner(c, owners), ownership is not None)
                    for c in lost
                )
            else:
                specs.append(spec)
        position = {unique_id: i for i, unique_id in enumerate(self.order)}
        specs.sort(key=lambda spec: position.get(spec.unique_id, len(position)))
        return Discovery(specs=specs, problems=problems, order=self.order)


def _owner(conflict: Conflict, owners: Ownership) -> CohortSpec | None:
    """The one spec of a conflict the state says is live, if exactly one is."""
    live = []
    for spec in conflict.specs:
        owner = owners.get((conflict.destination, spec.cohort_id))
        if owner is None:
            continue
        if conflict.field == "cohort_id" and owner.model == spec.model:
            live.append(spec)
        if conflict.field == "cohort_name" and owner.name_sent == spec.cohort_name:
            live.append(spec)
    return live[0] if len(live) == 1 else None


def _conflict_problem(
    spec: CohortSpec, conflict: Conflict, owner: CohortSpec | None, state_read: bool = True
) -> CohortSpecError:
    where = f"destination '{conflict.destination}'" if conflict.destination else "the workspace"
    others = ", ".join(s.model for s in conflict.specs if s is not spec)
    if owner is not None:
        problem = (
            f"is already used in {where} by model {owner.model}, which keeps syncing; "
            "this newer cohort is refused"
        )
    else:
        problem = f"is shared with model(s) {others} in {where}"
    fix = (
        "give each model its own cohort_id"
        if conflict.field == "cohort_id"
        else "give each cohort its own cohort_name (a folder's +meta gives every model the same)"
    )
    if not state_read:
        # The rule is the sync's (`settle` with the state), which was not read here.
        problem += (
            "; which of them keeps syncing depends on the sync state: a sync keeps the "
            "one that last synced it and refuses the others (all of them, before any "
            "synced); `dbt-moengage validate --warehouse` reads the state"
        )
        return UnsettledConflict(spec.model, conflict.field, conflict.value, problem, fix)
    return CohortSpecError(spec.model, conflict.field, conflict.value, problem, fix)


def discover(
    nodes: Iterable[ModelNode],
    select: Iterable[str] = (),
    defaults: CohortDefaults | None = None,
) -> Discovery:
    """Validate every cohort node (those named in `select`, when given).

    Shared cohort_ids and cohort_names are checked across every cohort of a destination,
    selected or not: two models feeding one segment is wrong whichever of them this run
    syncs. Cohorts caught in a conflict are `contested`: `Discovery.settle` decides.
    """
    wanted = set(select)

    def is_selected(node: ModelNode) -> bool:
        return not wanted or node.name in wanted or node.unique_id in wanted

    parsed = [(node, *parse_cohort(node, defaults)) for node in nodes]
    problems = [p for node, _, found in parsed if is_selected(node) for p in found]
    valid = [spec for _, spec, _ in parsed if spec is not None]
    conflicts = [
        *_conflicts(valid, "cohort_id", lambda spec: spec.cohort_id),
        *_conflicts(valid, "cohort_name", lambda spec: spec.cohort_name),
    ]
    in_conflict = {spec.unique_id for c in conflicts for spec in c.specs}
    specs: list[CohortSpec] = []
    contested: list[CohortSpec] = []
    for node, spec, _ in parsed:
        if spec is None or not is_selected(node):
            continue
        (contested if spec.unique_id in in_conflict else specs).append(spec)
    return Discovery(
        specs=specs,
        problems=problems,
        contested=contested,
        conflicts=conflicts,
        order=tuple(node.unique_id for node, _, _ in parsed),
    )


def _conflicts(
    specs: list[CohortSpec], field: str, value: Callable[[CohortSpec], str]
) -> list[Conflict]:
    """Groups of specs sharing a value of `field` within one destination."""
    groups: dict[tuple[str | None, str], list[CohortSpec]] = defaultdict(list)
    for spec in specs:
        groups[(spec.destination, value(spec))].append(spec)
    return [
        Conflict(field, key[1], key[0], tuple(group))
        for key, group in groups.items()
        if len(group) > 1
    ]

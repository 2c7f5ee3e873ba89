"""Stage 2: turn `meta.moengage` blocks into validated cohort specs."""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import CohortSpecError, UnsettledConflict
from .manifest import ModelNode

RESTRICTED_NAME_CHARS = '|*?\\:<>=$"'
# A name names something when it holds a letter, a digit or a symbol (an emoji counts);
# punctuation, spaces and invisible characters alone ('...', a zero-width space) do not.
NAMING_CATEGORIES = ("L", "N", "S")
# Letters and symbols that render as nothing (Hangul fillers, the braille blank).
BLANK_LOOKING = "\u115f\u1160\u3164\uffa0\u2800"
# Characters a MoEngage partner's documentation says MoEngage refuses in a cohort's name;
# MoEngage's own reference does not list them, so `validate` warns and the name is sent.
DOUBTFUL_NAME_CHARS = "()"
MODES = ("add", "mirror")
KNOWN_KEYS = (
    "cohort_name",
    "cohort_id",
    "description",
    "uid_column",
    "mode",
    "max_uid_length",
    "destination",
    "resend_after",
    "max_remove_fraction",
    "owner",
    "alert_change_fraction",
)
_DESTINATION_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
DEFAULT_UID_COLUMN = "uid"
MAX_COHORT_ID_LENGTH = 255
# MoEngage drops uids it does not know yet; members are sent again this long after their
# last acceptance, so a user whose profile appears later still joins (docs/configuration.md).
DEFAULT_RESEND_AFTER = 7 * 86_400
DEFAULT_MAX_REMOVE_FRACTION = 0.5
# A notification's `size_changed` when the model's distinct uids move by more than this
# share since the cohort's last successful run, up or down (notify.py).
DEFAULT_ALERT_CHANGE_FRACTION = 0.5
_DURATION_RE = re.compile(r"\A([0-9]+)\s*([smhdw])\Z")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 7 * 86_400}
DURATION_HINT = "a duration such as 30m, 12h, 7d or 1s; 0 for every run, off for never"


@dataclass(frozen=True)
class CohortOwner:
    """`owner: {name, email}` of a cohort; at least one is set, as dbt's exposures need."""

    name: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class CohortSpec:
    """One cohort to sync: which model feeds which MoEngage custom segment, and how."""

    model: str
    unique_id: str
    relation_name: str
    cohort_name: str
    cohort_id: str
    description: str
    uid_column: str
    mode: str = "add"
    max_uid_length: int | None = None
    destination: str | None = None
    # Seconds after MoEngage last accepted a member before it is sent again; None: never.
    resend_after: int | None = DEFAULT_RESEND_AFTER
    # Mirror mode refuses a run removing more than this share of the current members.
    max_remove_fraction: float = DEFAULT_MAX_REMOVE_FRACTION
    # Who answers for the audience: the owner of its dbt exposure (`exposures` command).
    owner: CohortOwner | None = None
    # A notification's `size_changed` when the model's size moves by more than this share.
    alert_change_fraction: float = DEFAULT_ALERT_CHANGE_FRACTION


def parse_duration(value: object) -> int | None:
    """Seconds in `30m`, `12h`, `7d`, `1s` or `0`; None for `off`. ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        if value == 0:
            return 0
        raise ValueError(value)
    if not isinstance(value, str):
        raise ValueError(value)
    text = value.strip().lower()
    if text in ("off", "never"):
        return None
    if text == "0":
        return 0
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError(value)
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_duration(seconds: int | None) -> str:
    """The shortest way to write a duration parse_duration reads back."""
    if seconds is None:
        return "off"
    if seconds == 0:
        return "0"
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class CohortDefaults:
    """Run-wide defaults a cohort's meta may override (from the environment)."""

    resend_after: int | None = DEFAULT_RESEND_AFTER


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


def declared_mode(meta: Any) -> str:
    """The mode a cohort's meta declares (add when it names none); `-` when it is no mode."""
    mode = meta.get("mode", "add") if isinstance(meta, dict) else None
    return str(mode) if mode in MODES else "-"


def parse_cohort(
    node: ModelNode, defaults: CohortDefaults | None = None
) -> tuple[CohortSpec | None, list[CohortSpecError]]:
    """Validate one model's `moengage` meta; return the spec or every problem found."""
    defaults = defaults or CohortDefaults()
    problems: list[CohortSpecError] = []
    meta = node.meta
    if not isinstance(meta, dict):
        problems.append(
            CohortSpecError(
                node.name, "", meta, "must be a mapping", "e.g. {cohort_name: '.My Cohort'}"
            )
        )
        return None, problems

    for key in sorted(set(meta) - set(KNOWN_KEYS), key=str):
        close = difflib.get_close_matches(str(key), KNOWN_KEYS, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(KNOWN_KEYS)}"
        problems.append(CohortSpecError(node.name, str(key), meta[key], "unknown key", hint))

    cohort_name = meta.get("cohort_name")
    if cohort_name is None:
        problems.append(
            CohortSpecError(
                node.name, "cohort_name", None, "is required", "e.g. cohort_name: '.High Value'"
            )
        )
    else:
        problems.extend(_check_cohort_name(node.name, cohort_name))

    cohort_id = meta.get("cohort_id", node.name)
    if not isinstance(cohort_id, str) or not cohort_id.strip():
        problems.append(
            CohortSpecError(node.name, "cohort_id", cohort_id, "must be a non-empty string")
        )
    elif len(cohort_id) > MAX_COHORT_ID_LENGTH or cohort_id != cohort_id.strip():
        problems.append(
            CohortSpecError(
                node.name,
                "cohort_id",
                cohort_id,
                f"must have no surrounding spaces and at most {MAX_COHORT_ID_LENGTH} characters",
            )
        )

    description = meta.get("description") or node.description or f"Built by dbt model {node.name}"
    if not isinstance(description, str):
        problems.append(CohortSpecError(node.name, "description", description, "must be a string"))

    uid_column = meta.get("uid_column", DEFAULT_UID_COLUMN)
    if not isinstance(uid_column, str) or not uid_column.strip():
        problems.append(
            CohortSpecError(node.name, "uid_column", uid_column, "must be a non-empty column name")
        )

    mode = meta.get("mode", "add")
    if mode not in MODES:
        problems.append(
            CohortSpecError(
                node.name, "mode", mode, "unknown mode", f"supported: {', '.join(MODES)}"
            )
        )

    max_uid_length = meta.get("max_uid_length")
    if max_uid_length is not None and (
        isinstance(max_uid_length, bool)
        or not isinstance(max_uid_length, int)
        or max_uid_length < 1
    ):
        problems.append(
            CohortSpecError(
                node.name,
                "max_uid_length",
                max_uid_length,
                "must be a positive whole number of characters",
                "or leave it out: MoEngage documents no limit",
            )
        )

    destination = meta.get("destination")
    if destination is not None and (
        not isinstance(destination, str) or not _DESTINATION_RE.match(destination)
    ):
        problems.append(
            CohortSpecError(
                node.name,
                "destination",
                destination,
                "must be a name of letters, digits and _ starting with a letter",
                "its credentials come from MOENGAGE_<NAME>_WORKSPACE_ID and _API_KEY",
            )
        )

    resend_after = defaults.resend_after
    if "resend_after" in meta:
        try:
            resend_after = parse_duration(meta["resend_after"])
        except ValueError:
            problems.append(
                CohortSpecError(
                    node.name, "resend_after", meta["resend_after"], "not a duration", DURATION_HINT
                )
            )

    max_remove_fraction = meta.get("max_remove_fraction", DEFAULT_MAX_REMOVE_FRACTION)
    if (
        isinstance(max_remove_fraction, bool)
        or not isinstance(max_remove_fraction, int | float)
        or not 0 < max_remove_fraction <= 1
    ):
        problems.append(
            CohortSpecError(
                node.name,
                "max_remove_fraction",
                max_remove_fraction,
                "must be a number above 0 and at most 1",
                "the share of current members one mirror run may remove, e.g. 0.5",
            )
        )

    alert_change_fraction = meta.get("alert_change_fraction", DEFAULT_ALERT_CHANGE_FRACTION)
    if (
        isinstance(alert_change_fraction, bool)
        or not isinstance(alert_change_fraction, int | float)
        or not 0 < alert_change_fraction < float("inf")
    ):
        problems.append(
            CohortSpecError(
                node.name,
                "alert_change_fraction",
                alert_change_fraction,
                "must be a number above 0",
                "the share the model's size may move, up or down, since the last successful "
                "run before a notification says so, e.g. 0.5",
            )
        )

    owner, owner_problems = _check_owner(node.name, meta.get("owner"))
    problems.extend(owner_problems)

    if not node.relation_name:
        problems.append(
            CohortSpecError(
                node.name,
                "config.materialized",
                "ephemeral",
                "the model has no relation in the warehouse (ephemeral?)",
                "materialize it as a table or view",
            )
        )

    if problems:
        return None, problems
    return (
        CohortSpec(
            model=node.name,
            unique_id=node.unique_id,
            relation_name=str(node.relation_name),
            cohort_name=str(cohort_name),
            cohort_id=str(cohort_id),
            description=str(description),
            uid_column=str(uid_column),
            mode=str(mode),
            max_uid_length=max_uid_length,
            destination=destination.lower() if isinstance(destination, str) else None,
            resend_after=resend_after,
            max_remove_fraction=float(max_remove_fraction),
            owner=owner,
            alert_change_fraction=float(alert_change_fraction),
        ),
        [],
    )


_OWNER_KEYS = ("name", "email")
_EMAIL_RE = re.compile(r"\A[^@\s]+@[^@\s]+\Z")


def is_email(value: str) -> bool:
    """Loosely an email address: one @, something on each side, no spaces."""
    return _EMAIL_RE.match(value) is not None


def _check_owner(model: str, value: Any) -> tuple[CohortOwner | None, list[CohortSpecError]]:
    """`owner: {name, email}`: a mapping of one or both, each a non-blank string."""
    if value is None:
        return None, []
    example = "e.g. owner: {name: CRM team, email: crm@example.com}"
    if not isinstance(value, dict):
        return None, [CohortSpecError(model, "owner", value, "must be a mapping", example)]
    problems = [
        CohortSpecError(model, f"owner.{key}", value[key], "unknown key", "owner takes name, email")
        for key in sorted(set(value) - set(_OWNER_KEYS), key=str)
    ]
    for key in _OWNER_KEYS:
        given = value.get(key)
        if given is None:
            continue
        if not isinstance(given, str) or not given.strip() or given != given.strip():
            problems.append(
                CohortSpecError(
                    model,
                    f"owner.{key}",
                    given,
                    "must be a non-blank string without spaces at either end",
                    example,
                )
            )
        elif key == "email" and not is_email(given):
            problems.append(
                CohortSpecError(model, "owner.email", given, "is not an email address", example)
            )
    if value.get("name") is None and value.get("email") is None:
        problems.append(
            CohortSpecError(
                model, "owner", value, "needs a name or an email (dbt wants one)", example
            )
        )
    if problems:
        return None, problems
    return CohortOwner(name=value.get("name"), email=value.get("email")), []


def _check_cohort_name(model: str, name: Any) -> list[CohortSpecError]:
    """MoEngage's rules: a name, with or without a leading '.', none of the restricted
    characters.

    MoEngage's API reference shows ".Partner_Name" while the same API's field description
    says a name "must not start with a period": both forms are accepted, neither required.
    """
    if not isinstance(name, str):
        return [CohortSpecError(model, "cohort_name", name, "must be a string")]
    if not any(
        unicodedata.category(c)[0] in NAMING_CATEGORIES and c not in BLANK_LOOKING for c in name
    ):
        return [
            CohortSpecError(
                model, "cohort_name", name, "must name the cohort", "e.g. 'High Value Users'"
            )
        ]
    if name != name.strip():
        return [
            CohortSpecError(
                model,
                "cohort_name",
                name,
                "has leading or trailing spaces",
                f"e.g. {name.strip()!r}",
            )
        ]
    bad = sorted({c for c in name if c in RESTRICTED_NAME_CHARS})
    if bad:
        return [
            CohortSpecError(
                model,
                "cohort_name",
                name,
                f"contains {' '.join(bad)}, which MoEngage forbids",
                f"remove every one of {RESTRICTED_NAME_CHARS}",
            )
        ]
    return []


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


def doubtful_names(specs: Iterable[CohortSpec]) -> list[str]:
    """Warnings for cohort names holding characters MoEngage may refuse (DOUBTFUL_NAME_CHARS)."""
    return [
        f"model '{spec.model}': cohort_name {spec.cohort_name!r} holds parentheses, which a "
        "MoEngage partner's documentation says MoEngage refuses in cohort names; it is sent "
        "as written: if MoEngage refuses it, rename it without them"
        for spec in specs
        if any(c in DOUBTFUL_NAME_CHARS for c in spec.cohort_name)
    ]

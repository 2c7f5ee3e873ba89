"""Stage 2: turn `meta.moengage` blocks into validated cohort specs."""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import CohortSpecError
from .manifest import ModelNode

RESTRICTED_NAME_CHARS = '|*?\\:<>=$"'
MODES = ("add", "mirror")
KNOWN_KEYS = (
    "cohort_name",
    "cohort_id",
    "description",
    "uid_column",
    "mode",
    "max_uid_length",
    "destination",
)
_DESTINATION_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
DEFAULT_UID_COLUMN = "uid"
MAX_COHORT_ID_LENGTH = 255


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


@dataclass(frozen=True)
class Discovery:
    """Every cohort found in a manifest: the valid specs and the problems, all at once."""

    specs: list[CohortSpec]
    problems: list[CohortSpecError]


def parse_cohort(node: ModelNode) -> tuple[CohortSpec | None, list[CohortSpecError]]:
    """Validate one model's `moengage` meta; return the spec or every problem found."""
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
        ),
        [],
    )


def _check_cohort_name(model: str, name: Any) -> list[CohortSpecError]:
    """MoEngage's rules: a string starting with '.', none of the restricted characters."""
    if not isinstance(name, str):
        return [CohortSpecError(model, "cohort_name", name, "must be a string")]
    if not name.startswith(".") or len(name.strip()) < 2:
        return [
            CohortSpecError(
                model,
                "cohort_name",
                name,
                "must start with '.' followed by a name",
                f"e.g. '.{name.strip() or 'My Cohort'}'",
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


def discover(nodes: Iterable[ModelNode], select: Iterable[str] = ()) -> Discovery:
    """Validate every cohort node (those named in `select`, when given).

    Shared cohort_ids are checked across every cohort, selected or not: two models
    feeding one segment is wrong whichever of them this run syncs.
    """
    wanted = set(select)

    def is_selected(node: ModelNode) -> bool:
        return not wanted or node.name in wanted or node.unique_id in wanted

    parsed = [(node, *parse_cohort(node)) for node in nodes]
    problems = [p for node, _, found in parsed if is_selected(node) for p in found]
    by_id: dict[str, list[CohortSpec]] = defaultdict(list)
    for _, spec, _ in parsed:
        if spec is not None:
            by_id[spec.cohort_id].append(spec)
    shared = {cid: group for cid, group in by_id.items() if len(group) > 1}

    specs: list[CohortSpec] = []
    for node, spec, _ in parsed:
        if spec is None or not is_selected(node):
            continue
        if spec.cohort_id not in shared:
            specs.append(spec)
            continue
        models = ", ".join(s.model for s in shared[spec.cohort_id])
        problems.append(
            CohortSpecError(
                spec.model,
                "cohort_id",
                spec.cohort_id,
                f"is shared by models {models}",
                "give each model its own cohort_id",
            )
        )
    return Discovery(specs=specs, problems=problems)

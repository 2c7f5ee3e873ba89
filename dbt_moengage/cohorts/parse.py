"""One model's `meta.moengage` read into a CohortSpec, with every problem found at once.

Each field's rule is here: the keys known, a cohort name MoEngage accepts, a cohort_id, a
mode, a destination name, a duration, the fractions, an owner.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from ..errors import CohortSpecError
from ..manifest import ModelNode
from ..settings import DESTINATION_NAME_RE
from .spec import (
    DEFAULT_ALERT_CHANGE_FRACTION,
    DEFAULT_MAX_REMOVE_FRACTION,
    DEFAULT_UID_COLUMN,
    DURATION_HINT,
    CohortDefaults,
    CohortOwner,
    CohortSpec,
    parse_duration,
)

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
MAX_COHORT_ID_LENGTH = 255


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
        not isinstance(destination, str) or not DESTINATION_NAME_RE.match(destination)
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


def doubtful_names(specs: Iterable[CohortSpec]) -> list[str]:
    """Warnings for cohort names holding characters MoEngage may refuse (DOUBTFUL_NAME_CHARS)."""
    return [
        f"model '{spec.model}': cohort_name {spec.cohort_name!r} holds parentheses, which a "
        "MoEngage partner's documentation says MoEngage refuses in cohort names; it is sent "
        "as written: if MoEngage refuses it, rename it without them"
        for spec in specs
        if any(c in DOUBTFUL_NAME_CHARS for c in spec.cohort_name)
    ]

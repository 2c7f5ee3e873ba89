"""Stage 2: turn `meta.moengage` blocks into validated cohort specs.

Every cohort's block is checked whole, every problem reported at once with its model, field
and value; a cohort_id or cohort_name two models share in one destination is refused, or,
with the sync state read, left to the one that syncs it already.

    spec.py        CohortSpec (and its owner, its defaults), the durations it is written in
    parse.py       one model's meta read into a spec, every problem found at once
    discovery.py   every cohort of a manifest; shared cohort_ids and names found, then settled
"""

from __future__ import annotations

from .discovery import Conflict, Discovery, Owner, Ownership, discover
from .parse import (
    BLANK_LOOKING,
    DOUBTFUL_NAME_CHARS,
    KNOWN_KEYS,
    MAX_COHORT_ID_LENGTH,
    MODES,
    NAMING_CATEGORIES,
    RESTRICTED_NAME_CHARS,
    declared_mode,
    doubtful_names,
    is_email,
    parse_cohort,
)
from .spec import (
    DEFAULT_ALERT_CHANGE_FRACTION,
    DEFAULT_MAX_REMOVE_FRACTION,
    DEFAULT_RESEND_AFTER,
    DEFAULT_UID_COLUMN,
    DURATION_HINT,
    CohortDefaults,
    CohortOwner,
    CohortSpec,
    format_duration,
    parse_duration,
)

__all__ = [
    "BLANK_LOOKING",
    "DEFAULT_ALERT_CHANGE_FRACTION",
    "DEFAULT_MAX_REMOVE_FRACTION",
    "DEFAULT_RESEND_AFTER",
    "DEFAULT_UID_COLUMN",
    "DOUBTFUL_NAME_CHARS",
    "DURATION_HINT",
    "KNOWN_KEYS",
    "MAX_COHORT_ID_LENGTH",
    "MODES",
    "NAMING_CATEGORIES",
    "RESTRICTED_NAME_CHARS",
    "CohortDefaults",
    "CohortOwner",
    "CohortSpec",
    "Conflict",
    "Discovery",
    "Owner",
    "Ownership",
    "declared_mode",
    "discover",
    "doubtful_names",
    "format_duration",
    "is_email",
    "parse_cohort",
    "parse_duration",
]

"""What a cohort is: CohortSpec, one model feeding one MoEngage custom segment, its
defaults, and the durations `resend_after` is written in."""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_UID_COLUMN = "uid"
# MoEngage drops uids it does not know yet; members are sent again this long after their
# last acceptance, so a user whose profile appears later still joins (docs/configuration.md).
DEFAULT_RESEND_AFTER = 7 * 86_400
DEFAULT_MAX_REMOVE_FRACTION = 0.5
# A notification's `size_changed` when the model's distinct uids move by more than this
# share since the cohort's last successful run, up or down (notify/news.py).
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

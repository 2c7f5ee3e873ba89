"""Cohorts left behind: the state holds them for an endpoint and workspace, but no cohort
model of the project syncs them any more. The usual cause is a model renamed while its
cohort_id was the default (the model's name): the next sync starts a new segment, and the
old one freezes while campaigns still target it; in mirror mode nobody is ever removed from
it again. `sync`, `validate --warehouse` and `status` name them; nothing fails on their
account.

The project is every cohort model of the manifest, selected or not, valid or not: a model
left out by --select, or whose config is broken just now, still owns its cohort.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..cohorts import CohortSpec
from ..manifest import ModelNode
from .history import StateCohort, StateHistory
from .schema import COHORTS, MEMBERS, StateKey

LEFT_BEHIND = "left behind"
_PLAIN_YAML = re.compile(r"\A[A-Za-z_][A-Za-z0-9_-]*\Z")


@dataclass(frozen=True)
class ProjectCohort:
    """The cohort a model of the project claims, read from its meta as it is."""

    model: str
    cohort_id: str
    cohort_name: str | None
    destination: str | None
    # meta.moengage sets cohort_id; else it is the model's name.
    explicit_id: bool


def project_cohorts(nodes: Iterable[ModelNode]) -> list[ProjectCohort]:
    """What every cohort model claims (cohort_id, name, destination), valid or not."""
    found = []
    for node in nodes:
        meta: Mapping[str, Any] = node.meta if isinstance(node.meta, dict) else {}
        cohort_id = meta.get("cohort_id")
        name = meta.get("cohort_name")
        destination = meta.get("destination")
        found.append(
            ProjectCohort(
                model=node.name,
                cohort_id=cohort_id if isinstance(cohort_id, str) else node.name,
                cohort_name=name if isinstance(name, str) else None,
                destination=destination.lower() if isinstance(destination, str) else None,
                explicit_id="cohort_id" in meta,
            )
        )
    return found


def meta_line(cohort_id: str) -> str:
    """`cohort_id: <id>` as a line of meta.moengage in YAML (quoted when it must be)."""
    value = cohort_id if _PLAIN_YAML.match(cohort_id) else json.dumps(cohort_id)
    return f"cohort_id: {value}"


@dataclass(frozen=True)
class LeftBehind:
    """A cohort with state under one key that no cohort model of the project syncs."""

    cohort: StateCohort
    key: StateKey
    destination: str | None
    # Cohorts of the project under the same key now sending its cohort_name.
    name_now_used_by: tuple[ProjectCohort, ...] = ()

    @property
    def mirror(self) -> bool:
        """Whether its last run synced it in mirror mode."""
        return self.cohort.mode == "mirror"

    def last_sync(self) -> str:
        """Which model last synced it, and when."""
        c = self.cohort
        if c.model is None:
            return "no run of it is recorded"
        if c.synced_at is None:
            return f"model {c.model} last ran it, and no run of it succeeded"
        return f"model {c.model} last synced it at {c.synced_at:%Y-%m-%d %H:%M} UTC"

    def message(self) -> str:
        """What it is, what that means for its segment, and what to do: one paragraph."""
        c, key = self.cohort, self.key
        where = f"workspace {key.workspace_id} at {key.endpoint}"
        if self.destination:
            where = f"destination '{self.destination}', {where}"
        text = (
            f"cohort '{c.cohort_id}' is left behind: the sync state holds {c.members:,} "
            f"members for it ({where}) but no cohort model of the project syncs it; "
            f"{self.last_sync()}. Its MoEngage segment no longer updates: nobody new joins it"
        )
        if self.mirror:
            text += " and, though it is a mirror cohort, nobody leaves it"
        text += ", while campaigns may still target it."
        line = meta_line(c.cohort_id)
        users = self.name_now_used_by
        if users:
            models = ", ".join(f"'{u.cohort_id}' (model {u.model})" for u in users)
            text += (
                f" Its cohort_name {c.cohort_name!r} is now used by cohort_id {models}: to "
                f"keep syncing the old segment instead, add `{line}` to meta.moengage of "
                f"model {users[0].model}."
            )
        else:
            text += (
                f" If its model was renamed, add `{line}` to the renamed model's "
                "meta.moengage to keep syncing it."
            )
        return text + (
            " If it is retired, archive the segment in MoEngage and delete its rows "
            f"(cohort_id '{c.cohort_id}') from {MEMBERS} and {COHORTS}: it is then no "
            "longer named."
        )

    def to_json(self, now: datetime) -> dict[str, Any]:
        """As `status --output json` lists it."""
        c = self.cohort
        return {
            "cohort_id": c.cohort_id,
            "cohort_name": c.cohort_name,
            "destination": self.destination,
            "endpoint": self.key.endpoint,
            "workspace_id": self.key.workspace_id,
            "health": LEFT_BEHIND,
            "mode": c.mode,
            "members": c.members,
            "model": c.model,
            "last_synced": None
            if c.synced_at is None
            else {
                "finished_at": c.synced_at.isoformat(timespec="seconds") + "Z",
                "seconds_ago": int((now - c.synced_at).total_seconds()),
            },
            "name_now_used_by": [
                {"cohort_id": u.cohort_id, "model": u.model} for u in self.name_now_used_by
            ],
            "message": self.message(),
        }


def find_left_behind(
    history: StateHistory, keys: Mapping[str | None, StateKey], nodes: Iterable[ModelNode]
) -> list[LeftBehind]:
    """Cohorts with state under the destinations' keys that no cohort model claims.

    A model whose destination has no key here (its settings are missing) is taken to claim
    its cohort_id under every key: better to name a cohort too few than one still synced.
    """
    claims = project_cohorts(nodes)
    unkeyed = {c.cohort_id for c in claims if c.destination not in keys}
    found: list[LeftBehind] = []
    seen: set[StateKey] = set()
    for destination, key in keys.items():
        if key in seen:
            continue
        seen.add(key)
        mine = [c for c in claims if c.destination in keys and keys[c.destination] == key]
        besides = {c.cohort_id for c in mine} | unkeyed
        for cohort in history.state_cohorts(key, besides):
            users = tuple(
                c for c in mine if cohort.cohort_name and c.cohort_name == cohort.cohort_name
            )
            found.append(LeftBehind(cohort, key, destination, users))
    return found


def default_id_warnings(nodes: Iterable[ModelNode], specs: Sequence[CohortSpec]) -> list[str]:
    """A warning per mirror cohort whose cohort_id is its model's name by default: a rename
    of the model would leave its segment behind, nobody ever removed from it again."""
    defaulted = {c.model for c in project_cohorts(nodes) if not c.explicit_id}
    return [
        f"model '{spec.model}': a mirror cohort whose cohort_id is the model's name by "
        "default: renaming the model would start a new segment and leave this one behind, "
        f"nobody ever removed from it again. Pin it: add `{meta_line(spec.cohort_id)}` to "
        "its meta.moengage"
        for spec in specs
        if spec.mode == "mirror" and spec.model in defaulted
    ]

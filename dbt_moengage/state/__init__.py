"""Stage 6: the sync state in the user's warehouse: its tables and version (schema.py),
the state flow (store.py), the cohort lock (locks.py) and grouped checkpoints
(checkpoints.py)."""

from __future__ import annotations

from .checkpoints import Checkpoints, GroupCommit
from .locks import HeldLock
from .schema import SCHEMA_VERSION, StateKey, StateStatus, normalize_endpoint, upgrade_note
from .store import Change, CohortRecord, Delta, RunRow, StateStore, utcnow

__all__ = [
    "SCHEMA_VERSION",
    "Change",
    "Checkpoints",
    "CohortRecord",
    "Delta",
    "GroupCommit",
    "HeldLock",
    "RunRow",
    "StateKey",
    "StateStatus",
    "StateStore",
    "normalize_endpoint",
    "upgrade_note",
    "utcnow",
]

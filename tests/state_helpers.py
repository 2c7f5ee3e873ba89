"""The state flow of an engine, for tests that drive both: `store(engine)` is the engine's
StateStore (one per engine, so `prepare` is remembered), and the change kinds under the
short names the tests use."""

from __future__ import annotations

from weakref import WeakKeyDictionary

from dbt_moengage.state import Change, StateStore
from dbt_moengage.warehouse.engine import Engine

ADD = Change.NEW
RESEND = Change.DUE
RENAME = Change.RENAME
REMOVE = Change.LEFT
ALL = Change.EVERYONE

_stores: WeakKeyDictionary[Engine, StateStore] = WeakKeyDictionary()


def store(engine: Engine) -> StateStore:
    """The engine's state store."""
    if engine not in _stores:
        _stores[engine] = StateStore(engine)
    return _stores[engine]

"""A local stand-in for MoEngage's Cohort Sync API, strict about the contract, with faults.

The demo, the tests and the benchmark point the client at it over 127.0.0.1:

    contract.py   what the real API accepts and rejects: endpoint, headers, body, limits
    faults.py     the faults to inject, drawn from a seeded RNG
    config.py     the workspace it accepts, its limits and faults
    workspace.py  cohorts and members, known users, the quota, the request log, the answer
    server.py     `Emulator`: the workspace on a local port (http.server), `serve_forever`
    cli.py        `dbt-moengage emulator`

Names are re-exported here and loaded on first use, so `dbt-moengage` can register the
command without importing the server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import EmulatorConfig
    from .contract import ENDPOINT
    from .faults import Faults
    from .server import Emulator, serve_forever
    from .workspace import RequestRecord, Workspace

__all__ = [
    "ENDPOINT",
    "Emulator",
    "EmulatorConfig",
    "Faults",
    "RequestRecord",
    "Workspace",
    "serve_forever",
]

_HOMES = {
    "ENDPOINT": "contract",
    "Emulator": "server",
    "EmulatorConfig": "config",
    "Faults": "faults",
    "RequestRecord": "workspace",
    "Workspace": "workspace",
    "serve_forever": "server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

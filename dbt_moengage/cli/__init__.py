"""The `dbt-moengage` command: sync cohorts, or run the local MoEngage emulator.

    group.py       the group, and what the commands share (project options, selectors,
                   the console, the `error:` line)
    sync.py        sync, and build (dbt build, then sync what built)
    inspecting.py  ls, validate, exposures, status and report
    entry.py       exit_code, run and leave: how the command ends

This module puts the group together. `main` is the click group; `exit_code` (or `run`)
runs it in the caller's process; the process entry points are in __main__.py.
"""

from __future__ import annotations

from ..integrations.dbt_cloud.command import serve_webhook
from ..testing.emulator.cli import emulator
from .entry import exit_code, leave, run
from .group import expand_selectors, main
from .inspecting import (
    exposures_command,
    list_cohorts,
    report_command,
    status_command,
    validate_command,
)
from .sync import build, sync

__all__ = ["exit_code", "expand_selectors", "leave", "main", "run"]

for _command in (
    sync,
    build,
    list_cohorts,
    validate_command,
    exposures_command,
    status_command,
    report_command,
    # The emulator's command and options live with the test double; its server loads only
    # when the command runs.
    emulator,
    # Starlette and uvicorn ([webhook] extra) are imported only when the command runs.
    serve_webhook,
):
    main.add_command(_command)

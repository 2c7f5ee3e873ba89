"""How the command ends: `exit_code` runs it and maps library errors to an exit code (no
traceback); `run` ends in SystemExit, for a caller running the command in its own process;
`leave` ends the process at once, for the process entry points only (__main__.py)."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn

from ..errors import ConfigError, MoEngageSyncError
from .group import EXIT_USAGE, main, print_error


def run() -> NoReturn:
    """The command for a caller in its own process: it ends in SystemExit with the exit code,
    as click does, library errors printed without a traceback. The process entry points
    (`dbt-moengage`, `python -m dbt_moengage`) are `dbt_moengage.__main__.console`."""
    sys.exit(exit_code())


def exit_code() -> int:
    """Run the command; its exit code, with library errors mapped to one (no traceback)."""
    try:
        main()
    except SystemExit as done:
        return _exit_code(done.code)
    except ConfigError as exc:
        print_error(str(exc))
        return EXIT_USAGE
    except MoEngageSyncError as exc:
        print_error(str(exc))
        return 1
    return 0


def _exit_code(code: object) -> int:
    """sys.exit's argument as a process exit code (a message is printed, as Python does)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def leave(code: int) -> NoReturn:
    """End the process once the command is done, without tearing the interpreter down: for
    the process entry points only, never for a caller that goes on after the command.

    Freeing every object of the modules dbt loads takes about 0.3 s after the work is
    done, on every run. As mypy does, the exit skips that: the atexit handlers run
    (logging's flush among them), the standard streams are flushed, then os._exit. A
    non-daemon thread still running (none should be) gets the ordinary exit, which waits.
    """
    if any(
        t.is_alive() and not t.daemon
        for t in threading.enumerate()
        if t is not threading.main_thread()
    ):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)

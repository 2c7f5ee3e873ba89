"""The process entry points: `python -m dbt_moengage` and the `dbt-moengage` console script.

Both run the command, then end the process at once (cli.leave). Code that runs the command
in its own process calls `dbt_moengage.cli.run` (or `main`), which raise SystemExit instead.
"""

from typing import NoReturn

from .cli import exit_code, leave


def console() -> NoReturn:
    """Run the command, then end the process with its exit code."""
    leave(exit_code())


if __name__ == "__main__":
    console()

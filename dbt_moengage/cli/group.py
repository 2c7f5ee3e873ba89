"""The `dbt-moengage` group, and what its commands share: the project options as dbt has
them, selectors that take several words, the options they build, the console and the
`error:` line. The commands are sync.py's and inspecting.py's; __init__.py adds them."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from .. import __version__
from ..pipeline import SyncOptions
from ..warehouse.profiles import parse_vars

EXIT_USAGE = 2
SELECTORS = ("--select", "-s", "--exclude")
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dbt-moengage")
def main() -> None:
    """Keep MoEngage cohorts in step with dbt models."""


def project_dir_option(help: str | None = None) -> Decorator:
    """--project-dir: the dbt project folder (default: the current one)."""
    folder = click.Path(file_okay=False, path_type=Path)
    return click.option(
        "--project-dir", type=folder, default=Path("."), show_default=True, help=help
    )


def profiles_dir_option(help: str | None = None) -> Decorator:
    """--profiles-dir: the folder of profiles.yml (default: as dbt finds it)."""
    folder = click.Path(file_okay=False, path_type=Path)
    return click.option("--profiles-dir", type=folder, default=None, help=help)


def target_option(help: str | None = None) -> Decorator:
    """--target / -t: the profile target."""
    return click.option("--target", "-t", default=None, help=help)


def file_option(flag: str, name: str, help: str) -> Decorator:
    """An option naming a file (not a folder), as a Path; None when not given."""
    file = click.Path(dir_okay=False, path_type=Path)
    return click.option(flag, name, type=file, default=None, help=help)


PROFILE = click.option(
    "--profile", default=None, help="The profile to use, instead of dbt_project.yml's `profile:`."
)
VARS = click.option(
    "--vars",
    default=None,
    help="Project variables as a YAML mapping, as on `dbt build` (read by var() in profiles).",
)


STATE_SCHEMA_HELP = (
    "Schema of the sync state tables [env: MOENGAGE_STATE_SCHEMA; default: the profile's]."
)


def state_schema_option(help: str = STATE_SCHEMA_HELP) -> Decorator:
    """--state-schema: the schema of the sync state tables (default: as the sync finds it)."""
    return click.option("--state-schema", default=None, help=help)


def project_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--project-dir, --profiles-dir, --target, --profile, --vars, --select and --exclude,
    as dbt has them."""
    options = [
        project_dir_option("The dbt project folder (holds dbt_project.yml and target/)."),
        profiles_dir_option(
            "Folder of profiles.yml (default: DBT_PROFILES_DIR, the current folder, ~/.dbt)."
        ),
        target_option("The profile target to use."),
        PROFILE,
        VARS,
        click.option(
            "--select",
            "-s",
            multiple=True,
            help="dbt selection syntax (names, tag:, path:, +graph); resolved by dbt.",
        ),
        click.option("--exclude", multiple=True, help="dbt selection syntax to leave out."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


class SelectorCommand(click.Command):
    """A command whose --select and --exclude take several selectors, as dbt's do.

    `--select a b --exclude c` means `--select a --select b --exclude c`: every word up
    to the next option belongs to the flag before it (dbt's own option class does this,
    but importing dbt costs a second and more at every start).
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Repeat the selector flag before each of its words, then parse as usual."""
        return super().parse_args(ctx, expand_selectors(args))


def expand_selectors(args: list[str]) -> list[str]:
    """`--select a b` -> `--select a --select b`; other arguments unchanged."""
    expanded: list[str] = []
    flag: str | None = None
    for arg in args:
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            flag = name if name in SELECTORS else None
            expanded.append(arg)
        elif flag is not None and expanded[-1] != flag:
            # The flag's first word follows it (or its `=`); each later word gets the flag.
            expanded.extend([flag, arg])
        else:
            expanded.append(arg)
    return expanded


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    """`--select a b`, `-s a -s b` and `-s "a b"` all select a and b, as in dbt."""
    return tuple(name for chunk in values for name in chunk.split())


def sync_options(
    select: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    vars: str | None = None,
    **kwargs: Any,
) -> SyncOptions:
    """The command's options as the pipeline takes them: selectors split into names, the
    --vars YAML read (a ConfigError when it is not a mapping)."""
    return SyncOptions(
        select=_split(select), exclude=_split(exclude), vars=parse_vars(vars), **kwargs
    )


def print_error(message: str) -> None:
    """`error: <message>` on stderr; the message is printed as it is, never as markup."""
    line = Text("error: ", style="red")
    line.append(message)
    Console(stderr=True).print(line, soft_wrap=True, highlight=False)


def make_console(stderr: bool = False) -> Console:
    """A console for stdout (or stderr); logs and pipes get a wide one so tables fit."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty() or os.environ.get("COLUMNS"):
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=160)

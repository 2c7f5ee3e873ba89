"""--select / --exclude resolved by dbt's own selector against the manifest being synced, so
every dbt selector works (names, tags, paths, config, `+` and `@` graph operators, `state:`
with DBT_STATE) and the answer is about that manifest, be it local or fetched from dbt Cloud;
and the one place the runner's arguments for a dbt command are put together (`dbt_args`)."""

from __future__ import annotations

import contextlib
import inspect
from argparse import Namespace
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .errors import ConfigError


def dbt_args(
    command: str,
    project_dir: Path,
    profiles_dir: Path | None,
    target: str | None,
    profile: str | None,
    vars: str | None,
) -> list[str]:
    """`command` with the project, profiles folder, target, profile and vars the runner was
    given; dbt's own defaults for what was not."""
    args = [command, "--project-dir", str(project_dir)]
    if profiles_dir is not None:
        args += ["--profiles-dir", str(profiles_dir)]
    if target:
        args += ["--target", target]
    if profile:
        args += ["--profile", profile]
    if vars:
        args += ["--vars", vars]
    return args


def shown(select: Sequence[str], exclude: Sequence[str]) -> str:
    """The selection as it was asked for: `--select a b --exclude c`."""
    return " ".join(
        [
            *(["--select", *select] if select else []),
            *(["--exclude", *exclude] if exclude else []),
        ]
    )


def resolve(
    manifest_path: Path,
    project_dir: Path,
    select: Sequence[str],
    exclude: Sequence[str],
    environ: Mapping[str, str],
) -> set[str]:
    """The unique_ids of the models the selection picks in the manifest at `manifest_path`;
    ConfigError if dbt refuses the selection or cannot read the manifest.

    `path:` selectors are paths in `project_dir`, and `state:` selectors compare with the
    manifest in the folder DBT_STATE names (relative to `project_dir`), as dbt's are.
    """
    from dbt.compilation import Linker
    from dbt.contracts.graph.manifest import Manifest, WritableManifest
    from dbt.contracts.state import PreviousState
    from dbt.graph.cli import parse_difference
    from dbt.graph.graph import Graph
    from dbt.graph.selector import ResourceTypeSelector
    from dbt.node_types import NodeType
    from dbt_common.events.contextvars import task_contextvars
    from dbt_common.exceptions import DbtBaseException

    asked = shown(select, exclude)
    try:
        with _selection_flags(), task_contextvars(project_root=str(project_dir)):
            manifest = Manifest.from_writable_manifest(
                WritableManifest.read_and_check_versions(str(manifest_path))
            )
            linker = Linker()
            linker.link_graph(manifest)
            state_dir = environ.get("DBT_STATE", "").strip()
            previous = (
                PreviousState(Path(state_dir), manifest_path.parent, project_dir)
                if state_dir
                else None
            )
            selector = ResourceTypeSelector(
                Graph(linker.graph), manifest, previous, [NodeType.Model]
            )
            spec = parse_difference(list(select) or None, list(exclude) or None)
            # dbt-core 1.11 can leave out its warning that a selector matched nothing (the
            # caller names the selection itself); 1.10 always shows it.
            quiet = "warn_on_no_nodes" in inspect.signature(selector.get_selected).parameters
            if quiet:
                return set(selector.get_selected(spec, warn_on_no_nodes=False))
            return set(selector.get_selected(spec))
    except (DbtBaseException, RuntimeError) as exc:
        message = " ".join(str(exc).split())
        if "no comparison manifest" in message:
            message += ": set DBT_STATE to the folder of the manifest to compare with"
        raise ConfigError(
            f"dbt could not resolve {asked} against {manifest_path}: {message}"
        ) from None


@contextlib.contextmanager
def _selection_flags() -> Iterator[None]:
    """dbt's selection parser reads INDIRECT_SELECTION from dbt's global flags, which only
    a dbt command sets: outside one, the default (`eager`) for the time of the call."""
    from dbt import flags

    before = flags.get_flags()
    if hasattr(before, "INDIRECT_SELECTION"):
        yield
        return
    flags.set_flags(Namespace(**vars(before), INDIRECT_SELECTION="eager", WARN_ERROR=None))
    try:
        yield
    finally:
        flags.set_flags(before)

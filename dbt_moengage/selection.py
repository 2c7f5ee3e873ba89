"""--select / --exclude resolved by dbt itself (`dbt ls`), so every dbt selector works:
names, tags, paths, config, `+` graph operators, state, YAML selectors; and the one place
the runner's arguments for a dbt command are put together (`dbt_args`: `build` and `ls`)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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


def resolve(
    project_dir: Path,
    profiles_dir: Path | None,
    target: str | None,
    select: Sequence[str],
    exclude: Sequence[str],
    profile: str | None = None,
    cli_vars: Mapping[str, Any] | None = None,
) -> set[str]:
    """The unique_ids of the models dbt selects; ConfigError if dbt refuses the selection."""
    from dbt.cli.main import dbtRunner

    with tempfile.TemporaryDirectory(prefix="moengage-ls-") as scratch:
        # A scratch target path keeps the user's target/ (and its manifest) untouched.
        vars = json.dumps(dict(cli_vars)) if cli_vars else None
        args = dbt_args("ls", project_dir, profiles_dir, target, profile, vars)
        args += ["--resource-type", "model", "--output", "json", "--output-keys", "unique_id"]
        args += ["--log-level", "none", "--target-path", scratch]
        if select:
            args += ["--select", *select]
        if exclude:
            args += ["--exclude", *exclude]
        result = dbtRunner().invoke(args)
    if not result.success:
        shown = " ".join(
            [
                *(["--select", *select] if select else []),
                *(["--exclude", *exclude] if exclude else []),
            ]
        )
        raise ConfigError(f"dbt could not resolve {shown}: {result.exception}")
    lines = result.result if isinstance(result.result, list) else []
    return {json.loads(line)["unique_id"] for line in lines}

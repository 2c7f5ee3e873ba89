"""--select / --exclude resolved by dbt itself (`dbt ls`), so every dbt selector works:
names, tags, paths, config, `+` graph operators, state, YAML selectors."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError


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
        args = [
            "ls",
            "--project-dir",
            str(project_dir),
            "--resource-type",
            "model",
            "--output",
            "json",
            "--output-keys",
            "unique_id",
            "--log-level",
            "none",
            "--target-path",
            scratch,
        ]
        if profiles_dir is not None:
            args += ["--profiles-dir", str(profiles_dir)]
        if target:
            args += ["--target", target]
        if profile:
            args += ["--profile", profile]
        if cli_vars:
            args += ["--vars", json.dumps(dict(cli_vars))]
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

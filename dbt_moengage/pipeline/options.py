"""What the user asked for (SyncOptions), and what follows from it: the dbt
profile target, each destination's settings (read once per run) and state key, run-wide cohort
defaults."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cohorts import DURATION_HINT, CohortDefaults, CohortSpec, parse_duration
from ..errors import SettingsError
from ..settings import MoEngageSettings
from ..state import StateKey, normalize_endpoint
from ..warehouse import ProfileTarget, load_profile_target


@dataclass
class SyncOptions:
    """What the user asked for on the command line."""

    project_dir: Path = Path(".")
    profiles_dir: Path | None = None
    target: str | None = None
    select: tuple[str, ...] = ()
    dry_run: bool = False
    full_refresh: bool = False
    state_schema: str | None = None
    exclude: tuple[str, ...] = ()
    # Sync only cohorts whose model succeeded in target/run_results.json.
    only_built: bool = False
    # Where manifest.json (and run_results.json) are, when not the project's target/.
    target_path: Path | None = None
    # Let a mirror run remove more than its max_remove_fraction (or everyone).
    allow_large_removal: bool = False
    # dbt's --profile and --vars, as on `dbt build`.
    profile: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    # Never in a repr: it holds the API key and warehouse passwords.
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)

    @property
    def target_dir(self) -> Path:
        """dbt's target folder (--target-path, DBT_TARGET_PATH, else <project>/target)."""
        if self.target_path is not None:
            return self.target_path
        custom = self.environ.get("DBT_TARGET_PATH")
        if custom:
            path = Path(custom)
            return path if path.is_absolute() else self.project_dir / path
        return self.project_dir / "target"


def profile_target(options: SyncOptions) -> ProfileTarget:
    """The dbt profile target the options name, rendered by dbt."""
    return load_profile_target(
        options.project_dir,
        options.profiles_dir,
        options.target,
        options.environ,
        profile=options.profile,
        cli_vars=options.vars,
    )


def state_key(settings: MoEngageSettings) -> StateKey:
    """The state key of a destination: its endpoint (normalized base URL) and workspace."""
    return StateKey(normalize_endpoint(settings.base_url), settings.workspace_id)


def cohort_defaults(environ: Mapping[str, str]) -> CohortDefaults:
    """Run-wide cohort defaults from the environment (MOENGAGE_RESEND_AFTER)."""
    raw = environ.get("MOENGAGE_RESEND_AFTER", "").strip()
    if not raw:
        return CohortDefaults()
    try:
        return CohortDefaults(resend_after=parse_duration(raw))
    except ValueError:
        raise SettingsError(f"MOENGAGE_RESEND_AFTER = {raw!r}: not {DURATION_HINT}") from None


class Destinations:
    """Each destination's settings, read from the environment once per run: the default
    destination (None) from MOENGAGE_*, a named one from MOENGAGE_<NAME>_*. A read that
    fails is kept too, so asking again raises the same SettingsError without reading."""

    def __init__(self, environ: Mapping[str, str], require_credentials: bool) -> None:
        self._environ = environ
        self._required = require_credentials
        self._read: dict[tuple[str | None, bool], MoEngageSettings | SettingsError] = {}

    def settings(self, name: str | None, required: bool | None = None) -> MoEngageSettings:
        """The destination's settings, its credentials required unless the run is a dry
        run (or `required` says otherwise); SettingsError if they cannot be used."""
        required = self._required if required is None else required
        if (name, required) not in self._read:
            try:
                self._read[(name, required)] = MoEngageSettings.from_env(
                    self._environ, require_credentials=required, destination=name
                )
            except SettingsError as exc:
                self._read[(name, required)] = exc
        found = self._read[(name, required)]
        if isinstance(found, SettingsError):
            raise found
        return found

    def named_by(
        self, specs: Iterable[CohortSpec]
    ) -> tuple[dict[str | None, MoEngageSettings], dict[str, str]]:
        """The settings of each destination the cohorts name, and why each named one that
        cannot be used is refused. The default destination's refusal raises (exit 2)."""
        usable: dict[str | None, MoEngageSettings] = {}
        refused: dict[str, str] = {}
        for name in dict.fromkeys(spec.destination for spec in specs):
            try:
                usable[name] = self.settings(name)
            except SettingsError as exc:
                if name is None:
                    raise
                refused[name] = str(exc)
        return usable, refused

    def run_wide(self) -> MoEngageSettings:
        """The settings that are the run's, not a destination's (lock waits): the default
        destination's, read without its credentials when they are missing."""
        try:
            return self.settings(None)
        except SettingsError:
            return self.settings(None, required=False)

    def key(self, name: str | None) -> StateKey | None:
        """Where the destination's state is kept (its endpoint and workspace), even when
        its credentials are missing; None if its settings do not say."""
        for required in dict.fromkeys((self._required, False)):
            try:
                found = self.settings(name, required)
            except SettingsError:
                continue
            return state_key(found) if found.workspace_id and found.base_url else None
        return None

"""Find and render the user's dbt profile the way dbt does."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined
from jinja2.exceptions import TemplateError
from jinja2.sandbox import SandboxedEnvironment

from ..errors import ProfileError

_NATIVE_FILTERS = ("as_number", "as_bool", "as_native")
_MISSING = object()


@dataclass(frozen=True)
class ProfileTarget:
    """One rendered output of a dbt profile: the engine type and its connection fields."""

    profile_name: str
    target_name: str
    profiles_path: Path
    fields: dict[str, Any]

    def __repr__(self) -> str:
        # `fields` holds passwords and keys: show only where the target came from.
        return (
            f"ProfileTarget(profile_name={self.profile_name!r}, "
            f"target_name={self.target_name!r}, type={self.type!r})"
        )

    @property
    def type(self) -> str:
        """The adapter type, e.g. 'duckdb' or 'snowflake'."""
        return str(self.fields.get("type", ""))


def project_profile_name(project_dir: Path) -> str:
    """The `profile:` named in the project's dbt_project.yml."""
    path = project_dir / "dbt_project.yml"
    try:
        project = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ProfileError(
            f"no dbt_project.yml in {project_dir}: run from the dbt project or pass --project-dir"
        ) from None
    except (OSError, yaml.YAMLError) as exc:
        raise ProfileError(f"cannot read {path}: {exc}") from None
    name = project.get("profile") if isinstance(project, dict) else None
    if not isinstance(name, str) or not name:
        raise ProfileError(f"{path} names no `profile:`; add the profile dbt uses for it")
    return name


def find_profiles_file(
    profiles_dir: Path | None,
    project_dir: Path,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Path:
    """--profiles-dir, then DBT_PROFILES_DIR, then the current folder, then ~/.dbt."""
    env = os.environ if environ is None else environ
    candidates: list[tuple[str, Path]] = []
    if profiles_dir is not None:
        candidates.append(("--profiles-dir", profiles_dir))
    elif env.get("DBT_PROFILES_DIR"):
        candidates.append(("DBT_PROFILES_DIR", Path(env["DBT_PROFILES_DIR"]).expanduser()))
    else:
        here = cwd or Path.cwd()
        if (here / "profiles.yml").is_file():
            candidates.append(("the current folder", here))
        else:
            candidates.append(("~/.dbt", Path(env.get("HOME", str(Path.home()))) / ".dbt"))
    source, folder = candidates[0]
    path = folder / "profiles.yml"
    if not path.is_file():
        raise ProfileError(
            f"no profiles.yml in {folder} (from {source}); pass --profiles-dir, set "
            f"DBT_PROFILES_DIR, or create ~/.dbt/profiles.yml as for dbt (project: {project_dir})"
        )
    return path


def load_profile_target(
    project_dir: Path,
    profiles_dir: Path | None = None,
    target: str | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ProfileTarget:
    """Resolve the project's profile and target and render its `env_var()` calls."""
    env = dict(os.environ if environ is None else environ)
    profile_name = project_profile_name(project_dir)
    path = find_profiles_file(profiles_dir, project_dir, env, cwd)
    try:
        profiles = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ProfileError(f"cannot read {path}: {exc}") from None
    profile = profiles.get(profile_name) if isinstance(profiles, dict) else None
    if not isinstance(profile, dict):
        raise ProfileError(f"profile '{profile_name}' is not defined in {path}")
    target_name = target or env.get("DBT_TARGET") or profile.get("target")
    if isinstance(target_name, str):
        target_name = str(render(target_name, env, f"{profile_name}.target"))
    outputs = profile.get("outputs") or {}
    if not target_name or target_name not in outputs:
        known = ", ".join(sorted(outputs)) or "none"
        raise ProfileError(
            f"profile '{profile_name}' in {path} has no target {target_name!r} "
            f"(targets: {known}); pass --target"
        )
    fields = render(outputs[target_name], env, f"{profile_name}.outputs.{target_name}")
    if not isinstance(fields, dict) or "type" not in fields:
        raise ProfileError(f"{path}: {profile_name}.outputs.{target_name} has no `type`")
    return ProfileTarget(profile_name, str(target_name), path, fields)


def render(value: Any, environ: Mapping[str, str], where: str) -> Any:
    """Render Jinja in every string of a profile value, as dbt does (env_var and filters)."""
    if isinstance(value, dict):
        return {k: render(v, environ, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, environ, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
        return value
    env = _jinja(environ, where)
    try:
        text = env.from_string(value).render()
    except _EnvVarMissing as exc:
        raise ProfileError(
            f"{where}: env var {exc.name!r} is required but not set (used by env_var() in "
            "profiles.yml); export it or give env_var a default"
        ) from None
    except TemplateError as exc:
        raise ProfileError(f"{where}: cannot render the template: {exc}") from None
    except Exception as exc:
        # e.g. TypeError from `env_var('X') + 1`; the text may hold a secret, so name the type only.
        raise ProfileError(f"{where}: cannot render the template ({type(exc).__name__})") from None
    if any(f in value for f in _NATIVE_FILTERS):
        return _native(text, value, where)
    return text


def _native(text: str, template: str, where: str) -> Any:
    """The value of an `as_number` / `as_bool` / `as_native` template; never echoes the text."""
    if "as_number" in template:
        # int()/float(), not YAML: YAML 1.1 reads '0123' as octal 83 and '1:30' as 90.
        for convert in (int, float):
            try:
                return convert(text)
            except ValueError:
                pass
        raise ProfileError(f"{where}: `as_number` needs a number, the value rendered is not one")
    try:
        result = yaml.safe_load(text)
    except yaml.YAMLError:
        result = text
    if "as_bool" in template and not isinstance(result, bool):
        raise ProfileError(f"{where}: `as_bool` needs true or false, the value rendered is neither")
    return result


class _EnvVarMissing(Exception):
    def __init__(self, name: str) -> None:
        self.name = name


def _jinja(environ: Mapping[str, str], where: str) -> SandboxedEnvironment:
    def env_var(name: str, default: Any = _MISSING) -> Any:
        if name in environ:
            return environ[name]
        if default is not _MISSING:
            return default
        raise _EnvVarMissing(name)

    env = SandboxedEnvironment(undefined=StrictUndefined)
    env.globals["env_var"] = env_var
    for name in (*_NATIVE_FILTERS, "as_text"):
        env.filters[name] = lambda v: v
    return env

"""`dbt-moengage exposures`: one dbt exposure per cohort, so dbt lineage shows where audiences go.

The exposures live in a file dbt-moengage owns (exposures_yaml.py): each run rewrites it
whole, from the cohorts and the exposures it holds, and refuses a file holding anything
it did not write. Its exposures carry `config.meta.moengage_managed: true`: they are
rewritten on every run, and removed once their cohort is gone. A run that has nothing
to change leaves the file byte-identical.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .cohorts import CohortOwner, CohortSpec, is_email
from .errors import CohortSpecError, ConfigError, ExposureFileError
from .exposures_yaml import MANAGED_KEY, jinja_literal, metas, read_generated, render_file
from .manifest import Manifest, load_manifest
from .pipeline import SyncOptions, discover_cohorts, select_cohorts

NAME_PREFIX = "moengage_"
DEFAULT_OWNER = CohortOwner(name="dbt-moengage")
DEFAULT_FILE_NAME = "moengage_exposures.yml"
_NOT_NAME = re.compile(r"[^a-z0-9]+")


# --- names ----------------------------------------------------------------------------


def base_name(spec: CohortSpec) -> str:
    """`moengage_<cohort_id>`, or `moengage_<destination>__<cohort_id>` for a named one.

    The cohort_id is lower-cased and every run of characters other than a-z and 0-9
    becomes one `_` (`.VIP-Users 2` -> `vip_users_2`), so the name is a dbt identifier.
    """
    slug = _NOT_NAME.sub("_", spec.cohort_id.lower()).strip("_") or "cohort"
    if spec.destination:
        return f"{NAME_PREFIX}{spec.destination}__{slug}"
    return f"{NAME_PREFIX}{slug}"


def exposure_names(specs: Iterable[CohortSpec]) -> dict[str, str]:
    """unique_id -> exposure name; cohorts whose names collide all get a hash suffix.

    The suffix hashes (destination, cohort_id), unique among valid cohorts, so a name
    depends on its cohort and on which others collide with it, never on their order.
    """
    specs = list(specs)
    bases = {spec.unique_id: base_name(spec) for spec in specs}
    counts = Counter(bases.values())
    names = {}
    for spec in specs:
        name = bases[spec.unique_id]
        if counts[name] > 1:
            key = f"{spec.destination or ''}\0{spec.cohort_id}".encode()
            name = f"{name}_{hashlib.sha1(key).hexdigest()[:8]}"
        names[spec.unique_id] = name
    return names


# --- what one exposure says -----------------------------------------------------------


@dataclass(frozen=True)
class Exposure:
    """The exposure one cohort gets."""

    name: str
    spec: CohortSpec
    ref: str
    owner: CohortOwner

    def document(self) -> dict[str, Any]:
        """The exposure as dbt reads it (dbt >= 1.10: tags and meta under config).

        Every string from the cohort's config is a Jinja literal: dbt renders them.
        """
        spec = self.spec
        where = f"destination {spec.destination}" if spec.destination else "default workspace"
        owner = {
            key: jinja_literal(value)
            for key, value in (("name", self.owner.name), ("email", self.owner.email))
            if value is not None
        }
        return {
            "name": self.name,
            "label": jinja_literal(f"MoEngage: {spec.cohort_name}"),
            "type": "application",
            "description": jinja_literal(
                f"MoEngage cohort '{spec.cohort_name}' (cohort_id {spec.cohort_id}, {where}, "
                f"mode {spec.mode}), synced by dbt-moengage from model {spec.model}."
            ),
            "owner": owner,
            "depends_on": [self.ref],
            "config": {
                "tags": ["moengage"],
                "meta": {
                    MANAGED_KEY: True,
                    "moengage": {
                        "model": spec.model,
                        "cohort_id": jinja_literal(spec.cohort_id),
                        "cohort_name": jinja_literal(spec.cohort_name),
                        "destination": spec.destination,
                        "mode": spec.mode,
                    },
                },
            },
        }


def model_ref(manifest: Manifest, spec: CohortSpec) -> str:
    """`ref('model')`; with its package when not the root project's, and its version."""
    node = (manifest.data.get("nodes") or {}).get(spec.unique_id) or {}
    project = (manifest.data.get("metadata") or {}).get("project_name")
    package = node.get("package_name")
    args = [f"'{spec.model}'"]
    if package and project and package != project:
        args.insert(0, f"'{package}'")
    version = node.get("version")
    if version is not None:
        args.append(f"v={version!r}")
    return f"ref({', '.join(args)})"


def default_owner(name: str | None, email: str | None) -> CohortOwner:
    """The owner of cohorts without `owner:` in their meta: the options, else dbt-moengage."""
    for option, value in (("--owner-name", name), ("--owner-email", email)):
        if value is not None and (not value.strip() or value != value.strip()):
            raise ConfigError(f"{option} = {value!r}: must be non-blank, without spaces around")
    if email is not None and not is_email(email):
        raise ConfigError(f"--owner-email = {email!r}: not an email address, e.g. crm@example.com")
    if name is None and email is None:
        return DEFAULT_OWNER
    return CohortOwner(name=name, email=email)


# --- the exposures of the file -------------------------------------------------------


def _name(entry: Mapping[str, Any]) -> str | None:
    name = entry.get("name")
    return str(name) if name is not None else None


def _model(entry: Mapping[str, Any]) -> str | None:
    """The model a managed exposure says it was generated for (meta.moengage.model)."""
    for meta in metas(entry):
        moengage = meta.get("moengage")
        if isinstance(moengage, Mapping) and moengage.get("model") is not None:
            return str(moengage["model"])
    return None


# --- merging --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Which managed exposures a run may rewrite or remove.

    `models` None: every cohort was considered (no --select/--exclude), so a managed
    exposure of a model that is no longer a cohort is removed, except the `protected`
    models, whose config is invalid just now. With `models`, only those models' exposures
    are touched: a partial selection never removes the others'.
    """

    models: frozenset[str] | None = None
    protected: frozenset[str] = frozenset()
    # Exposure names defined outside this file (from the manifest).
    elsewhere: frozenset[str] = frozenset()

    def owns(self, model: str | None) -> bool:
        """Whether a managed exposure fed by `model` is this run's to rewrite or remove."""
        if self.models is None:
            return model not in self.protected
        return model is not None and model in self.models


@dataclass(frozen=True)
class Change:
    """What a run did to one exposure.

    action: added, updated, unchanged, removed, kept (not this run's: not selected, or
    its cohort's config is invalid), or yours (you wrote an exposure of that name, so
    none is generated).
    """

    name: str
    action: str
    model: str | None


@dataclass(frozen=True)
class Merge:
    """The file's new text and what changed."""

    text: str
    changes: tuple[Change, ...]


def merge(text: str | None, wanted: Sequence[Exposure], scope: Scope, path: Path) -> Merge:
    """The file with `wanted` written in, stale managed exposures out, the others kept.

    `text` must be a file dbt-moengage wrote (ExposureFileError otherwise). The new text
    is written whole; exposures keep their order, new ones go at the end.
    """
    current = read_generated(text, path)
    changes: list[Change] = []
    pending: dict[str, Exposure] = {}
    for exposure in wanted:
        if exposure.name in scope.elsewhere:
            changes.append(Change(exposure.name, "yours", exposure.spec.model))
        else:
            pending[exposure.name] = exposure
    out: list[dict[str, Any]] = []
    for entry in current:
        name, model = _name(entry), _model(entry)
        found = pending.pop(name, None) if name is not None else None
        if found is not None:
            document = found.document()
            action = "unchanged" if document == entry else "updated"
            changes.append(Change(found.name, action, found.spec.model))
            out.append(document)
        elif scope.owns(model):
            changes.append(Change(name or "(unnamed)", "removed", model))
        else:
            changes.append(Change(name or "(unnamed)", "kept", model))
            out.append(entry)
    for exposure in pending.values():
        changes.append(Change(exposure.name, "added", exposure.spec.model))
        out.append(exposure.document())
    # The file's line breaks are kept (a checkout may make them \r\n).
    newline = "\r\n" if text and "\r\n" in text else "\n"
    return Merge(render_file(out, newline), tuple(changes))


# --- the command ----------------------------------------------------------------------


@dataclass
class ExposureUpdate:
    """What `dbt-moengage exposures` did (or, with --check, would do) to the file."""

    path: Path
    changes: tuple[Change, ...]
    changed: bool
    written: bool
    problems: list[CohortSpecError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def count(self, action: str) -> int:
        """How many exposures got `action`."""
        return sum(1 for change in self.changes if change.action == action)


def default_path(project_dir: Path) -> Path:
    """`<first model-path>/moengage_exposures.yml` in the project (models/ by default)."""
    return project_dir / _model_paths(project_dir)[0] / DEFAULT_FILE_NAME


def _model_paths(project_dir: Path) -> list[str]:
    """dbt_project.yml's `model-paths` (dbt's default: models)."""
    try:
        project = yaml.safe_load((project_dir / "dbt_project.yml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return ["models"]
    paths = project.get("model-paths") if isinstance(project, dict) else None
    if isinstance(paths, list) and paths and all(isinstance(p, str) for p in paths):
        return paths
    return ["models"]


def update_exposures(
    options: SyncOptions,
    path: Path | None = None,
    owner: CohortOwner = DEFAULT_OWNER,
    check: bool = False,
) -> ExposureUpdate:
    """Write (or with `check`, only compare) the exposures file of the project's cohorts."""
    project_dir = options.project_dir
    if path is None:
        path = default_path(project_dir)
    elif not path.is_absolute():
        path = project_dir / path
    manifest = load_manifest(options.target_dir)
    # Names are decided over every valid cohort, so --select never renames one.
    everything = discover_cohorts(replace(options, select=(), exclude=()), manifest)
    names = exposure_names(everything.specs)
    specs, problems = everything.specs, everything.problems
    if options.select or options.exclude:
        nodes = {node.unique_id: node.name for node in manifest.cohort_nodes()}
        chosen = {nodes[uid] for uid in select_cohorts(options, manifest, list(nodes))}
        specs = [spec for spec in specs if spec.model in chosen]
        problems = [problem for problem in problems if problem.model in chosen]
        scope = Scope(models=frozenset(spec.model for spec in specs))
    else:
        scope = Scope(protected=frozenset(problem.model for problem in problems))
    scope = replace(scope, elsewhere=frozenset(_names_elsewhere(manifest, project_dir, path)))
    wanted = [
        Exposure(names[spec.unique_id], spec, model_ref(manifest, spec), spec.owner or owner)
        for spec in specs
    ]
    text = _read(path)
    merged = merge(text, wanted, scope, path)
    changed = merged.text != text
    if changed and not check:
        _write(path, merged.text)
    return ExposureUpdate(
        path=path,
        changes=merged.changes,
        changed=changed,
        written=changed and not check,
        problems=problems,
        warnings=_outside_model_paths(project_dir, path),
    )


def _read(path: Path) -> str | None:
    """The file's text as it is on disk (\\r\\n kept, so it is written back so); None if absent."""
    if path.is_symlink() and not path.exists():
        raise ExposureFileError(
            f"{path} is a symlink to {os.readlink(path)}, which is no file; "
            "point it at a file, or remove the link"
        )
    if not path.exists():
        return None
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ExposureFileError(f"cannot read {path}: {exc}; fix it or give --path") from None


def _relative(path: Path, project_dir: Path) -> str | None:
    """`path` relative to the project, as dbt writes original_file_path; None if outside.

    The file itself is not resolved: dbt names a symlinked file by where the link is.
    """
    try:
        return (path.parent.resolve() / path.name).relative_to(project_dir.resolve()).as_posix()
    except ValueError:
        return None


def _names_elsewhere(manifest: Manifest, project_dir: Path, path: Path) -> Iterable[str]:
    """Exposure names the manifest has from files other than `path`."""
    here = _relative(path, project_dir)
    exposures = manifest.data.get("exposures")
    if not isinstance(exposures, Mapping):
        return []
    return [
        str(node["name"])
        for node in exposures.values()
        if isinstance(node, Mapping) and "name" in node and node.get("original_file_path") != here
    ]


def _outside_model_paths(project_dir: Path, path: Path) -> list[str]:
    """A warning when dbt would not read the file (it is outside every model-path)."""
    relative = _relative(path, project_dir)
    paths = _model_paths(project_dir)
    if relative is not None and any(relative.startswith(p.rstrip("/") + "/") for p in paths):
        return []
    return [
        f"{path} is outside the project's model-paths ({', '.join(paths)}): dbt will not "
        "read its exposures; put it under one of them (--path)"
    ]


def _write(path: Path, text: str) -> None:
    """Replace the file in one step, so an interrupted run never leaves half a file.

    A symlink is followed: its target is replaced, the link stays as it is.
    """
    path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        if path.exists():
            os.chmod(temp, path.stat().st_mode & 0o7777)
        else:
            os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise

"""`dbt-moengage exposures`: one dbt exposure per cohort, so dbt lineage shows where audiences go.

The YAML file is updated in place. The exposures this command writes carry
`config.meta.moengage_managed: true`: they are rewritten on every run, and removed once
their cohort is gone. Every other exposure, comment and key of the file is kept byte for
byte (the file is edited as text, around the positions PyYAML reports), and a run that
has nothing to change leaves the file byte-identical.
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
from .manifest import Manifest, load_manifest
from .sync import SyncOptions, discover_cohorts, select_cohorts

MANAGED_KEY = "moengage_managed"
NAME_PREFIX = "moengage_"
DEFAULT_OWNER = CohortOwner(name="dbt-moengage")
DEFAULT_FILE_NAME = "moengage_exposures.yml"
HEADER = (
    "# dbt exposures of the MoEngage cohorts, written by `dbt-moengage exposures`.\n"
    f"# Exposures marked `{MANAGED_KEY}: true` are rewritten, or removed, on every run;\n"
    "# add your own exposures here freely: they are left as they are.\n"
)
# dbt renders Jinja in an exposure's strings (label, owner, meta; description with doc()):
# text with these markers is wrapped in a raw block, so dbt shows it as written.
_JINJA = ("{{", "{%", "{#")
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
        """The exposure as dbt reads it (dbt >= 1.10: tags and meta under config)."""
        spec = self.spec
        where = f"destination {spec.destination}" if spec.destination else "default workspace"
        owner = {
            key: _literal(value)
            for key, value in (("name", self.owner.name), ("email", self.owner.email))
            if value is not None
        }
        return {
            "name": self.name,
            "label": _literal(f"MoEngage: {spec.cohort_name}"),
            "type": "application",
            "description": _literal(
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
                        "cohort_id": _literal(spec.cohort_id),
                        "cohort_name": _literal(spec.cohort_name),
                        "destination": spec.destination,
                        "mode": spec.mode,
                    },
                },
            },
        }

    def render(self, indent: int) -> str:
        """The exposure as one item of a block list whose `-` is at column `indent`."""
        text = yaml.dump(
            [self.document()],
            Dumper=_Dumper,
            sort_keys=False,
            default_flow_style=False,
            allow_unicode=True,
            width=4096,
        )
        pad = " " * indent
        return "".join(pad + line for line in text.splitlines(keepends=True))


def _literal(text: str) -> str:
    """`text` as dbt will show it: Jinja markers are wrapped in a raw block, not rendered."""
    if any(marker in text for marker in _JINJA):
        return "{% raw %}" + text + "{% endraw %}"
    return text


class _Dumper(yaml.SafeDumper):
    """Block lists indented under their key, as dbt's docs write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


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


# --- the file -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    """One exposure of the file, as text: the lines before it, then its own."""

    name: str | None
    managed: bool
    model: str | None
    gap: str
    body: str
    indent: int


@dataclass(frozen=True)
class _Layout:
    """The file cut around its `exposures:` list.

    text == before + key_rest + after_key + items (gap + body each) + tail.
    """

    before: str
    key_rest: str
    after_key: str
    items: tuple[_Item, ...]
    tail: str

    @property
    def indent(self) -> int:
        """Where new items put their `-`: as the file's first item does, else 2."""
        return self.items[0].indent if self.items else 2


def _newline(text: str) -> str:
    """The file's line break: \\r\\n when it has any, else \\n."""
    return "\r\n" if "\r\n" in text else "\n"


def _line_end(text: str, index: int) -> int:
    """The index just after the line break at or after `index` (or the end of the text)."""
    found = text.find("\n", index)
    return len(text) if found < 0 else found + 1


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _layout(text: str | None, path: Path) -> _Layout:
    """Cut the file around its exposures; ExposureFileError if it cannot be edited safely."""
    if text is None:
        return _Layout(HEADER + "\nexposures", ":\n", "", (), "")
    if text and not text.endswith("\n"):
        text += _newline(text)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ExposureFileError(
            f"{path} is not valid YAML: {exc}; fix it, or give another file with --path"
        ) from None
    if root is None:
        return _Layout(text + ("\n" if text.strip() else "") + "exposures", ":\n", "", (), "")
    if not isinstance(root, yaml.MappingNode):
        raise ExposureFileError(
            f"{path} is not a YAML mapping of dbt properties; give another file with --path"
        )
    keys = [
        (key, value)
        for key, value in root.value
        if isinstance(key, yaml.ScalarNode) and key.value == "exposures"
    ]
    if len(keys) > 1:
        raise ExposureFileError(f"{path} has `exposures:` {len(keys)} times; merge them into one")
    if not keys:
        return _Layout(text + "\nexposures", ":\n", "", (), "")
    key, value = keys[0]
    before = text[: key.end_mark.index]
    is_null = isinstance(value, yaml.ScalarNode) and value.tag == "tag:yaml.org,2002:null"
    is_list = isinstance(value, yaml.SequenceNode)
    if is_null or (is_list and value.flow_style and not value.value):
        end = max(key.end_mark.index, value.end_mark.index - 1)
        return _Layout(before, ":\n", "", (), text[_line_end(text, end) :])
    if not is_list:
        raise ExposureFileError(
            f"{path}: `exposures:` is not a list; make it a list of exposures (`- name: ...`)"
        )
    if value.flow_style:
        raise ExposureFileError(
            f"{path}: `exposures:` is a flow list ([...]); write it as a block list "
            "(`- name: ...` on its own line) so dbt-moengage can edit it"
        )
    entries = data["exposures"]
    starts = [_dash_line(text, node.start_mark.index) for node in value.value]
    items: list[_Item] = []
    previous_end = starts[0]
    for i, node in enumerate(value.value):
        start = starts[i]
        dash = text.index("-", start)
        indent = dash - start
        raw_end = starts[i + 1] if i + 1 < len(starts) else node.end_mark.index
        if raw_end > 0 and text[raw_end - 1] != "\n":
            raw_end = _line_end(text, raw_end)
        end = _trim_trailing(text, start, raw_end, indent)
        items.append(_describe(entries[i], text[previous_end:start], text[start:end], indent))
        previous_end = end
    key_end = _line_end(text, key.end_mark.index)
    return _Layout(
        before,
        text[key.end_mark.index : key_end],
        text[key_end : starts[0]],
        tuple(items),
        text[previous_end:],
    )


def _dash_line(text: str, index: int) -> int:
    """Start of the line holding the `-` of the list item whose content starts at `index`."""
    at = index - 1
    while at >= 0 and text[at] in " \t\r\n":
        at -= 1
    return _line_start(text, at if at >= 0 and text[at] == "-" else index)


def _trim_trailing(text: str, start: int, end: int, indent: int) -> int:
    """`end` moved back over blank lines and comments at or left of the item's `-`.

    Those lines introduce what follows (the next item, or the next key), not this item.
    """
    while end > start:
        line_start = _line_start(text, end - 1)
        line = text[line_start:end]
        stripped = line.lstrip(" \t")
        column = len(line) - len(stripped)
        if stripped.strip() and not (stripped.startswith("#") and column <= indent):
            break
        end = line_start
    return end


def _describe(entry: Any, gap: str, body: str, indent: int) -> _Item:
    """Name, mark and model of one exposure of the file."""
    if not isinstance(entry, dict):
        return _Item(None, False, None, gap, body, indent)
    name = entry.get("name")
    config = entry.get("config")
    config_meta = config.get("meta") if isinstance(config, dict) else None
    metas = [meta for meta in (config_meta, entry.get("meta")) if isinstance(meta, dict)]
    managed = any(meta.get(MANAGED_KEY) is True for meta in metas)
    model = next(
        (meta["moengage"].get("model") for meta in metas if isinstance(meta.get("moengage"), dict)),
        None,
    )
    return _Item(
        str(name) if name is not None else None,
        managed,
        str(model) if model is not None else None,
        gap,
        body,
        indent,
    )


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
    """The file with `wanted` written in, stale managed exposures out, the rest as it was."""
    layout = _layout(text, path)
    newline = _newline(text or "")

    def render(exposure: Exposure, indent: int) -> str:
        return exposure.render(indent).replace("\n", newline)

    theirs = {item.name for item in layout.items if not item.managed and item.name}
    changes: list[Change] = []
    pending: dict[str, Exposure] = {}
    for exposure in wanted:
        if exposure.name in theirs or exposure.name in scope.elsewhere:
            changes.append(Change(exposure.name, "yours", exposure.spec.model))
        else:
            pending[exposure.name] = exposure
    out: list[str] = []
    written = 0  # items in `out` (it may also hold the comments of removed ones)
    for item in layout.items:
        found = pending.pop(item.name, None) if item.managed and item.name else None
        if found is not None:
            body = render(found, item.indent)
            action = "unchanged" if body == item.body else "updated"
            changes.append(Change(found.name, action, found.spec.model))
            out += [item.gap, body]
            written += 1
        elif item.managed and scope.owns(item.model):
            changes.append(Change(item.name or "(unnamed)", "removed", item.model))
            if item.gap.strip():
                out.append(item.gap)
        else:
            if item.managed:
                changes.append(Change(item.name or "(unnamed)", "kept", item.model))
            out += [item.gap, item.body]
            written += 1
    for exposure in pending.values():
        changes.append(Change(exposure.name, "added", exposure.spec.model))
        out += [newline if written else "", render(exposure, layout.indent)]
        written += 1
    # An empty list is written `[]`: dbt refuses a null `exposures:`.
    key_rest = layout.key_rest if written else ": []" + newline
    merged = "".join([layout.before, key_rest, layout.after_key, *out, layout.tail])
    if newline != "\n":
        # The parts made here (a new key, the header) follow the file's line breaks too.
        merged = re.sub(r"(?<!\r)\n", newline, merged)
    return Merge(merged, tuple(changes))


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
        chosen = {nodes[uid] for uid in select_cohorts(options, list(nodes))}
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
    if not path.exists():
        return None
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ExposureFileError(f"cannot read {path}: {exc}; fix it or give --path") from None


def _relative(path: Path, project_dir: Path) -> str | None:
    """`path` relative to the project, as dbt writes original_file_path; None if outside."""
    try:
        return path.resolve().relative_to(project_dir.resolve()).as_posix()
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
    """Replace the file in one step, so an interrupted run never leaves half a file."""
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

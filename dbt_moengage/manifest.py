"""Stage 1: read dbt's manifest and find the models marked as MoEngage cohorts."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ManifestError

# dbt 1.8 writes v12; older layouts keep `meta` elsewhere and are not supported.
MIN_SCHEMA_VERSION = 12
_VERSION_RE = re.compile(r"/manifest/v(\d+)\.json$")


@dataclass(frozen=True)
class ModelNode:
    """The parts of a dbt model node that a cohort needs."""

    unique_id: str
    name: str
    relation_name: str | None
    description: str
    meta: Any
    meta_source: str
    columns: tuple[str, ...] = field(default_factory=tuple)
    tags: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Manifest:
    """A loaded manifest: where it came from and its raw JSON."""

    path: Path
    data: dict[str, Any]

    @property
    def adapter_type(self) -> str | None:
        """The adapter dbt wrote the manifest with (`duckdb`, `postgres`...), if recorded."""
        value = (self.data.get("metadata") or {}).get("adapter_type")
        return str(value) if value else None

    def target_database_of(self, unique_id: str) -> str | None:
        """The database of the target dbt wrote a node's relation for: the node's database,
        unless its config picks one of its own (then None)."""
        node = self.data["nodes"].get(unique_id)
        if not isinstance(node, dict) or (node.get("config") or {}).get("database"):
            return None
        value = node.get("database")
        return str(value) if value else None

    def nodes(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (unique_id, node) in unique_id order, refusing a node of the wrong shape."""
        nodes = self.data.get("nodes")
        if not isinstance(nodes, dict):
            raise ManifestError(
                f"{self.path} is not a dbt manifest (no 'nodes'); re-run `dbt parse`"
            )
        for unique_id in sorted(nodes):
            yield unique_id, _checked_node(self.path, unique_id, nodes[unique_id])

    def cohort_nodes(self) -> Iterator[ModelNode]:
        """Yield every model node that carries `moengage` meta, in a stable order."""
        for unique_id, node in self.nodes():
            if node.get("resource_type") != "model":
                continue
            found = _moengage_meta(node)
            if found is None:
                continue
            meta, source = found
            yield ModelNode(
                unique_id=unique_id,
                name=str(node.get("name", unique_id)),
                relation_name=node.get("relation_name"),
                description=str(node.get("description") or ""),
                meta=meta,
                meta_source=source,
                columns=tuple(node.get("columns", {}) or {}),
                tags=tuple(node.get("tags", []) or []),
            )

    def near_misses(self) -> list[str]:
        """Meta keys of models that look like a misspelt `moengage` (the model is no cohort),
        one warning per model and key."""
        found: dict[tuple[str, str], str] = {}
        for unique_id, node in self.nodes():
            if node.get("resource_type") != "model":
                continue
            name = str(node.get("name", unique_id))
            # dbt copies config.meta into the node's meta: the key is named once, where the
            # user wrote it (config.meta first, as cohort_nodes reads it).
            for where, meta in (
                ("config.meta", (node.get("config") or {}).get("meta")),
                ("meta", node.get("meta")),
            ):
                if not isinstance(meta, dict) or "moengage" in meta:
                    continue
                for key in meta:
                    if _looks_like_moengage(str(key)):
                        found.setdefault(
                            (unique_id, str(key)),
                            f"model '{name}': {where}.{key} looks like a misspelt `moengage`, "
                            "so the model is not a cohort; rename the key to moengage if it "
                            "should be one",
                        )
        return list(found.values())


# The keys read from a node, and the JSON type each must have when set (null is "not set").
_NODE_FIELDS: tuple[tuple[str, type, str], ...] = (
    ("config", dict, "an object"),
    ("meta", dict, "an object"),
    ("columns", dict, "an object"),
    ("tags", list, "an array"),
    ("depends_on", dict, "an object"),
)


def _checked_node(path: Path, unique_id: str, node: Any) -> dict[str, Any]:
    """The node, if it and the parts read from it have the shape dbt writes; else why not."""
    where = f"{path}: node {unique_id!r}"
    fix = "the manifest is damaged or not from dbt: re-run `dbt parse` to rewrite it"
    if not isinstance(node, dict):
        raise ManifestError(f"{where} is {_json_type(node)}, not an object; {fix}")
    for key, kind, kind_name in _NODE_FIELDS:
        value = node.get(key)
        if value is not None and not isinstance(value, kind):
            raise ManifestError(f"{where}: `{key}` is {_json_type(value)}, not {kind_name}; {fix}")
    meta = (node.get("config") or {}).get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise ManifestError(f"{where}: `config.meta` is {_json_type(meta)}, not an object; {fix}")
    needs = (node.get("depends_on") or {}).get("nodes")
    if needs is not None and not isinstance(needs, list):
        raise ManifestError(
            f"{where}: `depends_on.nodes` is {_json_type(needs)}, not an array; {fix}"
        )
    return node


def _json_type(value: Any) -> str:
    """`value`'s JSON type, as a message names it."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__


def _looks_like_moengage(key: str) -> bool:
    """`moengange`, `MoEngage`, `moengage_cohort`, `mo-engage`: close to, but not, moengage."""
    folded = key.lower().replace("-", "").replace("_", "").replace(" ", "")
    if key == "moengage":
        return False
    if folded.startswith("moengage") or folded.endswith("moengage"):
        return True
    return difflib.SequenceMatcher(None, folded, "moengage").ratio() >= 0.87


def _moengage_meta(node: dict[str, Any]) -> tuple[Any, str] | None:
    """`config.meta.moengage` first, then the node's top-level `meta.moengage`."""
    config_meta = (node.get("config") or {}).get("meta") or {}
    if isinstance(config_meta, dict) and "moengage" in config_meta:
        return config_meta["moengage"], "config.meta"
    top_meta = node.get("meta") or {}
    if isinstance(top_meta, dict) and "moengage" in top_meta:
        return top_meta["moengage"], "meta"
    return None


def load_manifest(target_dir: Path) -> Manifest:
    """Read `target_dir/manifest.json`, refusing missing, truncated or too-old files."""
    path = target_dir / "manifest.json"
    if not path.is_file():
        raise ManifestError(
            f"no dbt manifest at {path}: run `dbt build` (or `dbt parse`) in the project first, "
            "or point --project-dir at the dbt project"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(
            f"cannot read dbt manifest {path}: {exc}; re-run `dbt parse` to rewrite it"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict):
        raise ManifestError(f"{path} is not a dbt manifest (no 'nodes'); re-run `dbt parse`")
    version = str((data.get("metadata") or {}).get("dbt_schema_version", ""))
    match = _VERSION_RE.search(version)
    if match is None or int(match.group(1)) < MIN_SCHEMA_VERSION:
        raise ManifestError(
            f"{path} has manifest schema {version or 'unknown'!r}; dbt-moengage needs "
            f"v{MIN_SCHEMA_VERSION} or newer (dbt-core 1.8+): upgrade dbt and re-run `dbt parse`"
        )
    return Manifest(path=path, data=data)


# dbt statuses meaning "this node built (or passed) in that invocation".
BUILT = ("success", "pass", "warn")
BUILDING_COMMANDS = ("build", "run")


@dataclass(frozen=True)
class BuildOutcome:
    """Why a cohort's model may or may not be synced after a dbt invocation."""

    built: bool
    reason: str
    # Whether the model was part of the invocation at all (False: `--select` left it out).
    selected: bool = True


def load_run_results(target_dir: Path) -> dict[str, str]:
    """unique_id -> status from `target_dir/run_results.json`."""
    path = target_dir / "run_results.json"
    if not path.is_file():
        raise ManifestError(
            f"no dbt run results at {path}: --only-built needs the run_results.json of the "
            "`dbt build` (or `dbt run`) whose models should be synced"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        statuses = {str(r["unique_id"]): str(r["status"]) for r in data["results"]}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ManifestError(f"cannot read dbt run results {path}: {exc}") from None
    # `dbt compile` or `dbt docs generate` also write run_results.json, with "success"
    # for nodes they never built: only a build or run says what built.
    command = str((data.get("args") or {}).get("which", "build"))
    if command not in BUILDING_COMMANDS:
        raise ManifestError(
            f"{path} is from `dbt {command}`, which builds no model: --only-built needs the "
            "results of `dbt build` or `dbt run` (in dbt Cloud, the step that builds)"
        )
    return statuses


def build_outcome(manifest: Manifest, unique_id: str, statuses: dict[str, str]) -> BuildOutcome:
    """Whether a model built in the invocation and every test on it passed."""
    status = statuses.get(unique_id)
    if status is None:
        return BuildOutcome(False, "not built in this dbt invocation", selected=False)
    if status not in BUILT:
        return BuildOutcome(False, f"its model did not build (dbt status: {status})")
    for test_id, node in manifest.nodes():
        if node.get("resource_type") != "test" or test_id not in statuses:
            continue
        attached = str(node.get("attached_node") or "")
        depends = (node.get("depends_on") or {}).get("nodes") or []
        on_model = unique_id == attached or (not attached and unique_id in depends)
        if on_model and statuses[test_id] not in BUILT:
            name = node.get("name", test_id)
            return BuildOutcome(
                False, f"test {name} on its model ended '{statuses[test_id]}' in dbt"
            )
    return BuildOutcome(True, "built")

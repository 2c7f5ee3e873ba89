"""manifest: loading target/manifest.json and finding the models marked as cohorts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dbt_moengage.errors import ConfigError, ManifestError
from dbt_moengage.manifest import (
    BuildOutcome,
    Manifest,
    ModelNode,
    build_outcome,
    load_manifest,
)

V12 = "https://schemas.getdbt.com/dbt/manifest/v12.json"


def node(
    name: str,
    resource_type: str = "model",
    *,
    config_meta: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    description: str = "",
    relation_name: str | None = "",
) -> dict[str, Any]:
    """A dbt node with only the keys the manifest stage reads."""
    return {
        "resource_type": resource_type,
        "name": name,
        "relation_name": f'"db"."main"."{name}"' if relation_name == "" else relation_name,
        "description": description,
        "config": {"materialized": "table", "meta": config_meta or {}},
        "meta": meta or {},
        "columns": {"uid": {"name": "uid"}},
        "tags": ["audience"],
    }


def manifest_dict(nodes: dict[str, dict[str, Any]], version: str = V12) -> dict[str, Any]:
    """A minimal manifest of the given schema version."""
    return {"metadata": {"dbt_schema_version": version}, "nodes": nodes}


def write(target: Path, data: object) -> Path:
    """Write `data` as target/manifest.json and return the target folder."""
    target.mkdir(parents=True, exist_ok=True)
    (target / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    return target


def cohort_nodes(tmp_path: Path, nodes: dict[str, dict[str, Any]]) -> list[ModelNode]:
    """Load a manifest holding `nodes` and list its cohort nodes."""
    return list(load_manifest(write(tmp_path / "target", manifest_dict(nodes))).cohort_nodes())


def test_missing_file_names_the_path_and_says_to_build(tmp_path: Path) -> None:
    target = tmp_path / "target"
    with pytest.raises(ManifestError) as info:
        load_manifest(target)
    message = str(info.value)
    assert str(target / "manifest.json") in message
    assert "dbt build" in message and "dbt parse" in message
    assert "--project-dir" in message


def test_manifest_error_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_manifest(tmp_path)


def test_a_folder_named_manifest_json_is_missing(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").mkdir()
    with pytest.raises(ManifestError, match="no dbt manifest"):
        load_manifest(tmp_path)


@pytest.mark.parametrize(
    "text",
    [
        '{"metadata": {"dbt_schema_version": "',  # truncated mid-write
        "",  # empty file
        "{'nodes': {}}",  # not JSON
    ],
)
def test_unreadable_json_names_the_path_and_says_to_parse(tmp_path: Path, text: str) -> None:
    (tmp_path / "manifest.json").write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "manifest.json") in message
    assert "cannot read" in message
    assert "dbt parse" in message


def test_not_utf8_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_bytes(b'{"nodes": "\xff\xfe"}')
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest(tmp_path)


@pytest.mark.parametrize(
    "data",
    [
        [1, 2, 3],
        "manifest",
        {"metadata": {"dbt_schema_version": V12}},
        {"metadata": {"dbt_schema_version": V12}, "nodes": []},
        {"results": [], "elapsed_time": 1.0},  # a run_results.json by mistake
    ],
)
def test_json_that_is_no_manifest(tmp_path: Path, data: object) -> None:
    write(tmp_path, data)
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "manifest.json") in message
    assert "not a dbt manifest" in message
    assert "dbt parse" in message


@pytest.mark.parametrize(
    "version",
    [
        "https://schemas.getdbt.com/dbt/manifest/v9.json",
        "https://schemas.getdbt.com/dbt/manifest/v11.json",
    ],
)
def test_old_schema_version_is_refused(tmp_path: Path, version: str) -> None:
    write(tmp_path, manifest_dict({}, version))
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "manifest.json") in message
    assert version in message
    assert "v12" in message
    assert "upgrade dbt" in message and "dbt parse" in message


@pytest.mark.parametrize(
    "metadata",
    [{}, {"dbt_schema_version": ""}, {"dbt_schema_version": "v12"}, None],
)
def test_unknown_schema_version_is_refused(tmp_path: Path, metadata: object) -> None:
    write(tmp_path, {"metadata": metadata, "nodes": {}})
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path)
    assert "v12 or newer" in str(info.value)


def test_newer_schema_version_is_accepted(tmp_path: Path) -> None:
    version = "https://schemas.getdbt.com/dbt/manifest/v13.json"
    loaded = load_manifest(write(tmp_path, manifest_dict({}, version)))
    assert isinstance(loaded, Manifest)
    assert loaded.path == tmp_path / "manifest.json"
    assert list(loaded.cohort_nodes()) == []


def test_only_models_with_moengage_meta_are_cohorts(tmp_path: Path) -> None:
    moengage = {"cohort_name": ".Buyers"}
    nodes = {
        "model.shop.buyers": node("buyers", config_meta={"moengage": moengage}),
        "model.shop.plain": node("plain", config_meta={"owner": "data"}),
        "model.shop.no_meta": node("no_meta"),
        "seed.shop.buyers_seed": node("buyers_seed", "seed", config_meta={"moengage": moengage}),
        "test.shop.not_null_buyers": node("not_null_buyers", "test", meta={"moengage": moengage}),
        "snapshot.shop.snap": node("snap", "snapshot", config_meta={"moengage": moengage}),
    }
    found = cohort_nodes(tmp_path, nodes)
    assert [n.unique_id for n in found] == ["model.shop.buyers"]
    only = found[0]
    assert only.name == "buyers"
    assert only.meta == moengage
    assert only.meta_source == "config.meta"
    assert only.relation_name == '"db"."main"."buyers"'
    assert only.columns == ("uid",)
    assert only.tags == ("audience",)


def test_top_level_meta_is_the_fallback(tmp_path: Path) -> None:
    nodes = {"model.shop.legacy": node("legacy", meta={"moengage": {"cohort_name": ".Old"}})}
    (found,) = cohort_nodes(tmp_path, nodes)
    assert found.meta == {"cohort_name": ".Old"}
    assert found.meta_source == "meta"


def test_config_meta_wins_over_top_level_meta(tmp_path: Path) -> None:
    nodes = {
        "model.shop.both": node(
            "both",
            config_meta={"moengage": {"cohort_name": ".From Config"}},
            meta={"moengage": {"cohort_name": ".From Meta"}},
        )
    }
    (found,) = cohort_nodes(tmp_path, nodes)
    assert found.meta == {"cohort_name": ".From Config"}
    assert found.meta_source == "config.meta"


def test_non_mapping_meta_is_passed_on_for_cohorts_to_refuse(tmp_path: Path) -> None:
    nodes = {"model.shop.odd": node("odd", config_meta={"moengage": ".Just A Name"})}
    (found,) = cohort_nodes(tmp_path, nodes)
    assert found.meta == ".Just A Name"
    assert found.meta_source == "config.meta"


def test_missing_optional_keys_get_defaults(tmp_path: Path) -> None:
    nodes: dict[str, dict[str, Any]] = {
        "model.shop.bare": {"resource_type": "model", "meta": {"moengage": {}}},
        "model.shop.nulls": {
            "resource_type": "model",
            "name": "nulls",
            "description": None,
            "config": None,
            "meta": {"moengage": {}},
            "columns": None,
            "tags": None,
            "relation_name": None,
        },
    }
    bare, nulls = cohort_nodes(tmp_path, nodes)
    assert bare.name == "model.shop.bare"
    assert bare.relation_name is None
    assert bare.description == ""
    assert (bare.columns, bare.tags) == ((), ())
    assert nulls.name == "nulls"
    assert nulls.description == ""
    assert nulls.relation_name is None
    assert (nulls.columns, nulls.tags) == ((), ())


def test_description_and_ephemeral_relation_are_carried(tmp_path: Path) -> None:
    nodes = {
        "model.shop.eph": node(
            "eph",
            config_meta={"moengage": {"cohort_name": ".E"}},
            description="Users who bought twice",
            relation_name=None,
        )
    }
    (found,) = cohort_nodes(tmp_path, nodes)
    assert found.description == "Users who bought twice"
    assert found.relation_name is None


def test_cohort_nodes_are_in_stable_unique_id_order(tmp_path: Path) -> None:
    names = ["zeta", "alpha", "mid", "beta"]
    nodes = {
        f"model.shop.{n}": node(n, config_meta={"moengage": {"cohort_name": f".{n}"}})
        for n in names
    }
    found = cohort_nodes(tmp_path, nodes)
    assert [n.name for n in found] == sorted(names)
    # The generator can be walked again and gives the same answer.
    manifest = load_manifest(tmp_path / "target")
    assert [n.name for n in manifest.cohort_nodes()] == sorted(names)


# -- nodes of the wrong shape ---------------------------------------------------------------

BROKEN_ID = "model.shop.broken"


def _broken(**changes: Any) -> dict[str, Any]:
    """A cohort model node with `changes` applied."""
    base = node("broken", config_meta={"moengage": {"cohort_name": ".Broken"}})
    return {**base, **changes}


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        (["model", "broken"], "is an array, not an object"),
        ("model.shop.broken", "is a string, not an object"),
        (7, "is a number, not an object"),
        (None, "is null, not an object"),
        (_broken(config=["table"]), "`config` is an array, not an object"),
        (_broken(config="table"), "`config` is a string, not an object"),
        (_broken(config={"meta": ["moengage"]}), "`config.meta` is an array, not an object"),
        (_broken(config={"meta": "moengage"}), "`config.meta` is a string, not an object"),
        (_broken(meta=["moengage"]), "`meta` is an array, not an object"),
        (_broken(meta=True), "`meta` is a boolean, not an object"),
        (_broken(columns=["uid"]), "`columns` is an array, not an object"),
        (_broken(tags="audience"), "`tags` is a string, not an array"),
        (_broken(depends_on=["model.shop.a"]), "`depends_on` is an array, not an object"),
        (_broken(depends_on={"nodes": "model.shop.a"}), "`depends_on.nodes` is a string"),
    ],
)
def test_a_node_of_the_wrong_shape_is_named_with_the_fix(
    tmp_path: Path, broken: object, problem: str
) -> None:
    nodes = {
        "model.shop.buyers": node("buyers", config_meta={"moengage": {"cohort_name": ".B"}}),
        BROKEN_ID: broken,
    }
    manifest = load_manifest(write(tmp_path / "target", manifest_dict(nodes)))  # type: ignore[arg-type]
    calls = {
        "cohort_nodes": lambda: list(manifest.cohort_nodes()),
        "near_misses": manifest.near_misses,
        "build_outcome": lambda: build_outcome(
            manifest, "model.shop.buyers", {"model.shop.buyers": "success"}
        ),
    }
    for call in calls.values():
        with pytest.raises(ManifestError) as info:
            call()
        message = str(info.value)
        assert message.startswith(f"{manifest.path}: node '{BROKEN_ID}'")
        assert problem in message
        assert "re-run `dbt parse`" in message


def test_nodes_left_null_are_not_set(tmp_path: Path) -> None:
    nodes = {
        BROKEN_ID: _broken(
            config={"meta": None}, meta=None, columns=None, tags=None, depends_on=None
        ),
        "test.shop.t": {"resource_type": "test", "name": "t", "depends_on": {"nodes": None}},
    }
    manifest = load_manifest(write(tmp_path / "target", manifest_dict(nodes)))
    assert list(manifest.cohort_nodes()) == []
    assert manifest.near_misses() == []
    statuses = {BROKEN_ID: "success", "test.shop.t": "fail"}
    assert build_outcome(manifest, BROKEN_ID, statuses) == BuildOutcome(True, "built")


def test_a_manifest_built_by_hand_without_nodes_is_refused() -> None:
    manifest = Manifest(path=Path("target/manifest.json"), data={"nodes": ["model.shop.a"]})
    with pytest.raises(ManifestError, match="not a dbt manifest"):
        list(manifest.cohort_nodes())


def test_build_outcome_finds_a_failed_test_by_attached_node_or_dependency(tmp_path: Path) -> None:
    model_id = "model.shop.buyers"
    nodes: dict[str, Any] = {
        model_id: node("buyers", config_meta={"moengage": {"cohort_name": ".B"}}),
        "test.shop.attached": {
            "resource_type": "test",
            "name": "unique_buyers_uid",
            "attached_node": model_id,
        },
        "test.shop.depends": {
            "resource_type": "test",
            "name": "rel_buyers",
            "attached_node": None,
            "depends_on": {"nodes": ["model.shop.other", model_id]},
        },
        "test.shop.elsewhere": {
            "resource_type": "test",
            "name": "other_test",
            "attached_node": "model.shop.other",
            "depends_on": {"nodes": [model_id]},
        },
    }
    manifest = load_manifest(write(tmp_path / "target", manifest_dict(nodes)))
    passed = {model_id: "success", "test.shop.attached": "pass", "test.shop.depends": "warn"}
    assert build_outcome(manifest, model_id, passed).built
    # A test attached to another model does not count, whatever it depends on.
    assert build_outcome(manifest, model_id, {**passed, "test.shop.elsewhere": "fail"}).built
    failed = build_outcome(manifest, model_id, {**passed, "test.shop.depends": "fail"})
    assert failed == BuildOutcome(False, "test rel_buyers on its model ended 'fail' in dbt")
    assert build_outcome(manifest, model_id, {}) == BuildOutcome(
        False, "not built in this dbt invocation", selected=False
    )
    assert not build_outcome(manifest, model_id, {model_id: "error"}).built

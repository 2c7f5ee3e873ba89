"""selection: --select/--exclude resolved by dbt's selector against the manifest, and
dbt_args, the one place the runner's dbt command lines are put together."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest

from dbt_moengage.errors import ConfigError
from dbt_moengage.selection import dbt_args, resolve


def test_only_what_was_given_goes_to_dbt() -> None:
    assert dbt_args("build", Path("proj"), None, None, None, None) == [
        "build",
        "--project-dir",
        "proj",
    ]


def test_every_setting_given_goes_to_dbt() -> None:
    args = dbt_args("ls", Path("proj"), Path("profiles"), "prod", "shop", '{"day": 1}')
    assert args == [
        "ls",
        "--project-dir",
        "proj",
        "--profiles-dir",
        "profiles",
        "--target",
        "prod",
        "--profile",
        "shop",
        "--vars",
        '{"day": 1}',
    ]


# -- selection.resolve: dbt's selector against the manifest being synced ---------------------


def model(
    name: str, parents: tuple[str, ...] = (), tags: tuple[str, ...] = (), sql: str = ""
) -> Any:
    """A dbt ModelNode of the package `shop`, its file in models/ (cohorts in models/cohorts)."""
    from dbt.artifacts.resources import DependsOn, FileHash, ModelConfig
    from dbt.contracts.graph.nodes import ModelNode
    from dbt.node_types import NodeType

    folder = "models/cohorts" if parents else "models"
    return ModelNode(
        database="db",
        schema="main",
        name=name,
        resource_type=NodeType.Model,
        package_name="shop",
        path=f"{name}.sql",
        original_file_path=f"{folder}/{name}.sql",
        unique_id=f"model.shop.{name}",
        fqn=["shop", *folder.split("/")[1:], name],
        alias=name,
        checksum=FileHash.from_contents(sql or f"select 1 as {name}"),
        tags=list(tags),
        config=ModelConfig(tags=list(tags)),
        depends_on=DependsOn(nodes=[f"model.shop.{parent}" for parent in parents]),
        raw_code=sql or f"select 1 as {name}",
        language="sql",
    )


def write_manifest(folder: Path, nodes: list[Any], monkeypatch: pytest.MonkeyPatch) -> Path:
    """folder/manifest.json as dbt writes it, from dbt's own classes."""
    from dbt import flags
    from dbt.contracts.graph.manifest import Manifest

    with monkeypatch.context() as patch:
        patch.setattr(flags, "GLOBAL_FLAGS", Namespace(SEND_ANONYMOUS_USAGE_STATS=False))
        manifest = Manifest(nodes={node.unique_id: node for node in nodes})
        manifest.build_parent_and_child_maps()
        folder.mkdir(parents=True, exist_ok=True)
        manifest.writable_manifest().write(str(folder / "manifest.json"))
    return folder / "manifest.json"


SHOP = [
    model("users"),
    model("vip", ("users",), ("crm",)),
    model("churn", ("users",)),
    model("winback", ("churn",), ("crm",)),
]


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(manifest path, project folder) of the `shop` project, its model files on disk."""
    project = tmp_path / "shop"
    for node in SHOP:
        (project / node.original_file_path).parent.mkdir(parents=True, exist_ok=True)
        (project / node.original_file_path).write_text(node.raw_code)
    return write_manifest(project / "target", SHOP, monkeypatch), project


@pytest.mark.parametrize(
    ("select", "exclude", "picked"),
    [
        (["vip"], [], {"vip"}),
        (["tag:crm"], [], {"vip", "winback"}),
        (["churn+"], [], {"churn", "winback"}),
        (["+winback"], [], {"users", "churn", "winback"}),
        (["@churn"], [], {"users", "churn", "winback"}),
        (["users+"], ["tag:crm"], {"users", "churn"}),
        (["tag:crm,churn+"], [], {"winback"}),
        (["path:models/cohorts"], [], {"vip", "churn", "winback"}),
        ([], ["path:models/cohorts"], {"users"}),
        (["vip churn"], [], {"vip", "churn"}),
        (["no_such_model"], [], set()),
    ],
)
def test_every_dbt_selector_is_resolved_on_the_manifest(
    shop: tuple[Path, Path], select: list[str], exclude: list[str], picked: set[str]
) -> None:
    manifest, project = shop
    chosen = resolve(manifest, project, select, exclude, {})
    assert chosen == {f"model.shop.{name}" for name in picked}


def test_path_selectors_are_paths_in_the_project_not_the_working_folder(
    shop: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest, project = shop
    monkeypatch.chdir(tmp_path)
    assert resolve(manifest, project, ["path:models/cohorts/vip.sql"], [], {}) == {"model.shop.vip"}


def test_state_selectors_compare_with_the_manifest_dbt_state_names(
    shop: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest, project = shop
    before = [model("vip", ("users",), ("crm",), sql="select 2 as vip"), *SHOP[:1], *SHOP[2:]]
    write_manifest(project / "prod-state", before, monkeypatch)
    environ = {"DBT_STATE": "prod-state"}
    assert resolve(manifest, project, ["state:modified"], [], environ) == {"model.shop.vip"}
    assert resolve(manifest, project, ["state:modified+"], ["vip"], environ) == set()


def test_a_state_selector_without_dbt_state_says_what_to_set(shop: tuple[Path, Path]) -> None:
    manifest, project = shop
    with pytest.raises(ConfigError) as info:
        resolve(manifest, project, ["state:modified"], [], {})
    message = str(info.value)
    assert "--select state:modified" in message and "DBT_STATE" in message


def test_a_selector_dbt_refuses_names_the_selection_and_the_manifest(
    shop: tuple[Path, Path],
) -> None:
    manifest, project = shop
    with pytest.raises(ConfigError) as info:
        resolve(manifest, project, ["vip"], ["nosuchmethod:x"], {})
    message = str(info.value)
    assert "--select vip --exclude nosuchmethod:x" in message
    assert str(manifest) in message and "nosuchmethod" in message


def test_a_manifest_newer_than_the_installed_dbt_is_refused_by_name(
    shop: tuple[Path, Path],
) -> None:
    manifest, project = shop
    data = json.loads(manifest.read_text())
    data["metadata"]["dbt_schema_version"] = "https://schemas.getdbt.com/dbt/manifest/v99.json"
    manifest.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        resolve(manifest, project, ["vip"], [], {})
    assert "v99" in str(info.value) and str(manifest) in str(info.value)


def test_dbt_global_flags_are_left_as_they_were(shop: tuple[Path, Path]) -> None:
    from dbt import flags

    manifest, project = shop
    before = flags.get_flags()
    resolve(manifest, project, ["tag:crm"], [], {})
    assert flags.get_flags() is before

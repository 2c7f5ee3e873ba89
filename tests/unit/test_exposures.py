"""exposures: one dbt exposure per cohort, merged into a YAML file without touching the rest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dbt_moengage.cohorts import CohortOwner, CohortSpec
from dbt_moengage.errors import ConfigError, ExposureFileError
from dbt_moengage.exposures import (
    DEFAULT_OWNER,
    HEADER,
    Exposure,
    Scope,
    base_name,
    default_owner,
    default_path,
    exposure_names,
    merge,
    model_ref,
    update_exposures,
)
from dbt_moengage.manifest import Manifest
from dbt_moengage.sync import SyncOptions

PATH = Path("models/moengage_exposures.yml")


def spec(
    model: str = "high_value_users",
    cohort_id: str | None = None,
    *,
    destination: str | None = None,
    cohort_name: str | None = None,
    mode: str = "add",
    owner: CohortOwner | None = None,
) -> CohortSpec:
    return CohortSpec(
        model=model,
        unique_id=f"model.shop.{model}",
        relation_name=f'"db"."main"."{model}"',
        cohort_name=cohort_name or f".{model}",
        cohort_id=cohort_id or model,
        description="",
        uid_column="uid",
        mode=mode,
        destination=destination,
        owner=owner,
    )


def exposures(*specs: CohortSpec, owner: CohortOwner = DEFAULT_OWNER) -> list[Exposure]:
    names = exposure_names(specs)
    return [Exposure(names[s.unique_id], s, f"ref('{s.model}')", s.owner or owner) for s in specs]


def entries(text: str) -> dict[str, dict[str, Any]]:
    """The file's exposures by name, as dbt would read them."""
    data = yaml.safe_load(text)
    assert isinstance(data["exposures"], list)
    return {entry["name"]: entry for entry in data["exposures"]}


def actions(result: Any) -> dict[str, str]:
    return {change.name: change.action for change in result.changes}


USER_FILE = """\
version: 2

# Our dashboards.
exposures:
  # The weekly CRM dashboard; ask Ana before changing it.
  - name: crm_weekly   # keep this name
    type: dashboard
    owner: {name: Ana, email: ana@example.com}
    depends_on: [ref('high_value_users')]
    description: >
      Folded text,
      kept as written.

models:
  - name: high_value_users
    description: "A model described beside the exposures."
"""


# --- names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cohort_id", "destination", "name"),
    [
        ("high_value_users", None, "moengage_high_value_users"),
        (".VIP-Users 2", None, "moengage_vip_users_2"),
        ("Ünïcode—ids", None, "moengage_n_code_ids"),
        ("___", None, "moengage_cohort"),
        ("recently_active_30d", "eu", "moengage_eu__recently_active_30d"),
    ],
)
def test_names_are_dbt_identifiers_from_the_cohort_id(
    cohort_id: str, destination: str | None, name: str
) -> None:
    assert base_name(spec(cohort_id=cohort_id, destination=destination)) == name


def test_colliding_names_get_a_stable_hash_suffix() -> None:
    a, b, c = spec("a", "vip-users"), spec("b", "vip_users"), spec("c", "other")
    names = exposure_names([a, b, c])
    assert names[c.unique_id] == "moengage_other"
    assert names[a.unique_id] != names[b.unique_id]
    for model in (a, b):
        assert names[model.unique_id].startswith("moengage_vip_users_")
        assert len(names[model.unique_id]) == len("moengage_vip_users_") + 8
    # Whatever the order the manifest gives them in.
    assert exposure_names([c, b, a]) == names


def test_one_cohort_id_in_two_destinations_gives_two_names() -> None:
    names = exposure_names([spec("a", "vip"), spec("b", "vip", destination="eu")])
    assert sorted(names.values()) == ["moengage_eu__vip", "moengage_vip"]


# --- a new file -----------------------------------------------------------------------


def test_a_new_file_holds_one_application_exposure_per_cohort() -> None:
    result = merge(
        None,
        exposures(
            spec("high_value_users", cohort_name=".High Value Users"),
            spec("recently_active", "recently_active_30d", destination="eu", mode="mirror"),
        ),
        Scope(),
        PATH,
    )
    assert result.text.startswith(HEADER)
    found = entries(result.text)
    assert list(found) == ["moengage_high_value_users", "moengage_eu__recently_active_30d"]
    hvu = found["moengage_high_value_users"]
    assert hvu["type"] == "application"
    assert hvu["depends_on"] == ["ref('high_value_users')"]
    assert hvu["owner"] == {"name": "dbt-moengage"}
    assert ".High Value Users" in hvu["description"]
    assert "high_value_users" in hvu["description"]
    assert hvu["config"]["meta"] == {
        "moengage_managed": True,
        "moengage": {
            "model": "high_value_users",
            "cohort_id": "high_value_users",
            "cohort_name": ".High Value Users",
            "destination": None,
            "mode": "add",
        },
    }
    assert hvu["config"]["tags"] == ["moengage"]
    eu = found["moengage_eu__recently_active_30d"]
    assert "destination eu" in eu["description"]
    assert "mode mirror" in eu["description"]
    assert eu["config"]["meta"]["moengage"]["destination"] == "eu"
    assert set(actions(result).values()) == {"added"}


def test_owner_comes_from_the_cohort_else_the_default() -> None:
    mine = CohortOwner(name="CRM team", email="crm@example.com")
    result = merge(
        None,
        exposures(spec("a", owner=mine), spec("b"), owner=CohortOwner(email="data@example.com")),
        Scope(),
        PATH,
    )
    found = entries(result.text)
    assert found["moengage_a"]["owner"] == {"name": "CRM team", "email": "crm@example.com"}
    assert found["moengage_b"]["owner"] == {"email": "data@example.com"}


def test_jinja_in_a_cohort_name_is_kept_literal() -> None:
    result = merge(None, exposures(spec("a", cohort_name="{{ boom }}")), Scope(), PATH)
    meta = entries(result.text)["moengage_a"]["config"]["meta"]["moengage"]
    assert meta["cohort_name"] == "{% raw %}{{ boom }}{% endraw %}"


def test_no_cohort_writes_an_empty_list_dbt_accepts() -> None:
    result = merge(None, [], Scope(), PATH)
    assert yaml.safe_load(result.text) == {"exposures": []}


# --- re-runs --------------------------------------------------------------------------


def test_rerunning_changes_nothing() -> None:
    wanted = exposures(spec("a"), spec("b", destination="eu"))
    first = merge(USER_FILE, wanted, Scope(), PATH)
    second = merge(first.text, wanted, Scope(), PATH)
    assert second.text == first.text
    assert set(actions(second).values()) == {"unchanged"}


def test_a_changed_cohort_is_rewritten_in_place() -> None:
    before = merge(None, exposures(spec("a"), spec("b")), Scope(), PATH).text
    after = merge(None, exposures(spec("a", mode="mirror"), spec("b")), Scope(), PATH).text
    result = merge(before, exposures(spec("a", mode="mirror"), spec("b")), Scope(), PATH)
    assert result.text == after
    assert actions(result) == {"moengage_a": "updated", "moengage_b": "unchanged"}


# --- what is the user's ---------------------------------------------------------------


def test_user_exposures_comments_and_other_keys_are_kept_byte_for_byte() -> None:
    result = merge(USER_FILE, exposures(spec("a")), Scope(), PATH)
    user_part = USER_FILE.split("\nmodels:")[0]
    assert result.text.startswith(user_part)
    assert result.text.endswith("\nmodels:" + USER_FILE.split("\nmodels:")[1])
    found = entries(result.text)
    assert list(found) == ["crm_weekly", "moengage_a"]
    assert yaml.safe_load(result.text)["models"] == yaml.safe_load(USER_FILE)["models"]
    # Removing every managed exposure gives the user's file back.
    assert merge(result.text, [], Scope(), PATH).text == USER_FILE


def test_a_file_without_exposures_gets_the_key_appended() -> None:
    text = "models:\n  - name: a\n"
    result = merge(text, exposures(spec("a")), Scope(), PATH)
    assert result.text.startswith(text + "\nexposures:\n  - name: moengage_a\n")
    assert merge(result.text, exposures(spec("a")), Scope(), PATH).text == result.text


@pytest.mark.parametrize("value", ["", " []", " ~", " []  # none yet"])
def test_an_empty_exposures_key_is_filled(value: str) -> None:
    text = f"exposures:{value}\nmodels:\n  - name: a\n"
    result = merge(text, exposures(spec("a")), Scope(), PATH)
    assert list(entries(result.text)) == ["moengage_a"]
    assert result.text.endswith("\nmodels:\n  - name: a\n")


def test_removing_the_last_exposure_leaves_a_list_dbt_accepts() -> None:
    two = merge(None, exposures(spec("a"), spec("b")), Scope(), PATH).text
    # A comment before the second exposure outlives it.
    commented = two.replace("\n  - name: moengage_b", "  # a note\n  - name: moengage_b")
    for text in (two, commented):
        result = merge(text, [], Scope(), PATH)
        assert yaml.safe_load(result.text) == {"exposures": []}
        assert merge(result.text, [], Scope(), PATH).text == result.text
    assert "  # a note\n" in merge(commented, [], Scope(), PATH).text


def test_items_follow_the_files_indentation() -> None:
    text = "exposures:\n- name: mine\n  type: ml\n  owner: {name: me}\n"
    result = merge(text, exposures(spec("a")), Scope(), PATH)
    assert "\n- name: moengage_a\n  label:" in result.text
    assert list(entries(result.text)) == ["mine", "moengage_a"]


def test_crlf_line_breaks_are_kept() -> None:
    text = USER_FILE.replace("\n", "\r\n")
    result = merge(text, exposures(spec("a")), Scope(), PATH)
    assert "\n" not in result.text.replace("\r\n", "")
    assert merge(result.text, exposures(spec("a")), Scope(), PATH).text == result.text
    assert merge(result.text, [], Scope(), PATH).text == text


def test_a_user_exposure_of_the_generated_name_is_theirs() -> None:
    text = (
        "exposures:\n"
        "  - name: moengage_a  # taken over: no longer marked\n"
        "    type: application\n"
        "    owner: {name: CRM}\n"
        "    depends_on: [ref('a')]\n"
    )
    result = merge(text, exposures(spec("a")), Scope(), PATH)
    assert result.text == text
    assert actions(result) == {"moengage_a": "yours"}


def test_a_name_defined_in_another_file_is_not_generated_again() -> None:
    result = merge(
        None, exposures(spec("a"), spec("b")), Scope(elsewhere=frozenset({"moengage_a"})), PATH
    )
    assert list(entries(result.text)) == ["moengage_b"]
    assert actions(result)["moengage_a"] == "yours"


# --- stale and unselected -------------------------------------------------------------


def test_managed_exposures_of_gone_cohorts_are_removed() -> None:
    before = merge(USER_FILE, exposures(spec("a"), spec("b"), spec("c")), Scope(), PATH).text
    result = merge(before, exposures(spec("a"), spec("c")), Scope(), PATH)
    assert list(entries(result.text)) == ["crm_weekly", "moengage_a", "moengage_c"]
    assert actions(result)["moengage_b"] == "removed"
    assert result.text == merge(USER_FILE, exposures(spec("a"), spec("c")), Scope(), PATH).text


def test_a_renamed_cohort_id_replaces_its_exposure() -> None:
    before = merge(None, exposures(spec("a")), Scope(), PATH).text
    result = merge(before, exposures(spec("a", "a_v2")), Scope(), PATH)
    assert list(entries(result.text)) == ["moengage_a_v2"]
    assert actions(result) == {"moengage_a": "removed", "moengage_a_v2": "added"}


def test_an_invalid_cohort_keeps_its_exposure() -> None:
    before = merge(None, exposures(spec("a"), spec("b")), Scope(), PATH).text
    result = merge(before, exposures(spec("a")), Scope(protected=frozenset({"b"})), PATH)
    assert result.text == before
    assert actions(result)["moengage_b"] == "kept"


def test_a_partial_selection_never_removes_the_others() -> None:
    before = merge(USER_FILE, exposures(spec("a"), spec("b")), Scope(), PATH).text
    # Only b selected, and b is now in mirror mode; a's cohort is gone, but not selected.
    result = merge(before, exposures(spec("b", mode="mirror")), Scope(models=frozenset("b")), PATH)
    assert actions(result) == {"moengage_a": "kept", "moengage_b": "updated"}
    found = entries(result.text)
    assert found["moengage_a"] == entries(before)["moengage_a"]
    assert found["moengage_b"]["config"]["meta"]["moengage"]["mode"] == "mirror"


def test_a_duplicated_managed_exposure_is_written_once() -> None:
    one = merge(None, exposures(spec("a")), Scope(), PATH).text
    body = one.split("exposures:\n", 1)[1]
    result = merge(one + "\n" + body, exposures(spec("a")), Scope(), PATH)
    assert result.text == one


def test_the_mark_is_also_read_from_top_level_meta() -> None:
    text = (
        "exposures:\n"
        "  - name: moengage_old\n"
        "    type: application\n"
        "    owner: {name: x}\n"
        "    meta: {moengage_managed: true, moengage: {model: old}}\n"
        "  - name: odd\n"
        "    type: ml\n"
        "    owner: {name: x}\n"
        "    config: not a mapping\n"
    )
    result = merge(text, [], Scope(), PATH)
    assert actions(result) == {"moengage_old": "removed"}
    assert list(entries(result.text)) == ["odd"]


# --- files it refuses -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("exposures: [{name: a, type: ml}]\n", "block list"),
        ("exposures: {name: a}\n", "not a list"),
        ("- a\n- b\n", "not a YAML mapping"),
        ("exposures:\n  - name: [\n", "not valid YAML"),
        ("exposures: []\nexposures: []\n", "2 times"),
        ("a: 1\n---\nb: 2\n", "not valid YAML"),
    ],
)
def test_files_that_cannot_be_edited_safely_are_refused(text: str, says: str) -> None:
    with pytest.raises(ExposureFileError, match=r"moengage_exposures\.yml") as caught:
        merge(text, exposures(spec("a")), Scope(), PATH)
    assert says in str(caught.value)
    assert isinstance(caught.value, ConfigError)


# --- refs and owners ------------------------------------------------------------------


def test_ref_names_the_package_and_version_when_needed(tmp_path: Path) -> None:
    nodes = {
        "model.shop.a": {"package_name": "shop", "version": None},
        "model.crm.b": {"package_name": "crm", "version": 2},
    }
    manifest = Manifest(tmp_path, {"metadata": {"project_name": "shop"}, "nodes": nodes})
    a = spec("a")
    b = CohortSpec(**{**spec("b").__dict__, "unique_id": "model.crm.b"})
    assert model_ref(manifest, a) == "ref('a')"
    assert model_ref(manifest, b) == "ref('crm', 'b', v=2)"


def test_default_owner_options() -> None:
    assert default_owner(None, None) == CohortOwner(name="dbt-moengage")
    assert default_owner("CRM", None) == CohortOwner(name="CRM")
    assert default_owner(None, "crm@example.com") == CohortOwner(email="crm@example.com")
    with pytest.raises(ConfigError, match="--owner-email"):
        default_owner(None, "not an email")
    with pytest.raises(ConfigError, match="--owner-name"):
        default_owner(" CRM", None)


# --- the command's stage, on a manifest -----------------------------------------------


def cohort_node(name: str, moengage: dict[str, Any]) -> dict[str, Any]:
    return {
        "resource_type": "model",
        "name": name,
        "package_name": "shop",
        "relation_name": f'"db"."main"."{name}"',
        "config": {"meta": {"moengage": moengage}},
    }


def project(tmp_path: Path, nodes: dict[str, dict[str, Any]], **manifest: Any) -> SyncOptions:
    (tmp_path / "dbt_project.yml").write_text("name: shop\nmodel-paths: [src, models]\n")
    target = tmp_path / "target"
    target.mkdir(exist_ok=True)
    data = {
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
            "project_name": "shop",
        },
        "nodes": {f"model.shop.{name}": node for name, node in nodes.items()},
        **manifest,
    }
    (target / "manifest.json").write_text(json.dumps(data))
    return SyncOptions(project_dir=tmp_path, environ={})


def test_update_writes_to_the_first_model_path_then_is_up_to_date(tmp_path: Path) -> None:
    options = project(
        tmp_path,
        {
            "a": cohort_node("a", {"cohort_name": "A", "owner": {"email": "crm@example.com"}}),
            "b": cohort_node("b", {"cohort_name": "B"}),
        },
    )
    assert default_path(tmp_path) == tmp_path / "src" / "moengage_exposures.yml"
    first = update_exposures(options, owner=CohortOwner(name="Data"))
    assert first.written and first.path == default_path(tmp_path)
    assert first.warnings == []
    found = entries(first.path.read_text())
    assert found["moengage_a"]["owner"] == {"email": "crm@example.com"}
    assert found["moengage_b"]["owner"] == {"name": "Data"}
    text = first.path.read_bytes()
    again = update_exposures(options, owner=CohortOwner(name="Data"))
    assert not again.changed and not again.written
    assert first.path.read_bytes() == text


def test_check_writes_nothing(tmp_path: Path) -> None:
    options = project(tmp_path, {"a": cohort_node("a", {"cohort_name": "A"})})
    result = update_exposures(options, check=True)
    assert result.changed and not result.written
    assert not default_path(tmp_path).exists()


def test_an_invalid_cohort_is_reported_and_its_exposure_kept(tmp_path: Path) -> None:
    options = project(tmp_path, {"a": cohort_node("a", {"cohort_name": "A"})})
    written = update_exposures(options).path.read_text()
    options = project(tmp_path, {"a": cohort_node("a", {"cohort_name": "A", "mode": "sync"})})
    result = update_exposures(options)
    assert [p.field for p in result.problems] == ["mode"]
    assert not result.changed
    assert result.path.read_text() == written


def test_an_exposure_from_another_file_of_the_manifest_is_left_alone(tmp_path: Path) -> None:
    elsewhere = {
        "exposure.shop.moengage_a": {
            "name": "moengage_a",
            "original_file_path": "models/crm/exposures.yml",
        },
        "exposure.shop.old": {
            "name": "moengage_b",
            "original_file_path": "src/moengage_exposures.yml",
        },
    }
    nodes = {
        "a": cohort_node("a", {"cohort_name": "A"}),
        "b": cohort_node("b", {"cohort_name": "B"}),
    }
    result = update_exposures(project(tmp_path, nodes, exposures=elsewhere))
    assert list(entries(result.path.read_text())) == ["moengage_b"]


def test_a_path_outside_the_model_paths_is_warned_about(tmp_path: Path) -> None:
    options = project(tmp_path, {"a": cohort_node("a", {"cohort_name": "A"})})
    result = update_exposures(options, path=Path("elsewhere/exposures.yml"))
    assert result.path == tmp_path / "elsewhere" / "exposures.yml"
    assert result.path.exists()
    assert "model-paths" in result.warnings[0]


# --- any history ----------------------------------------------------------------------

POOL = [spec(model, destination="eu" if model in "ce" else None) for model in "abcdef"]


@settings(max_examples=60, deadline=None)
@given(
    history=st.lists(st.sets(st.integers(0, len(POOL) - 1)), min_size=1, max_size=4),
    user_last=st.booleans(),
)
def test_any_history_settles_and_keeps_the_users_exposures(
    history: list[set[int]], user_last: bool
) -> None:
    """Whatever cohorts came and went before, the file ends with exactly the last run's
    cohorts, a re-run changes nothing, and the user's exposure is intact."""
    mine = "  - name: mine  # by hand\n    type: ml\n    owner: {email: me@example.com}\n"
    text = USER_FILE
    for step, chosen in enumerate(history):
        if user_last and step == 1:
            # The user adds an exposure after the generated ones, at the end of the list.
            text = text.replace("\n\nmodels:", "\n\n" + mine + "\nmodels:")
        wanted = exposures(*(POOL[i] for i in sorted(chosen)))
        text = merge(text, wanted, Scope(), PATH).text
    wanted = exposures(*(POOL[i] for i in sorted(history[-1])))
    found = entries(text)
    user = {"crm_weekly", "mine"} if user_last and len(history) > 1 else {"crm_weekly"}
    assert set(found) == user | {exposure.name for exposure in wanted}
    again = merge(text, wanted, Scope(), PATH)
    assert again.text == text
    if "mine" in user:
        assert mine in text
    else:
        assert merge(text, [], Scope(), PATH).text == USER_FILE

"""exposures: one dbt exposure per cohort, in a file dbt-moengage owns and writes whole."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from dbt.clients.jinja import get_rendered
from hypothesis import given, settings
from hypothesis import strategies as st

from dbt_moengage.cohorts import CohortOwner, CohortSpec
from dbt_moengage.errors import ConfigError, ExposureFileError
from dbt_moengage.exposures import (
    DEFAULT_OWNER,
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
from dbt_moengage.exposures_yaml import HEADER, LEGACY_HEADER, jinja_literal, render_file
from dbt_moengage.manifest import Manifest
from dbt_moengage.pipeline import SyncOptions

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


# What dbt does to the strings of an exposure (SchemaYamlRenderer: native rendering; the
# description later, by process_docs, as text). Enough context for env_var to resolve.
SECRET = "s3cr3t-value-of-SECRET_X"


def dbt_renders(text: str) -> list[Any]:
    context = {"env_var": lambda name, default=None: SECRET}
    return [get_rendered(text, context, native=native) for native in (True, False)]


@pytest.mark.parametrize(
    "name",
    [
        "{{ boom }}",
        "{% endraw %}",
        ".Leak {% endraw %}{{ env_var('SECRET_X') }}{% raw %}",
        "{{ env_var('SECRET_X') }}",
        "{#- note -#} {%- if x %}{{{ x }}}",
        "%} }} #} {{{",
    ],
)
def test_jinja_in_a_cohort_name_renders_back_as_written(name: str) -> None:
    """Whatever Jinja a name holds, dbt renders every string written back to the name."""
    owner = CohortOwner(name=name)
    result = merge(None, exposures(spec("a", cohort_name=name, owner=owner)), Scope(), PATH)
    exposure = entries(result.text)["moengage_a"]
    assert dbt_renders(exposure["owner"]["name"]) == [name] * 2
    written = {
        "label": exposure["label"],
        "description": exposure["description"],
        "cohort_name": exposure["config"]["meta"]["moengage"]["cohort_name"],
    }
    assert dbt_renders(written["label"]) == [f"MoEngage: {name}"] * 2
    assert dbt_renders(written["cohort_name"]) == [name] * 2
    for rendered in dbt_renders(written["description"]):
        assert f"MoEngage cohort '{name}' (cohort_id a" in rendered
        assert SECRET not in rendered


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("{}%#-+ ab'\"\\\r\n")) | st.text())
def test_any_text_is_a_jinja_literal_of_itself(text: str) -> None:
    assert dbt_renders(jinja_literal(text)) == [text] * 2


def test_no_cohort_writes_an_empty_list_dbt_accepts() -> None:
    result = merge(None, [], Scope(), PATH)
    assert yaml.safe_load(result.text) == {"exposures": []}
    assert result.text == HEADER + "exposures: []\n"


# --- re-runs --------------------------------------------------------------------------


def test_rerunning_changes_nothing() -> None:
    wanted = exposures(spec("a"), spec("b", destination="eu"))
    first = merge(None, wanted, Scope(), PATH)
    second = merge(first.text, wanted, Scope(), PATH)
    assert second.text == first.text
    assert set(actions(second).values()) == {"unchanged"}


def test_a_changed_cohort_is_rewritten_in_place() -> None:
    before = merge(None, exposures(spec("a"), spec("b")), Scope(), PATH).text
    after = merge(None, exposures(spec("a", mode="mirror"), spec("b")), Scope(), PATH).text
    result = merge(before, exposures(spec("a", mode="mirror"), spec("b")), Scope(), PATH)
    assert result.text == after
    assert actions(result) == {"moengage_a": "updated", "moengage_b": "unchanged"}


def test_a_file_of_an_earlier_version_is_taken_over() -> None:
    """A file written before dbt-moengage owned it outright (its older header, Jinja
    wrapped in raw blocks) and holding nothing else is rewritten under the new header."""
    old = dict(exposures(spec("a"))[0].document(), label="{% raw %}{{ a }}{% endraw %}")
    kept = dict(exposures(spec("b"))[0].document(), label="{% raw %}{{ b }}{% endraw %}")
    text = LEGACY_HEADER + render_file([old, kept]).removeprefix(HEADER)
    result = merge(text, exposures(spec("a")), Scope(models=frozenset("a")), PATH)
    assert actions(result) == {"moengage_a": "updated", "moengage_b": "kept"}
    assert result.text == render_file([exposures(spec("a"))[0].document(), kept])
    assert merge(LEGACY_HEADER + "exposures: []\n", [], Scope(), PATH).text == render_file([])


# --- what is the user's: never in this file -------------------------------------------


def refused(text: str, says: str, wanted: list[Exposure] | None = None) -> None:
    with pytest.raises(ExposureFileError, match=r"moengage_exposures\.yml") as caught:
        merge(text, exposures(spec("a")) if wanted is None else wanted, Scope(), PATH)
    message = str(caught.value)
    assert says in message, message
    assert "move your own exposures" in message and "own" in message
    assert isinstance(caught.value, ConfigError)


def test_a_file_holding_user_exposures_comments_or_other_keys_is_refused() -> None:
    """Never a write into a file the user writes in: their exposures live elsewhere."""
    refused(USER_FILE, "holds `version:`, which dbt-moengage does not write")
    user_exposures = USER_FILE.split("\n\nmodels:")[0].removeprefix("version: 2\n")
    refused(user_exposures, "holds exposure `crm_weekly`, which dbt-moengage did not write")
    refused("models:\n  - name: a\n", "holds `models:`, which dbt-moengage does not write")
    generated = merge(None, exposures(spec("a")), Scope(), PATH).text
    refused(generated + "models:\n  - name: a\n", "holds `models:`")
    mine = "  - name: mine\n    type: ml\n    owner: {email: me@example.com}\n"
    refused(generated + mine, "holds exposure `mine`")


def test_a_user_exposure_of_the_generated_name_is_refused_here() -> None:
    """An exposure the user took over (no mark) belongs in a file of theirs, where it
    is `yours` (test_a_name_defined_in_another_file_is_not_generated_again)."""
    text = HEADER + (
        "exposures:\n"
        "  - name: moengage_a  # taken over: no longer marked\n"
        "    type: application\n"
        "    owner: {name: CRM}\n"
        "    depends_on: [ref('a')]\n"
    )
    refused(text, "holds exposure `moengage_a`, which dbt-moengage did not write")


def test_a_name_defined_in_another_file_is_not_generated_again() -> None:
    result = merge(
        None, exposures(spec("a"), spec("b")), Scope(elsewhere=frozenset({"moengage_a"})), PATH
    )
    assert list(entries(result.text)) == ["moengage_b"]
    assert actions(result)["moengage_a"] == "yours"


@pytest.mark.parametrize("value", ["", " []", " ~", " []  # none yet"])
def test_a_file_it_did_not_write_is_refused_even_empty(value: str) -> None:
    refused(f"exposures:{value}\n", "does not start with the header dbt-moengage writes")
    refused(f"exposures:{value}\nmodels:\n  - name: a\n", "holds `models:`")


@pytest.mark.parametrize("text", [None, "", "\n\n", HEADER])
def test_no_file_an_empty_one_or_the_header_alone_is_filled(text: str | None) -> None:
    result = merge(text, exposures(spec("a")), Scope(), PATH)
    assert result.text == merge(None, exposures(spec("a")), Scope(), PATH).text


def test_removing_the_last_exposure_leaves_a_list_dbt_accepts() -> None:
    two = merge(None, exposures(spec("a"), spec("b")), Scope(), PATH).text
    result = merge(two, [], Scope(), PATH)
    assert yaml.safe_load(result.text) == {"exposures": []}
    assert merge(result.text, [], Scope(), PATH).text == result.text
    # A comment is the user's: it is never deleted with the exposure it stands by.
    commented = two.replace("\n  - name: moengage_b", "  # a note\n  - name: moengage_b")
    refused(commented, "line 23 ('mode: add  # a note') is not what dbt-moengage writes", [])


def test_a_hand_edited_layout_is_refused_naming_the_line() -> None:
    generated = merge(None, exposures(spec("a")), Scope(), PATH).text
    flush = generated.replace("\n  - name: moengage_a", "\n- name: moengage_a")
    flush = flush.replace("\n    ", "\n  ")
    assert entries(flush) == entries(generated)
    refused(flush, "line 5 ('- name: moengage_a') is not what dbt-moengage writes")
    refused(generated.replace(HEADER, ""), "does not start with the header")


def test_a_missing_last_line_break_is_put_back() -> None:
    text = merge(None, exposures(spec("a")), Scope(), PATH).text
    result = merge(text.removesuffix("\n"), exposures(spec("a")), Scope(), PATH)
    assert result.text == text
    assert actions(result) == {"moengage_a": "unchanged"}


def test_crlf_line_breaks_are_kept() -> None:
    text = merge(None, exposures(spec("a"), spec("b")), Scope(), PATH).text.replace("\n", "\r\n")
    result = merge(text, exposures(spec("a"), spec("b")), Scope(), PATH)
    assert result.text == text
    removed = merge(result.text, exposures(spec("a")), Scope(), PATH).text
    assert "\n" not in removed.replace("\r\n", "")
    assert removed == merge(None, exposures(spec("a")), Scope(), PATH).text.replace("\n", "\r\n")


# --- stale and unselected -------------------------------------------------------------


def test_managed_exposures_of_gone_cohorts_are_removed() -> None:
    before = merge(None, exposures(spec("a"), spec("b"), spec("c")), Scope(), PATH).text
    result = merge(before, exposures(spec("a"), spec("c")), Scope(), PATH)
    assert list(entries(result.text)) == ["moengage_a", "moengage_c"]
    assert actions(result)["moengage_b"] == "removed"
    assert result.text == merge(None, exposures(spec("a"), spec("c")), Scope(), PATH).text


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
    before = merge(None, exposures(spec("a"), spec("b")), Scope(), PATH).text
    # Only b selected, and b is now in mirror mode; a's cohort is gone, but not selected.
    result = merge(before, exposures(spec("b", mode="mirror")), Scope(models=frozenset("b")), PATH)
    assert actions(result) == {"moengage_a": "kept", "moengage_b": "updated"}
    found = entries(result.text)
    assert found["moengage_a"] == entries(before)["moengage_a"]
    assert found["moengage_b"]["config"]["meta"]["moengage"]["mode"] == "mirror"


def test_a_duplicated_managed_exposure_is_written_once() -> None:
    one = merge(None, exposures(spec("a")), Scope(), PATH).text
    body = one.split("exposures:\n", 1)[1]
    result = merge(one + body, exposures(spec("a")), Scope(), PATH)
    assert result.text == one


def test_the_mark_is_also_read_from_top_level_meta() -> None:
    old = {
        "name": "moengage_old",
        "type": "application",
        "owner": {"name": "x"},
        "meta": {"moengage_managed": True, "moengage": {"model": "old"}},
    }
    result = merge(render_file([old]), [], Scope(), PATH)
    assert actions(result) == {"moengage_old": "removed"}
    assert entries(result.text) == {}


# --- files it refuses -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("exposures: [{name: a, type: ml}]\n", "holds exposure `a`"),
        ("exposures: {name: a}\n", "not a list"),
        ("- a\n- b\n", "not a YAML mapping"),
        ("exposures:\n  - name: [\n", "not valid YAML"),
        ("exposures: []\nexposures: []\n", "2 times"),
        ("a: 1\n---\nb: 2\n", "not valid YAML"),
        ("exposures:\n  - just a string\n", "holds the exposure 'just a string'"),
    ],
)
def test_files_that_cannot_be_edited_safely_are_refused(text: str, says: str) -> None:
    refused(text, says)


# --- hostile files (issue "Hardening, round three", item 10) --------------------------

STALE = merge(None, exposures(spec("gone")), Scope(), PATH).text


@pytest.mark.parametrize(
    ("text", "says"),
    [
        # An anchored list, aliased by another key: it was written twice (a ParserError).
        (
            "base: &list\n  - name: crm\n    type: dashboard\n    owner: {name: Ana}\n"
            "exposures: *list\n",
            "line 1: &list",
        ),
        # The exposures list anchored, aliased elsewhere: the alias got the new exposures.
        (
            "exposures: &shared\n  - name: crm\n    type: dashboard\n    owner: {name: Ana}\n"
            "extra: *shared\n",
            "line 1: &shared",
        ),
        # `exposures:` only through a merge key: a second `exposures:` was appended.
        ("defaults: &d\n  exposures: []\n<<: *d\n", "line 1: &d"),
        # An anchor in a stale managed exposure, aliased by the user's: an undefined alias.
        (
            STALE.replace("    owner:\n", "    owner: &owner\n", 1)
            + "  - name: crm\n    type: dashboard\n    owner: *owner\n",
            "line 9: &owner",
        ),
        # An anchor and its alias within one managed exposure.
        (STALE.replace("model: gone\n", "model: &m gone\n").replace("id: gone", "id: *m"), "&m"),
    ],
)
def test_anchors_and_aliases_are_refused_and_the_file_left_alone(
    tmp_path: Path, text: str, says: str
) -> None:
    options = project(tmp_path, {name: cohort_node(name, {"cohort_name": name}) for name in "abc"})
    target = default_path(tmp_path)
    target.parent.mkdir(parents=True)
    target.write_text(text)
    for check in (False, True):
        with pytest.raises(ExposureFileError, match="uses YAML anchors or aliases") as caught:
            update_exposures(options, check=check)
        assert says in str(caught.value)
    assert target.read_text() == text


def test_comments_under_a_stale_exposure_are_refused_not_deleted(tmp_path: Path) -> None:
    text = STALE.replace(
        "    type: application\n", "    type: application\n    # Ana: keep this audience\n", 1
    )
    options = project(tmp_path, {"a": cohort_node("a", {"cohort_name": "A"})})
    target = default_path(tmp_path)
    target.parent.mkdir(parents=True)
    target.write_text(text)
    with pytest.raises(ExposureFileError, match=r"line 8 \('# Ana: keep this audience'\)"):
        update_exposures(options)
    assert target.read_text() == text


def test_a_symlinked_file_is_written_through_the_link(tmp_path: Path) -> None:
    options = project(tmp_path, {"a": cohort_node("a", {"cohort_name": "A"})})
    shared = tmp_path / "shared" / "exposures.yml"
    shared.parent.mkdir()
    shared.write_text(STALE)
    link = default_path(tmp_path)
    link.parent.mkdir(parents=True)
    link.symlink_to(os.path.relpath(shared, link.parent))
    result = update_exposures(options)
    assert result.written and result.path == link
    assert actions(result) == {"moengage_a": "added", "moengage_gone": "removed"}
    assert link.is_symlink() and os.readlink(link) == os.path.relpath(shared, link.parent)
    assert list(entries(shared.read_text())) == ["moengage_a"]
    assert not update_exposures(options).changed
    assert sorted(p.name for p in link.parent.iterdir()) == [link.name]


def test_a_dangling_symlink_is_refused(tmp_path: Path) -> None:
    options = project(tmp_path, {"a": cohort_node("a", {"cohort_name": "A"})})
    link = default_path(tmp_path)
    link.parent.mkdir(parents=True)
    link.symlink_to("nowhere.yml")
    with pytest.raises(ExposureFileError, match=r"is a symlink to nowhere\.yml, which is no file"):
        update_exposures(options)
    assert link.is_symlink() and not link.exists()


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
    partial=st.sets(st.integers(0, len(POOL) - 1)),
)
def test_any_history_settles_in_a_file_it_owns(history: list[set[int]], partial: set[int]) -> None:
    """Whatever cohorts came and went before, the file ends with exactly the last run's
    cohorts, reads back as dbt-moengage's own, and a re-run changes nothing; a partial run
    then touches only its selection."""
    text: str | None = None
    for chosen in history:
        wanted = exposures(*(POOL[i] for i in sorted(chosen)))
        text = merge(text, wanted, Scope(), PATH).text
    assert text is not None and text.startswith(HEADER)
    wanted = exposures(*(POOL[i] for i in sorted(history[-1])))
    assert set(entries(text)) == {exposure.name for exposure in wanted}
    again = merge(text, wanted, Scope(), PATH)
    assert again.text == text
    assert set(actions(again).values()) <= {"unchanged"}
    selected = [POOL[i] for i in sorted(partial)]
    models = frozenset(s.model for s in selected)
    after = merge(text, exposures(*selected), Scope(models=models), PATH)
    before = entries(text)
    found = entries(after.text)
    for name, entry in before.items():
        if entry["config"]["meta"]["moengage"]["model"] not in models:
            assert found[name] == entry
    assert {s.model for s in selected} <= {
        e["config"]["meta"]["moengage"]["model"] for e in found.values()
    }
    assert merge(after.text, exposures(*selected), Scope(models=models), PATH).text == after.text

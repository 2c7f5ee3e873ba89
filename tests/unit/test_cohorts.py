"""cohorts: validating `meta.moengage` into cohort specs, every problem reported at once."""

from __future__ import annotations

from typing import Any

import pytest

from dbt_moengage.cohorts import (
    RESTRICTED_NAME_CHARS,
    CohortDefaults,
    CohortOwner,
    CohortSpec,
    Owner,
    Ownership,
    discover,
    format_duration,
    parse_cohort,
    parse_duration,
)
from dbt_moengage.errors import CohortError, CohortSpecError
from dbt_moengage.manifest import ModelNode


def model(
    name: str = "high_value_users",
    meta: Any = None,
    *,
    description: str = "",
    relation_name: str | None = '"db"."main"."high_value_users"',
    meta_source: str = "config.meta",
) -> ModelNode:
    """A cohort node as the manifest stage would yield it."""
    return ModelNode(
        unique_id=f"model.shop.{name}",
        name=name,
        relation_name=relation_name,
        description=description,
        meta={"cohort_name": ".High Value Users"} if meta is None else meta,
        meta_source=meta_source,
    )


def ok(node: ModelNode) -> CohortSpec:
    """parse_cohort, asserting that it succeeds."""
    spec, problems = parse_cohort(node)
    assert problems == []
    assert spec is not None
    return spec


def problems_of(node: ModelNode) -> list[CohortSpecError]:
    """parse_cohort, asserting that it fails; every problem it found."""
    spec, problems = parse_cohort(node)
    assert spec is None
    assert problems
    return problems


def only_problem(node: ModelNode) -> CohortSpecError:
    """parse_cohort, asserting exactly one problem."""
    (problem,) = problems_of(node)
    return problem


def assert_names(problem: CohortSpecError, model_name: str, field: str, value: object) -> None:
    """The message names the model, the field and the bad value."""
    message = str(problem)
    assert (problem.model, problem.field, problem.value) == (model_name, field, value)
    assert f"'{model_name}'" in message
    where = field if field.startswith("config.") else f"meta.moengage.{field}"
    assert where in message
    assert repr(value) in message


# Defaults


def test_defaults() -> None:
    spec = ok(model("high_value_users", {"cohort_name": ".High Value Users"}))
    assert spec == CohortSpec(
        model="high_value_users",
        unique_id="model.shop.high_value_users",
        relation_name='"db"."main"."high_value_users"',
        cohort_name=".High Value Users",
        cohort_id="high_value_users",
        description="Built by dbt model high_value_users",
        uid_column="uid",
        mode="add",
    )


def test_description_comes_from_the_model_description() -> None:
    spec = ok(model(meta={"cohort_name": ".X"}, description="Spent over 1000 this year"))
    assert spec.description == "Spent over 1000 this year"


def test_meta_description_wins_over_the_model_description() -> None:
    node = model(meta={"cohort_name": ".X", "description": "From meta"}, description="Model doc")
    assert ok(node).description == "From meta"


def test_every_field_given() -> None:
    meta = {
        "cohort_name": ".Recently Active (30d)",
        "cohort_id": "recently-active-30d",
        "description": "Seen in the last 30 days",
        "uid_column": "user_id",
        "mode": "add",
    }
    spec = ok(model("recently_active", meta))
    assert spec.cohort_name == ".Recently Active (30d)"
    assert spec.cohort_id == "recently-active-30d"
    assert spec.description == "Seen in the last 30 days"
    assert spec.uid_column == "user_id"
    assert spec.mode == "add"


@pytest.mark.parametrize(
    "name", [".A", ".Ünïcödé 用户 🎉", ".with-dash_and.dots (1) & more!", ".🎉", "7"]
)
def test_acceptable_cohort_names(name: str) -> None:
    assert ok(model(meta={"cohort_name": name})).cohort_name == name


# One problem each


@pytest.mark.parametrize("meta", [".High Value", ["cohort_name", ".X"], 42, True])
def test_meta_not_a_mapping(meta: object) -> None:
    problem = only_problem(model("hv", meta))
    assert (problem.model, problem.field, problem.value) == ("hv", "", meta)
    message = str(problem)
    assert "'hv'" in message and "meta.moengage" in message and repr(meta) in message
    assert "must be a mapping" in message
    assert "meta.moengage. " not in message


def test_problems_are_cohort_errors() -> None:
    problem = only_problem(model("hv", "x"))
    assert isinstance(problem, CohortError)


def test_missing_cohort_name() -> None:
    problem = only_problem(model("hv", {"cohort_id": "hv"}))
    assert_names(problem, "hv", "cohort_name", None)
    assert "is required" in str(problem)


@pytest.mark.parametrize(
    "name",
    ["", " ", ".", ". ", " . ", "...", ".-_", "\u200b", ".\u200b\u2060", "\u3164", ". \u2800"],
)
def test_cohort_name_must_name_something(name: str) -> None:
    problem = only_problem(model("hv", {"cohort_name": name}))
    assert_names(problem, "hv", "cohort_name", name)
    assert "must name the cohort" in str(problem)


@pytest.mark.parametrize("name", [" .Leading space", "Trailing ", "\tTabbed"])
def test_cohort_name_with_surrounding_spaces(name: str) -> None:
    problem = only_problem(model("hv", {"cohort_name": name}))
    assert_names(problem, "hv", "cohort_name", name)
    assert "leading or trailing spaces" in str(problem)
    assert repr(name.strip()) in str(problem)


@pytest.mark.parametrize("name", ["High Value", ".High Value", "..Two dots", "a"])
def test_cohort_name_with_or_without_a_leading_period(name: str) -> None:
    # MoEngage's API reference sends ".Partner_Name"; its field description says a name
    # must not start with a period: both are accepted, neither required.
    assert ok(model("hv", {"cohort_name": name})).cohort_name == name


@pytest.mark.parametrize("char", list('|*?\\:<>=$"'))
def test_cohort_name_restricted_characters(char: str) -> None:
    name = f".High {char} Value"
    problem = only_problem(model("hv", {"cohort_name": name}))
    assert_names(problem, "hv", "cohort_name", name)
    assert f"contains {char}," in str(problem)
    assert "forbids" in str(problem)


def test_restricted_characters_match_the_contract() -> None:
    assert set(RESTRICTED_NAME_CHARS) == set('|*?\\:<>=$"')


def test_every_restricted_character_is_listed() -> None:
    problem = only_problem(model("hv", {"cohort_name": ".a|b*c$"}))
    assert "contains $ * |," in str(problem)


@pytest.mark.parametrize("name", [123, 1.5, ["."], {"a": 1}, True])
def test_cohort_name_not_a_string(name: object) -> None:
    problem = only_problem(model("hv", {"cohort_name": name}))
    assert_names(problem, "hv", "cohort_name", name)
    assert "must be a string" in str(problem)


@pytest.mark.parametrize("cohort_id", ["", "   ", 7, None, ["a"]])
def test_cohort_id_empty_or_not_a_string(cohort_id: object) -> None:
    problem = only_problem(model("hv", {"cohort_name": ".HV", "cohort_id": cohort_id}))
    assert_names(problem, "hv", "cohort_id", cohort_id)
    assert "must be a non-empty string" in str(problem)


@pytest.mark.parametrize("cohort_id", [" hv", "hv ", "\thv\n", "x" * 256])
def test_cohort_id_surrounding_spaces_or_too_long(cohort_id: str) -> None:
    problem = only_problem(model("hv", {"cohort_name": ".HV", "cohort_id": cohort_id}))
    assert_names(problem, "hv", "cohort_id", cohort_id)
    assert "surrounding spaces" in str(problem)


def test_cohort_id_of_255_characters_is_fine() -> None:
    assert ok(model(meta={"cohort_name": ".HV", "cohort_id": "x" * 255})).cohort_id == "x" * 255


@pytest.mark.parametrize("uid_column", ["", "  ", None, 3])
def test_uid_column_empty(uid_column: object) -> None:
    problem = only_problem(model("hv", {"cohort_name": ".HV", "uid_column": uid_column}))
    assert_names(problem, "hv", "uid_column", uid_column)
    assert "must be a non-empty column name" in str(problem)


@pytest.mark.parametrize("description", [5, ["a"], {"text": "x"}])
def test_description_not_a_string(description: object) -> None:
    problem = only_problem(model("hv", {"cohort_name": ".HV", "description": description}))
    assert_names(problem, "hv", "description", description)
    assert "must be a string" in str(problem)


@pytest.mark.parametrize("mode", ["replace", "MIRROR", "ADD", "", None])
def test_unknown_mode(mode: object) -> None:
    problem = only_problem(model("hv", {"cohort_name": ".HV", "mode": mode}))
    assert_names(problem, "hv", "mode", mode)
    assert "unknown mode" in str(problem)
    assert "supported: add" in str(problem)


def test_unknown_key_suggests_the_close_one() -> None:
    problem = only_problem(model("hv", {"cohort_name": ".HV", "uid_colum": "user_id"}))
    assert_names(problem, "hv", "uid_colum", "user_id")
    assert "unknown key" in str(problem)
    assert "did you mean 'uid_column'?" in str(problem)


def test_unknown_key_far_from_any_lists_the_known_keys() -> None:
    problem = only_problem(model("hv", {"cohort_name": ".HV", "zzz": 1}))
    assert_names(problem, "hv", "zzz", 1)
    assert "known keys: cohort_name, cohort_id, description, uid_column, mode" in str(problem)


def test_ephemeral_model_has_no_relation() -> None:
    problem = only_problem(model("hv", {"cohort_name": ".HV"}, relation_name=None))
    assert_names(problem, "hv", "config.materialized", "ephemeral")
    assert str(problem).startswith("model 'hv': config.materialized = 'ephemeral'")
    assert "materialize it as a table or view" in str(problem)


# Several problems at once


def test_every_problem_of_one_model_is_reported() -> None:
    meta = {
        "cohort_name": "No Period $",
        "cohort_id": " spaced ",
        "uid_column": "",
        "mode": "sync_all",
        "uid_colum": "user_id",
        "descripton": "typo",
    }
    problems = problems_of(model("messy", meta, relation_name=None))
    fields = sorted(p.field for p in problems)
    assert fields == sorted(
        [
            "cohort_name",
            "cohort_id",
            "uid_column",
            "mode",
            "uid_colum",
            "descripton",
            "config.materialized",
        ]
    )
    assert all(p.model == "messy" for p in problems)
    assert all("'messy'" in str(p) for p in problems)
    by_field = {p.field: p for p in problems}
    assert "did you mean 'description'?" in str(by_field["descripton"])
    assert by_field["cohort_id"].value == " spaced "
    assert by_field["mode"].value == "sync_all"


# discover


def cohort(name: str, **meta: Any) -> ModelNode:
    """A valid-by-default cohort model called `name`."""
    return model(name, {"cohort_name": f".{name}", **meta}, relation_name=f"main.{name}")


def test_discover_splits_specs_and_problems() -> None:
    found = discover([cohort("a"), model("bad", {"cohort_name": "a|b"}), cohort("b")])
    assert [s.model for s in found.specs] == ["a", "b"]
    assert [(p.model, p.field) for p in found.problems] == [("bad", "cohort_name")]


def test_discover_refuses_a_shared_cohort_id_for_both_models() -> None:
    nodes = [cohort("a", cohort_id="shared"), cohort("b"), cohort("c", cohort_id="shared")]
    found = discover(nodes).settle()
    assert [s.model for s in found.specs] == ["b"]
    assert sorted(p.model for p in found.problems) == ["a", "c"]
    for problem in found.problems:
        assert_names(problem, problem.model, "cohort_id", "shared")
        other = "c" if problem.model == "a" else "a"
        assert f"is shared with model(s) {other} in the workspace" in str(problem)
        assert "give each model its own cohort_id" in str(problem)


def test_discover_default_cohort_id_can_clash_with_an_explicit_one() -> None:
    found = discover([cohort("a"), cohort("b", cohort_id="a")]).settle()
    assert found.specs == []
    assert sorted(p.model for p in found.problems) == ["a", "b"]


def test_discover_only_counts_valid_specs_for_shared_ids() -> None:
    # The invalid model is reported for its own problem, not as a clash.
    bad = model("bad", {"cohort_name": "a|b", "cohort_id": "a"})
    found = discover([cohort("a"), bad]).settle()
    assert [s.model for s in found.specs] == ["a"]
    assert [(p.model, p.field) for p in found.problems] == [("bad", "cohort_name")]


def test_discover_select_by_name_or_unique_id() -> None:
    nodes = [cohort("a"), cohort("b"), cohort("c"), model("bad", "x")]
    assert [s.model for s in discover(nodes, select=["a", "model.shop.c"]).specs] == ["a", "c"]
    found = discover(nodes, select=["b"])
    assert [s.model for s in found.specs] == ["b"]
    assert found.problems == []


def test_discover_select_nothing_matching_gives_nothing() -> None:
    found = discover([cohort("a")], select=["zzz"])
    assert (found.specs, found.problems) == ([], [])


def test_discover_empty_select_takes_every_cohort() -> None:
    nodes = [cohort("a"), cohort("b")]
    assert [s.model for s in discover(nodes, select=()).specs] == ["a", "b"]
    assert [s.model for s in discover(iter(nodes)).specs] == ["a", "b"]


def test_a_cohort_id_shared_with_an_unselected_model_is_still_refused() -> None:
    nodes = [cohort("a", cohort_id="shared"), cohort("b"), cohort("c", cohort_id="shared")]
    found = discover(nodes, select=["a", "b"]).settle()
    assert [s.model for s in found.specs] == ["b"]
    assert [(p.model, p.field) for p in found.problems] == [("a", "cohort_id")]
    assert "is shared with model(s) c" in str(found.problems[0])


def test_a_live_cohort_id_keeps_syncing_and_the_newcomer_is_refused() -> None:
    nodes = [cohort("live", cohort_id="shared"), cohort("newcomer", cohort_id="shared")]
    owners: Ownership = {(None, "shared"): Owner(model="live")}
    found = discover(nodes).settle(owners)
    assert [s.model for s in found.specs] == ["live"]
    (problem,) = found.problems
    assert_names(problem, "newcomer", "cohort_id", "shared")
    assert "already used in the workspace by model live, which keeps syncing" in str(problem)


def test_a_cohort_id_owned_by_a_model_outside_the_conflict_refuses_both() -> None:
    nodes = [cohort("a", cohort_id="shared"), cohort("b", cohort_id="shared")]
    owners: Ownership = {(None, "shared"): Owner(model="gone")}
    found = discover(nodes).settle(owners)
    assert found.specs == [] and sorted(p.model for p in found.problems) == ["a", "b"]


def test_the_same_cohort_id_in_two_destinations_is_no_conflict() -> None:
    nodes = [cohort("us", cohort_id="shared"), cohort("eu", cohort_id="shared", destination="eu")]
    found = discover(nodes).settle()
    assert [s.model for s in found.specs] == ["us", "eu"]
    assert found.problems == []


def test_a_shared_cohort_name_is_refused_for_every_model() -> None:
    # A folder's +meta block gives every model of the folder the same name.
    nodes = [
        cohort("a", cohort_name=".Enterprise"),
        cohort("b", cohort_name=".Enterprise"),
        cohort("c"),
    ]
    found = discover(nodes).settle()
    assert [s.model for s in found.specs] == ["c"]
    assert sorted(p.model for p in found.problems) == ["a", "b"]
    for problem in found.problems:
        assert_names(problem, problem.model, "cohort_name", ".Enterprise")
        assert "give each cohort its own cohort_name" in str(problem)
        assert "+meta" in str(problem)


def test_a_live_cohort_name_keeps_syncing() -> None:
    nodes = [cohort("a", cohort_name=".Same"), cohort("b", cohort_name=".Same")]
    owners: Ownership = {
        (None, "a"): Owner(model="a", name_sent=".Same"),
        (None, "b"): Owner(model="b"),
    }
    found = discover(nodes).settle(owners)
    assert [s.model for s in found.specs] == ["a"]
    assert [(p.model, p.field) for p in found.problems] == [("b", "cohort_name")]


def test_settle_keeps_the_manifest_order() -> None:
    nodes = [cohort("a", cohort_id="x"), cohort("b"), cohort("c", cohort_id="x")]
    owners: Ownership = {(None, "x"): Owner(model="a")}
    found = discover(nodes).settle(owners)
    assert [s.model for s in found.specs] == ["a", "b"]


# resend_after and max_remove_fraction


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30m", 1_800),
        ("12h", 43_200),
        ("7d", 604_800),
        ("1s", 1),
        ("2w", 1_209_600),
        ("0", 0),
        (0, 0),
        ("off", None),
        ("OFF", None),
        (" 3D ", 259_200),
    ],
)
def test_durations(value: object, seconds: int | None) -> None:
    assert parse_duration(value) == seconds
    spec = ok(model("hv", {"cohort_name": "HV", "resend_after": value}))
    assert spec.resend_after == seconds


@pytest.mark.parametrize("value", ["7", "7 days", "-1d", "1.5h", "", "soon", 7, True, None, [1]])
def test_bad_durations_name_the_field(value: object) -> None:
    problem = only_problem(model("hv", {"cohort_name": "HV", "resend_after": value}))
    assert_names(problem, "hv", "resend_after", value)
    assert "30m, 12h, 7d or 1s" in str(problem) and "off for never" in str(problem)


@pytest.mark.parametrize("seconds", [None, 0, 1, 59, 60, 3_600, 86_400, 604_800, 90_061])
def test_format_duration_round_trips(seconds: int | None) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_resend_after_defaults_to_seven_days_or_the_run_default() -> None:
    assert ok(model("hv", {"cohort_name": "HV"})).resend_after == 7 * 86_400
    spec, _ = parse_cohort(model("hv", {"cohort_name": "HV"}), CohortDefaults(resend_after=60))
    assert spec is not None and spec.resend_after == 60
    meta = {"cohort_name": "HV", "resend_after": "off"}
    spec, _ = parse_cohort(model("hv", meta), CohortDefaults(resend_after=60))
    assert spec is not None and spec.resend_after is None


@pytest.mark.parametrize("fraction", [0.1, 0.5, 1, 1.0])
def test_max_remove_fraction(fraction: float) -> None:
    meta = {"cohort_name": "HV", "mode": "mirror", "max_remove_fraction": fraction}
    assert ok(model("hv", meta)).max_remove_fraction == fraction
    assert ok(model("hv", {"cohort_name": "HV"})).max_remove_fraction == 0.5


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5, "half", True, None])
def test_bad_max_remove_fraction(fraction: object) -> None:
    problem = only_problem(model("hv", {"cohort_name": "HV", "max_remove_fraction": fraction}))
    assert_names(problem, "hv", "max_remove_fraction", fraction)
    assert "above 0 and at most 1" in str(problem)


@pytest.mark.parametrize("fraction", [0.05, 0.5, 1, 3])
def test_alert_change_fraction(fraction: float) -> None:
    meta = {"cohort_name": "HV", "alert_change_fraction": fraction}
    assert ok(model("hv", meta)).alert_change_fraction == fraction
    assert ok(model("hv", {"cohort_name": "HV"})).alert_change_fraction == 0.5


@pytest.mark.parametrize("fraction", [0, -0.5, "half", "0.5", True, None, float("inf")])
def test_bad_alert_change_fraction(fraction: object) -> None:
    problem = only_problem(model("hv", {"cohort_name": "HV", "alert_change_fraction": fraction}))
    assert_names(problem, "hv", "alert_change_fraction", fraction)
    assert "must be a number above 0" in str(problem)


@pytest.mark.parametrize("mode", ["add", "mirror"])
def test_supported_modes(mode: str) -> None:
    spec, problems = parse_cohort(model("hv", {"cohort_name": ".HV", "mode": mode}))
    assert problems == []
    assert spec is not None and spec.mode == mode


# owner: who answers for the audience (the owner of its dbt exposure)


@pytest.mark.parametrize(
    ("owner", "expected"),
    [
        (None, None),
        ({"name": "CRM team"}, CohortOwner(name="CRM team")),
        ({"email": "crm@example.com"}, CohortOwner(email="crm@example.com")),
        ({"name": "CRM", "email": "crm@example.com"}, CohortOwner("CRM", "crm@example.com")),
    ],
)
def test_owner(owner: object, expected: CohortOwner | None) -> None:
    meta: dict[str, object] = {"cohort_name": "HV"}
    if owner is not None:
        meta["owner"] = owner
    assert ok(model("hv", meta)).owner == expected


@pytest.mark.parametrize(
    ("owner", "field", "value", "says"),
    [
        ("CRM team", "owner", "CRM team", "must be a mapping"),
        ({}, "owner", {}, "needs a name or an email"),
        ({"name": ""}, "owner.name", "", "non-blank"),
        ({"name": " CRM"}, "owner.name", " CRM", "without spaces"),
        ({"name": 3}, "owner.name", 3, "non-blank string"),
        ({"email": "crm at example.com"}, "owner.email", "crm at example.com", "not an email"),
        ({"name": "CRM", "team": "x"}, "owner.team", "x", "unknown key"),
    ],
)
def test_bad_owner_names_the_field(owner: object, field: str, value: object, says: str) -> None:
    problem = only_problem(model("hv", {"cohort_name": "HV", "owner": owner}))
    assert_names(problem, "hv", field, value)
    assert says in str(problem)


def test_parentheses_in_a_name_are_a_warning_not_a_problem() -> None:
    from dbt_moengage.cohorts import doubtful_names

    kept = ok(model("hv", {"cohort_name": ".High Value (30d)"}))
    plain = ok(model("other", {"cohort_name": ".Plain"}))
    (warning,) = doubtful_names([kept, plain])
    assert "model 'hv'" in warning and "'.High Value (30d)'" in warning
    assert "parentheses" in warning

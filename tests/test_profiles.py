"""warehouse.profiles: finding profiles.yml as dbt does and rendering its Jinja."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dbt_moengage.errors import ConfigError, ProfileError
from dbt_moengage.warehouse.profiles import (
    ProfileTarget,
    find_profiles_file,
    load_profile_target,
    project_profile_name,
    render,
)

SECRET = "pw-3c9f1a-do-not-leak"


class Folders:
    """A project, four candidate profile folders and an environment with HOME in tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.project = tmp_path / "project"
        self.flag = tmp_path / "flag"
        self.env_dir = tmp_path / "env_dir"
        self.cwd = tmp_path / "cwd"
        self.home = tmp_path / "home"
        for folder in (self.project, self.flag, self.env_dir, self.cwd, self.home / ".dbt"):
            folder.mkdir(parents=True)
        self.project_yml({"name": "shop", "profile": "shop"})
        self.environ: dict[str, str] = {"HOME": str(self.home)}

    def project_yml(self, data: object) -> None:
        """Write the project's dbt_project.yml."""
        (self.project / "dbt_project.yml").write_text(yaml.safe_dump(data), encoding="utf-8")

    def profiles(self, folder: Path, target: str = "dev", **outputs: dict[str, Any]) -> Path:
        """Write a `shop` profile in `folder`, its outputs tagged with the folder's name."""
        outputs = outputs or {"dev": {"type": "duckdb", "path": f"{folder.name}.duckdb"}}
        path = folder / "profiles.yml"
        data = {"shop": {"target": target, "outputs": outputs}}
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return path

    def load(self, profiles_dir: Path | None = None, target: str | None = None) -> ProfileTarget:
        """load_profile_target with this environment and current folder."""
        return load_profile_target(
            self.project, profiles_dir, target=target, environ=self.environ, cwd=self.cwd
        )

    def find(self, profiles_dir: Path | None = None) -> Path:
        """find_profiles_file with this environment and current folder."""
        return find_profiles_file(profiles_dir, self.project, self.environ, self.cwd)


@pytest.fixture
def folders(tmp_path: Path) -> Folders:
    return Folders(tmp_path)


# Where profiles.yml comes from


def test_resolution_order(folders: Folders) -> None:
    for folder in (folders.flag, folders.env_dir, folders.cwd, folders.home / ".dbt"):
        folders.profiles(folder)
    folders.environ["DBT_PROFILES_DIR"] = str(folders.env_dir)

    assert folders.find(folders.flag) == folders.flag / "profiles.yml"
    assert folders.load(folders.flag).fields["path"] == "flag.duckdb"

    assert folders.find() == folders.env_dir / "profiles.yml"
    assert folders.load().fields["path"] == "env_dir.duckdb"

    del folders.environ["DBT_PROFILES_DIR"]
    assert folders.find() == folders.cwd / "profiles.yml"
    assert folders.load().fields["path"] == "cwd.duckdb"

    (folders.cwd / "profiles.yml").unlink()
    assert folders.find() == folders.home / ".dbt" / "profiles.yml"
    assert folders.load().fields["path"] == ".dbt.duckdb"


def test_empty_dbt_profiles_dir_is_ignored(folders: Folders) -> None:
    folders.profiles(folders.cwd)
    folders.environ["DBT_PROFILES_DIR"] = ""
    assert folders.find() == folders.cwd / "profiles.yml"


@pytest.mark.parametrize("where", ["flag", "env"])
def test_a_named_folder_without_profiles_does_not_fall_back(folders: Folders, where: str) -> None:
    # A profile in the current folder and in ~/.dbt must not be picked silently.
    folders.profiles(folders.cwd)
    folders.profiles(folders.home / ".dbt")
    if where == "flag":
        source, chosen = "--profiles-dir", folders.flag
        args: tuple[Path | None] = (folders.flag,)
    else:
        source, chosen = "DBT_PROFILES_DIR", folders.env_dir
        folders.environ["DBT_PROFILES_DIR"] = str(folders.env_dir)
        args = (None,)
    with pytest.raises(ProfileError) as info:
        folders.find(*args)
    message = str(info.value)
    assert f"no profiles.yml in {chosen} (from {source})" in message
    assert "--profiles-dir" in message and "DBT_PROFILES_DIR" in message


def test_nothing_anywhere_names_home_dbt(folders: Folders) -> None:
    with pytest.raises(ProfileError) as info:
        folders.find()
    message = str(info.value)
    assert f"no profiles.yml in {folders.home / '.dbt'} (from ~/.dbt)" in message
    assert str(folders.project) in message


def test_profile_error_is_a_config_error(folders: Folders) -> None:
    with pytest.raises(ConfigError):
        folders.find()


# The profile named by the project


def test_profile_name_from_dbt_project(folders: Folders) -> None:
    assert project_profile_name(folders.project) == "shop"


def test_missing_dbt_project(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as info:
        project_profile_name(tmp_path)
    message = str(info.value)
    assert f"no dbt_project.yml in {tmp_path}" in message
    assert "--project-dir" in message


@pytest.mark.parametrize("data", [{"name": "shop"}, {"profile": ""}, {"profile": 3}, [1], None])
def test_dbt_project_without_profile(folders: Folders, data: object) -> None:
    folders.project_yml(data)
    with pytest.raises(ProfileError) as info:
        project_profile_name(folders.project)
    message = str(info.value)
    assert str(folders.project / "dbt_project.yml") in message
    assert "names no `profile:`" in message


def test_dbt_project_that_is_not_yaml(folders: Folders) -> None:
    (folders.project / "dbt_project.yml").write_text("profile: [unclosed", encoding="utf-8")
    with pytest.raises(ProfileError, match="cannot read"):
        project_profile_name(folders.project)


def test_profile_missing_from_profiles(folders: Folders) -> None:
    folders.project_yml({"profile": "other"})
    path = folders.profiles(folders.cwd)
    with pytest.raises(ProfileError) as info:
        folders.load()
    assert f"profile 'other' is not defined in {path}" in str(info.value)


def test_profiles_that_are_not_yaml(folders: Folders) -> None:
    (folders.cwd / "profiles.yml").write_text("shop: {target: [", encoding="utf-8")
    with pytest.raises(ProfileError, match="cannot read"):
        folders.load()


# Targets


def two_targets(folders: Folders) -> Path:
    """A profile with dev (the default) and prod."""
    return folders.profiles(
        folders.cwd,
        target="dev",
        dev={"type": "duckdb", "path": "dev.duckdb"},
        prod={"type": "snowflake", "account": "acme"},
    )


def test_target_defaults_to_the_profile_target(folders: Folders) -> None:
    path = two_targets(folders)
    loaded = folders.load()
    assert loaded == ProfileTarget("shop", "dev", path, {"type": "duckdb", "path": "dev.duckdb"})
    assert loaded.type == "duckdb"


def test_target_argument_overrides(folders: Folders) -> None:
    two_targets(folders)
    loaded = folders.load(target="prod")
    assert loaded.target_name == "prod"
    assert loaded.type == "snowflake"


def test_unknown_target_lists_the_known_ones(folders: Folders) -> None:
    path = two_targets(folders)
    with pytest.raises(ProfileError) as info:
        folders.load(target="staging")
    message = str(info.value)
    assert f"profile 'shop' in {path} has no target 'staging'" in message
    assert "(targets: dev, prod)" in message
    assert "--target" in message


def test_profile_target_may_use_env_var(folders: Folders) -> None:
    folders.profiles(
        folders.cwd,
        target="{{ env_var('SHOP_TARGET', 'dev') }}",
        dev={"type": "duckdb"},
        prod={"type": "snowflake"},
    )
    assert folders.load().target_name == "dev"
    folders.environ["SHOP_TARGET"] = "prod"
    assert folders.load().target_name == "prod"


def test_output_without_type(folders: Folders) -> None:
    folders.profiles(folders.cwd, dev={"path": "x.duckdb"})
    with pytest.raises(ProfileError, match=r"shop\.outputs\.dev has no `type`"):
        folders.load()


# Rendering


def test_env_var_is_rendered_in_the_target(folders: Folders) -> None:
    folders.profiles(
        folders.cwd,
        dev={
            "type": "snowflake",
            "user": "{{ env_var('SF_USER') }}",
            "password": "{{ env_var('SF_PASSWORD') }}",
            "role": "{{ env_var('SF_ROLE', 'TRANSFORMER') }}",
            "port": "{{ env_var('SF_PORT') | as_number }}",
            "keepalive": "{{ env_var('SF_KEEPALIVE') | as_bool }}",
            "threads": 4,
        },
    )
    folders.environ.update(SF_USER="dbt", SF_PASSWORD=SECRET, SF_PORT="443", SF_KEEPALIVE="True")
    fields = folders.load().fields
    assert fields == {
        "type": "snowflake",
        "user": "dbt",
        "password": SECRET,
        "role": "TRANSFORMER",
        "port": 443,
        "keepalive": True,
        "threads": 4,
    }


def test_missing_env_var_names_it_and_leaks_nothing(folders: Folders) -> None:
    folders.profiles(
        folders.cwd,
        dev={
            "type": "snowflake",
            "password": "{{ env_var('SF_PASSWORD') }}",
            "user": "{{ env_var('SF_USER') }}",
        },
    )
    folders.environ["SF_PASSWORD"] = SECRET
    with pytest.raises(ProfileError) as info:
        folders.load()
    message = str(info.value)
    assert "'SF_USER'" in message
    assert "shop.outputs.dev.user" in message
    assert "export it or give env_var a default" in message
    assert SECRET not in message
    assert SECRET not in repr(info.value)
    assert info.value.__cause__ is None


def test_render_plain_values_untouched() -> None:
    assert render("plain {text}", {}, "w") == "plain {text}"
    assert render(5, {}, "w") == 5
    assert render(None, {}, "w") is None
    assert render(True, {}, "w") is True


def test_env_var_with_default() -> None:
    assert render("{{ env_var('NOPE', 'fallback') }}", {}, "w") == "fallback"
    assert render("{{ env_var('SET', 'fallback') }}", {"SET": "given"}, "w") == "given"
    assert render("{{ env_var('SET', '') }}x", {}, "w") == "x"


def test_env_var_inside_text() -> None:
    assert render("{{ env_var('H') }}:{{ env_var('P') }}", {"H": "db", "P": "5432"}, "w") == (
        "db:5432"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("5432", 5432), ("0", 0), ("-3", -3), ("1.5", 1.5), ("0123", 123), (" 7 ", 7)],
)
def test_as_number_gives_a_number(raw: str, expected: float) -> None:
    result = render("{{ env_var('N') | as_number }}", {"N": raw}, "w")
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize("raw", ["abc", "True", "", "1:30", SECRET])
def test_as_number_refuses_what_is_not_a_number(raw: str) -> None:
    with pytest.raises(ProfileError) as info:
        render("{{ env_var('N') | as_number }}", {"N": raw}, "dev.port")
    assert "dev.port" in str(info.value)
    assert "as_number" in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("raw", "expected"), [("True", True), ("False", False), ("true", True), ("false", False)]
)
def test_as_bool_gives_a_bool(raw: str, expected: bool) -> None:
    assert render("{{ env_var('B') | as_bool }}", {"B": raw}, "w") is expected


@pytest.mark.parametrize("raw", ["1", "maybe", "", SECRET])
def test_as_bool_refuses_what_is_not_a_bool(raw: str) -> None:
    with pytest.raises(ProfileError) as info:
        render("{{ env_var('B') | as_bool }}", {"B": raw}, "dev.keepalive")
    assert "dev.keepalive" in str(info.value)
    assert SECRET not in str(info.value)


def test_as_text_and_as_native() -> None:
    assert render("{{ env_var('N') | as_text }}", {"N": "5"}, "w") == "5"
    assert render("{{ env_var('N') | as_native }}", {"N": "5"}, "w") == 5


def test_render_recurses_into_dicts_and_lists() -> None:
    value = {
        "a": "{{ env_var('A') }}",
        "nested": {"list": ["{{ env_var('B') }}", {"n": "{{ env_var('N') | as_number }}"}, 3]},
        "keep": "no jinja",
    }
    environ = {"A": "alpha", "B": "beta", "N": "42"}
    assert render(value, environ, "p") == {
        "a": "alpha",
        "nested": {"list": ["beta", {"n": 42}, 3]},
        "keep": "no jinja",
    }


def test_missing_env_var_deep_inside_names_the_path() -> None:
    value = {"session": {"params": ["ok", "{{ env_var('GONE') }}"]}}
    with pytest.raises(ProfileError) as info:
        render(value, {"OTHER": SECRET}, "shop.outputs.dev")
    message = str(info.value)
    assert message.startswith("shop.outputs.dev.session.params[1]: env var 'GONE'")
    assert SECRET not in message


@pytest.mark.parametrize(
    "template",
    [
        "{{ undefined_name }}",
        "{{ env_var('X'",
        "{{ env_var('X') + 1 }}",
        "{{ ''.__class__.__mro__ }}",
    ],
)
def test_bad_templates_are_profile_errors(template: str) -> None:
    with pytest.raises(ProfileError) as info:
        render(template, {"X": SECRET}, "shop.outputs.dev.f")
    assert str(info.value).startswith("shop.outputs.dev.f: cannot render the template")
    assert SECRET not in str(info.value)

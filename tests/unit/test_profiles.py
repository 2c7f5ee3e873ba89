"""warehouse.profiles: the profile found in dbt's order and rendered by dbt itself.

Each test compares with what dbt's own `load_profile` makes of the same files, so the
runner can never drift from `dbt build`: env_var(), var() with --vars, the `profile:` of
dbt_project.yml, --profile, --target and DBT_TARGET, DBT_PROFILES_DIR."""

from __future__ import annotations

import os
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbt_moengage.errors import ConfigError, ProfileError
from dbt_moengage.warehouse.profiles import (
    ProfileTarget,
    find_profiles_dir,
    load_profile_target,
    parse_vars,
)

SECRET = "pw-3c9f1a-do-not-leak"


class Folders:
    """A project, four candidate profile folders and an environment with HOME in tmp_path."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.project = tmp_path / "project"
        self.flag = tmp_path / "flag"
        self.env_dir = tmp_path / "env_dir"
        self.cwd = tmp_path / "cwd"
        self.home = tmp_path / "home"
        for folder in (self.project, self.flag, self.env_dir, self.cwd, self.home / ".dbt"):
            folder.mkdir(parents=True)
        self.project_yml({"name": "shop", "version": "1.0", "profile": "shop"})
        self.environ: dict[str, str] = {"HOME": str(self.home)}
        # dbt's default profiles folder is the process's: its working folder, its HOME.
        monkeypatch.chdir(self.cwd)
        monkeypatch.setenv("HOME", str(self.home))

    def project_yml(self, data: object) -> None:
        (self.project / "dbt_project.yml").write_text(yaml.safe_dump(data), encoding="utf-8")

    def profiles(self, folder: Path, text: str | None = None, **outputs: dict[str, Any]) -> Path:
        """Write profiles.yml in `folder`: `text` as is, else a `shop` profile of `outputs`."""
        path = folder / "profiles.yml"
        if text is None:
            outputs = outputs or {"dev": {"type": "duckdb", "path": f"{folder.name}.duckdb"}}
            text = yaml.safe_dump({"shop": {"target": "dev", "outputs": outputs}})
        path.write_text(text, encoding="utf-8")
        return path

    def load(self, profiles_dir: Path | None = None, **kwargs: Any) -> ProfileTarget:
        return load_profile_target(self.project, profiles_dir, environ=self.environ, **kwargs)


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Folders:
    return Folders(tmp_path, monkeypatch)


def dbts_own(folders: Folders, folder: Path, **kwargs: Any) -> Any:
    """What dbt's own load_profile makes of the project and `folder`/profiles.yml."""
    from dbt.config.runtime import load_profile
    from dbt.flags import set_from_args
    from dbt_common.context import set_invocation_context

    set_invocation_context(folders.environ)
    set_from_args(Namespace(PROFILES_DIR=str(folder), PROJECT_DIR=str(folders.project)), None)
    return load_profile(
        str(folders.project),
        kwargs.get("cli_vars", {}),
        kwargs.get("profile"),
        kwargs.get("target"),
    )


# -- where profiles.yml comes from ---------------------------------------------------------


def test_resolution_order(folders: Folders) -> None:
    for folder in (folders.flag, folders.env_dir, folders.cwd, folders.home / ".dbt"):
        folders.profiles(folder)
    folders.environ["DBT_PROFILES_DIR"] = str(folders.env_dir)
    assert folders.load(folders.flag).credentials.path == "flag.duckdb"
    assert folders.load().credentials.path == "env_dir.duckdb"
    del folders.environ["DBT_PROFILES_DIR"]
    assert folders.load().credentials.path == "cwd.duckdb"
    (folders.cwd / "profiles.yml").unlink()
    assert folders.load().credentials.path == ".dbt.duckdb"


@pytest.mark.parametrize("where", ["flag", "env"])
def test_a_named_folder_without_profiles_does_not_fall_back(folders: Folders, where: str) -> None:
    folders.profiles(folders.home / ".dbt")
    if where == "env":
        folders.environ["DBT_PROFILES_DIR"] = str(folders.env_dir)
    with pytest.raises(ProfileError) as caught:
        find_profiles_dir(
            folders.flag if where == "flag" else None, folders.project, folders.environ
        )
    source = "--profiles-dir" if where == "flag" else "DBT_PROFILES_DIR"
    assert f"no profiles.yml in {folders.flag if where == 'flag' else folders.env_dir}" in str(
        caught.value
    )
    assert f"(from {source})" in str(caught.value)


def test_profile_errors_are_config_errors(folders: Folders) -> None:
    with pytest.raises(ConfigError):
        folders.load()


def test_missing_dbt_project(folders: Folders) -> None:
    folders.profiles(folders.flag)
    (folders.project / "dbt_project.yml").unlink()
    with pytest.raises(ProfileError, match=r"no dbt_project\.yml in"):
        folders.load(folders.flag)


# -- dbt renders it ------------------------------------------------------------------------


PROFILES = """
shop:
  target: "{{ env_var('SHOP_TARGET', 'dev') }}"
  outputs:
    dev:
      type: duckdb
      path: "{{ env_var('SHOP_DB', 'dev.duckdb') }}"
      schema: "{{ var('schema', 'main') }}"
      threads: "{{ env_var('THREADS', '2') | as_number }}"
    prod:
      type: duckdb
      path: prod.duckdb
      schema: analytics
other:
  target: dev
  outputs:
    dev:
      type: duckdb
      path: other.duckdb
"""


@pytest.mark.parametrize(
    ("environ", "kwargs"),
    [
        ({}, {}),
        ({"SHOP_DB": "from-env.duckdb", "THREADS": "8"}, {}),
        ({}, {"cli_vars": {"schema": "from_vars"}}),
        ({}, {"target": "prod"}),
        ({"SHOP_TARGET": "prod"}, {}),
        ({}, {"profile": "other"}),
    ],
)
def test_the_same_credentials_as_dbt(
    folders: Folders, environ: dict[str, str], kwargs: dict[str, Any]
) -> None:
    folders.profiles(folders.flag, PROFILES)
    folders.environ.update(environ)
    ours = folders.load(folders.flag, **kwargs)
    theirs = dbts_own(folders, folders.flag, **kwargs)
    assert ours.credentials == theirs.credentials
    assert (ours.profile_name, ours.target_name) == (theirs.profile_name, theirs.target_name)


def test_dbt_target_picks_the_target(folders: Folders) -> None:
    folders.profiles(folders.flag, PROFILES)
    folders.environ["DBT_TARGET"] = "prod"
    assert folders.load(folders.flag).target_name == "prod"
    assert folders.load(folders.flag, target="dev").target_name == "dev"


def test_the_projects_profile_key_is_rendered(folders: Folders) -> None:
    folders.project_yml({"name": "shop", "version": "1.0", "profile": "{{ env_var('P') }}"})
    folders.profiles(folders.flag, PROFILES)
    folders.environ["P"] = "other"
    assert folders.load(folders.flag).profile_name == "other"


def test_vars_are_parsed_as_dbt_parses_them() -> None:
    assert parse_vars("{schema: x, days: 30}") == {"schema": "x", "days": 30}
    assert parse_vars('{"a": [1, 2]}') == {"a": [1, 2]}
    assert parse_vars(None) == {} and parse_vars("") == {}
    with pytest.raises(ProfileError, match="--vars is not a YAML mapping"):
        parse_vars("[1, 2")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"target": "nope"}, "does not have a target named 'nope'"),
        ({"profile": "nope"}, "Could not find profile named 'nope'"),
    ],
)
def test_dbts_errors_name_what_to_fix(
    folders: Folders, kwargs: dict[str, Any], expected: str
) -> None:
    folders.profiles(folders.flag, PROFILES)
    with pytest.raises(ProfileError, match=expected) as caught:
        folders.load(folders.flag, **kwargs)
    assert "\n" not in str(caught.value)


def test_a_missing_env_var_names_it_and_leaks_nothing(folders: Folders) -> None:
    folders.profiles(
        folders.flag,
        "shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        "      path: \"{{ env_var('SHOP_PATH') }}\"\n",
    )
    folders.environ["SHOP_PASSWORD"] = SECRET
    with pytest.raises(ProfileError) as caught:
        folders.load(folders.flag)
    assert "SHOP_PATH" in str(caught.value) and SECRET not in str(caught.value)


def test_an_adapter_that_is_not_installed_names_the_engines(folders: Folders) -> None:
    folders.profiles(
        folders.flag, "shop:\n  target: dev\n  outputs:\n    dev:\n      type: redshift\n"
    )
    with pytest.raises(ProfileError) as caught:
        folders.load(folders.flag)
    message = str(caught.value)
    assert "'redshift'" in message and "not installed" in message
    assert "supports duckdb, snowflake, postgres, bigquery" in message


def test_repr_shows_where_not_what(folders: Folders) -> None:
    folders.profiles(
        folders.flag,
        "shop:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: h\n"
        f"      user: u\n      password: {SECRET}\n      port: 5432\n      dbname: d\n"
        "      schema: s\n",
    )
    target = folders.load(folders.flag)
    assert target.type == "postgres" and target.credentials.password == SECRET
    for text in (repr(target), str(target), f"{target}"):
        assert SECRET not in text
    assert target.where == "profile 'shop' target 'dev'"


def test_os_environ_is_the_default(folders: Folders, monkeypatch: pytest.MonkeyPatch) -> None:
    folders.profiles(folders.flag, PROFILES)
    monkeypatch.setenv("SHOP_DB", "os.duckdb")
    target = load_profile_target(folders.project, folders.flag)
    assert target.credentials.path == "os.duckdb"
    assert os.environ["SHOP_DB"] == "os.duckdb"

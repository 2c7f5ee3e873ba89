"""selection.dbt_args: the one place the runner's dbt command lines are put together."""

from __future__ import annotations

from pathlib import Path

from dbt_moengage.selection import dbt_args


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

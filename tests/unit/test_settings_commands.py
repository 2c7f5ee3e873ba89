"""`sync` and `validate` both refuse bad MoEngage settings up front, with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dbt_moengage.cli import main

V12 = "https://schemas.getdbt.com/dbt/manifest/v12.json"
KEY = "Q7xK2mZp9WvR4tLs"


def _project(tmp_path: Path) -> Path:
    """A dbt project folder whose target/manifest.json holds one valid cohort model."""
    node = {
        "resource_type": "model",
        "name": "high_value_users",
        "relation_name": '"db"."main"."high_value_users"',
        "description": "",
        "config": {"materialized": "table", "meta": {"moengage": {"cohort_name": ".HVU"}}},
        "meta": {},
        "columns": {"uid": {"name": "uid"}},
        "tags": [],
    }
    manifest = {
        "metadata": {"dbt_schema_version": V12},
        "nodes": {"model.shop.high_value_users": node},
    }
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"MOENGAGE_MAX_BODY_BYTES": "200000"}, "MOENGAGE_MAX_BODY_BYTES = 200000: above"),
        ({"MOENGAGE_API_KEY": KEY[:8] + "\u2014" + KEY[8:]}, "MOENGAGE_API_KEY has a character"),
        ({"MOENGAGE_API_KEY": KEY + "\n"}, "MOENGAGE_API_KEY starts or ends with whitespace"),
    ],
)
@pytest.mark.parametrize("command", ["sync", "validate"])
def test_bad_settings_stop_sync_and_validate(
    tmp_path: Path, command: str, overrides: dict[str, str], expected: str
) -> None:
    project = _project(tmp_path)
    environ = {
        "MOENGAGE_WORKSPACE_ID": "WS_TEST",
        "MOENGAGE_API_KEY": KEY,
        "MOENGAGE_DATA_CENTER": "01",
        "MOENGAGE_BASE_URL": "",
        "DBT_TARGET_PATH": "",
        "COLUMNS": "400",
        **overrides,
    }
    done = CliRunner().invoke(main, [command, "--project-dir", str(project)], env=environ)
    assert done.exit_code == 2, done.output
    assert expected in " ".join(done.output.split())
    assert KEY[:8] not in done.output and KEY[8:] not in done.output

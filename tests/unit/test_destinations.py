"""pipeline.options.Destinations: each destination's settings read once per run."""

from __future__ import annotations

from typing import Any

import pytest

from dbt_moengage.errors import SettingsError
from dbt_moengage.pipeline.options import Destinations
from dbt_moengage.settings import MoEngageSettings

ENV = {
    "MOENGAGE_WORKSPACE_ID": "WS1",
    "MOENGAGE_API_KEY": "key-1",
    "MOENGAGE_DATA_CENTER": "01",
    "MOENGAGE_EU_WORKSPACE_ID": "WS2",
    "MOENGAGE_EU_DATA_CENTER": "02",
}


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str | None, bool]]:
    """Every read of the environment (a MoEngageSettings.from_env call, not the call a
    named destination's read makes inside it), as (destination, credentials required)."""
    calls: list[tuple[str | None, bool]] = []
    real = MoEngageSettings.from_env.__func__  # type: ignore[attr-defined]
    depth = [0]

    def counted(
        cls: Any, environ: Any = None, require_credentials: bool = True, destination: Any = None
    ) -> Any:
        if not depth[0]:
            calls.append((destination, require_credentials))
        depth[0] += 1
        try:
            return real(cls, environ, require_credentials, destination)
        finally:
            depth[0] -= 1

    monkeypatch.setattr(MoEngageSettings, "from_env", classmethod(counted))
    return calls


def test_each_destination_is_read_once(reads: list[tuple[str | None, bool]]) -> None:
    read = Destinations(ENV, require_credentials=True)
    first = read.run_wide()
    assert read.settings(None) is first
    assert read.key(None) == read.key(None)
    assert reads == [(None, True)]


def test_a_refused_destination_raises_the_same_error_without_reading_again(
    reads: list[tuple[str | None, bool]],
) -> None:
    read = Destinations(ENV, require_credentials=True)
    with pytest.raises(SettingsError) as first:
        read.settings("eu")
    with pytest.raises(SettingsError) as again:
        read.settings("eu")
    assert again.value is first.value
    assert "MOENGAGE_EU_API_KEY" in str(first.value)
    assert reads == [("eu", True)]


def test_a_destination_without_its_key_still_says_where_its_state_is(
    reads: list[tuple[str | None, bool]],
) -> None:
    read = Destinations(ENV, require_credentials=True)
    key = read.key("eu")
    assert key is not None and key.workspace_id == "WS2"
    assert reads == [("eu", True), ("eu", False)]


def test_the_run_wide_settings_need_no_credentials(reads: list[tuple[str | None, bool]]) -> None:
    env = {"MOENGAGE_LOCK_WAIT_SECONDS": "7"}
    read = Destinations(env, require_credentials=True)
    assert read.run_wide().lock_wait_seconds == 7
    with pytest.raises(SettingsError):
        read.settings(None)
    assert reads == [(None, True), (None, False)]


def test_a_dry_run_reads_each_destination_once_without_credentials(
    reads: list[tuple[str | None, bool]],
) -> None:
    read = Destinations({}, require_credentials=False)
    read.run_wide()
    read.settings(None)
    assert read.key(None) is None
    assert reads == [(None, False)]

"""The request the runner sends, byte for byte where it matters, against MoEngage's own
documented example ("Sync Cohort Members"; ../shared/moengage-cohort-sync-api.md), not
against the project's emulator: a bare HTTP server on 127.0.0.1 records what arrives.

MoEngage's example:

    POST https://api-{dc}.moengage.com/v1/integrations/cohortsync
    Authorization: Basic base64(<workspace id>:<data API key>)
    MOE-APPKEY: <workspace id>
    Content-Type: application/json

    {"action": "add_members", "partner": "...",
     "parameters": {"cohort_name": ".High Value Users", "cohort_id": "high_value_users",
                    "cohort_description": "Built by dbt model high_value_users",
                    "members": [{"uid": "u-1"}, {"uid": "u-2"}]}}

answered 200 {"status": "success", "message": "Your request has been accepted and will be
processed soon."}
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from dbt_moengage.client import MoEngageClient, Tally
from dbt_moengage.packing import ADD, REMOVE, BodyPacker
from dbt_moengage.settings import DEFAULT_PARTNER, MoEngageSettings, Secret, base_url_from_env

from ..http_receiver import Arrived, serving

WORKSPACE = "WS_GOLDEN"
KEY = "golden-data-api-key"
ACCEPTED = (
    b'{"status": "success", "message": "Your request has been accepted and will be '
    b'processed soon."}'
)

DOCUMENTED_BODY = {
    "action": "add_members",
    "partner": DEFAULT_PARTNER,
    "parameters": {
        "cohort_name": ".High Value Users",
        "cohort_id": "high_value_users",
        "cohort_description": "Built by dbt model high_value_users",
        "members": [{"uid": "u-1"}, {"uid": "u-2"}],
    },
}


@pytest.fixture
def capture() -> Iterator[tuple[str, list[Arrived]]]:
    """A bare HTTP server: records each request, answers MoEngage's documented 200."""
    arrived: list[Arrived] = []
    with serving(lambda path, body: (200, ACCEPTED), arrived) as port:
        yield f"http://127.0.0.1:{port}", arrived


def send(base_url: str, action: str) -> Tally:
    settings = MoEngageSettings(workspace_id=WORKSPACE, api_key=Secret(KEY), base_url=base_url)
    packer = BodyPacker(
        action=action,
        partner=settings.partner,
        cohort_name=".High Value Users",
        cohort_id="high_value_users",
        description="Built by dbt model high_value_users",
        max_bytes=settings.max_body_bytes,
    )
    tally = Tally()
    with MoEngageClient(settings) as client:
        client.send_all(list(packer.pack([["u-1", "u-2"]])), tally)
    return tally


def test_the_request_is_moengage_documented_example(
    capture: tuple[str, list[Arrived]],
) -> None:
    base_url, arrived = capture
    tally = send(base_url, ADD)
    assert tally.requests == 1
    [request] = arrived
    assert (request.method, request.path) == ("POST", "/v1/integrations/cohortsync")
    basic = base64.b64encode(f"{WORKSPACE}:{KEY}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {basic}"
    assert request.headers["moe-appkey"] == WORKSPACE
    assert request.headers["content-type"] == "application/json"
    assert int(request.headers["content-length"]) == len(request.body)
    assert json.loads(request.body) == DOCUMENTED_BODY


def test_a_removal_differs_only_in_its_action(capture: tuple[str, list[Arrived]]) -> None:
    base_url, arrived = capture
    send(base_url, REMOVE)
    [request] = arrived
    assert json.loads(request.body) == {**DOCUMENTED_BODY, "action": "remove_members"}


def test_the_host_is_the_data_center_s() -> None:
    # POST https://api-{dc}.moengage.com/v1/integrations/cohortsync, dc from the account.
    for dc in ("01", "02", "03", "04", "05", "06", "101"):
        base_url = base_url_from_env({"MOENGAGE_DATA_CENTER": dc})
        settings = MoEngageSettings(workspace_id=WORKSPACE, api_key=Secret(KEY), base_url=base_url)
        assert settings.endpoint == f"https://api-{dc}.moengage.com/v1/integrations/cohortsync"

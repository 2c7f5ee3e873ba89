"""The client against the real emulator on 127.0.0.1: classification, retries, in-flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import requests

from dbt_moengage.client import MoEngageClient, Tally
from dbt_moengage.errors import RequestRejected, TransientError, WarehouseError, WorkspaceFatal
from dbt_moengage.packing import ADD, Body, BodyPacker
from dbt_moengage.settings import MoEngageSettings, Secret
from dbt_moengage.testing.emulator import Emulator, EmulatorConfig, Faults

WORKSPACE = "WS_CLIENT"
KEY = "sk-client-test-key-never-shown"


@pytest.fixture
def server() -> Iterator[Emulator]:
    config = EmulatorConfig(workspace_id=WORKSPACE, api_key=KEY, rate_limit_per_min=None)
    with Emulator(config) as emulator:
        yield emulator


def settings_for(server: Emulator, **changes: object) -> MoEngageSettings:
    base = MoEngageSettings(
        workspace_id=WORKSPACE,
        api_key=Secret(KEY),
        base_url=server.url,
        max_body_bytes=2_000,
        backoff_initial=0.01,
        backoff_max=0.05,
        max_attempts=6,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def bodies(n_uids: int, max_bytes: int = 2_000, cohort_id: str = "c1") -> list[Body]:
    packer = BodyPacker(
        action=ADD,
        partner="dbt-moengage",
        cohort_name=".Client Test",
        cohort_id=cohort_id,
        description="client test",
        max_bytes=max_bytes,
    )
    return list(packer.pack([[f"user-{i:06d}" for i in range(n_uids)]]))


def test_sends_every_body_and_reports_each_acceptance(server: Emulator) -> None:
    accepted: list[Body] = []
    tally = Tally()
    sent = bodies(1_000)
    with MoEngageClient(settings_for(server)) as client:
        client.send_all(sent, tally, accepted.append)
    assert server.members("c1") == {f"user-{i:06d}" for i in range(1_000)}
    assert tally.requests == len(sent) == tally.accepted
    assert sorted(b.uids[0] for b in accepted) == sorted(b.uids[0] for b in sent)
    assert tally.uids_accepted == 1_000 and tally.retries == 0


def test_headers_and_auth_match_the_contract(server: Emulator) -> None:
    # The emulator refuses anything else (401/403/415), so one 200 proves them.
    with MoEngageClient(settings_for(server)) as client:
        client.send(bodies(1)[0].payload, Tally())
    assert [r.status for r in server.requests()] == [200]


def test_transient_errors_are_retried(server: Emulator) -> None:
    server.set_faults(Faults(error_before_rate=0.3, error_after_rate=0.2, drop_after_rate=0.1))
    tally = Tally()
    with MoEngageClient(settings_for(server, max_attempts=15)) as client:
        client.send_all(bodies(2_000), tally)
    assert server.members("c1") == {f"user-{i:06d}" for i in range(2_000)}
    assert tally.retries > 0
    assert tally.requests == len(server.requests())


def test_429_honours_retry_after_for_every_sender(server: Emulator) -> None:
    server.set_faults(Faults(storm_429=1, retry_after=True))  # Retry-After: 1
    started = time.monotonic()
    tally = Tally()
    with MoEngageClient(settings_for(server)) as client:
        client.send_all(bodies(300), tally)
    assert time.monotonic() - started >= 0.95
    assert tally.retries == 1
    statuses = [r.status for r in server.requests()]
    assert statuses[0] == 429 and set(statuses[1:]) == {200}


def test_gives_up_after_max_attempts(server: Emulator) -> None:
    server.set_faults(Faults(error_before_rate=1.0))
    tally = Tally()
    with (
        MoEngageClient(settings_for(server, max_attempts=3)) as client,
        pytest.raises(TransientError, match="gave up after 3 attempts"),
    ):
        client.send_all(bodies(100), tally)
    assert len(server.requests()) == 3
    assert tally.uids_failed == 100


@pytest.mark.parametrize("credentials", [(WORKSPACE, "wrong-key-123"), ("OTHER_WS", KEY)])
def test_bad_credentials_stop_after_one_request(
    server: Emulator, credentials: tuple[str, str]
) -> None:
    workspace, key = credentials
    settings = settings_for(server, workspace_id=workspace, api_key=Secret(key))
    with MoEngageClient(settings) as client:
        with pytest.raises(WorkspaceFatal) as caught:
            client.send_all(bodies(5_000), Tally())
        with pytest.raises(WorkspaceFatal):
            client.send(bodies(1)[0].payload, Tally())
    assert len(server.requests()) == 1
    assert "MOENGAGE_API_KEY" in str(caught.value)
    assert key not in str(caught.value) and KEY not in str(caught.value)


def test_rejected_body_fails_without_retry(server: Emulator) -> None:
    tally = Tally()
    too_big = bodies(10_000, max_bytes=200_000)
    with MoEngageClient(settings_for(server)) as client, pytest.raises(RequestRejected) as caught:
        client.send_all(too_big, tally)
    assert caught.value.status == 413
    assert tally.requests == 1


def test_unsupported_content_type_is_a_415(server: Emulator) -> None:
    # What the client must never do: the emulator holds the contract.
    response = requests.post(
        server.url + "/v1/integrations/cohortsync",
        data=bodies(1)[0].payload,
        auth=(WORKSPACE, KEY),
        headers={"MOE-APPKEY": WORKSPACE, "Content-Type": "text/plain"},
        timeout=5,
    )
    assert response.status_code == 415


def test_requests_overlap_in_flight(server: Emulator) -> None:
    # Every answer takes 0.3 s, so requests arriving less than 0.3 s apart were in flight
    # together; a client sending one at a time could never do that.
    server.set_faults(Faults(slow_rate=1.0, slow_seconds=0.3))
    sent = bodies(1_200)
    assert len(sent) >= 12
    with MoEngageClient(settings_for(server, max_in_flight=4)) as client:
        client.send_all(sent, Tally())
    arrivals = sorted(r.at for r in server.requests())
    most_at_once = max(
        sum(1 for other in arrivals if start <= other < start + 0.3) for start in arrivals
    )
    assert 2 <= most_at_once <= 4


def test_first_failure_stops_new_sends_but_keeps_accepted(server: Emulator) -> None:
    accepted: list[Body] = []
    good = bodies(200, cohort_id="c1")
    bad = bodies(10_000, max_bytes=200_000, cohort_id="c1")[:1]
    tally = Tally()
    # One in flight, so the order is fixed: the good bodies, then the bad one, then none.
    with (
        MoEngageClient(settings_for(server, max_in_flight=1)) as client,
        pytest.raises(RequestRejected),
    ):
        client.send_all([*good, *bad, *good], tally, accepted.append)
    assert tally.uids_accepted == sum(len(b.uids) for b in accepted)
    assert accepted == good
    assert tally.requests == len(good) + 1
    assert [r.status for r in server.requests()] == [200] * len(good) + [413]


def test_a_body_is_recorded_before_its_slot_is_freed(server: Emulator) -> None:
    # The checkpoint runs inside the request's slot: with 2 in flight, no more than 2
    # bodies are ever sent and not yet recorded, however slow recording is.
    lock = threading.Lock()
    unrecorded = 0
    most_unrecorded = 0
    recorded: list[Body] = []

    def before_send(payload: bytes, tally: Tally) -> None:
        nonlocal unrecorded, most_unrecorded
        with lock:
            unrecorded += 1
            most_unrecorded = max(most_unrecorded, unrecorded)

    def record(body: Body) -> None:
        nonlocal unrecorded
        time.sleep(0.02)
        with lock:
            unrecorded -= 1
            recorded.append(body)

    sent = bodies(600)
    with MoEngageClient(settings_for(server, max_in_flight=2)) as client:
        original = client.send

        def counting_send(payload: bytes, tally: Tally) -> None:
            before_send(payload, tally)
            original(payload, tally)

        client.send = counting_send  # type: ignore[method-assign]
        client.send_all(sent, Tally(), record)
    assert len(recorded) == len(sent)
    assert most_unrecorded == 2


def test_a_failed_checkpoint_stops_the_stream_and_is_raised(server: Emulator) -> None:
    recorded: list[Body] = []
    sent = bodies(1_000)
    assert len(sent) > 5

    def record(body: Body) -> None:
        if len(recorded) == 2:
            raise WarehouseError("the state table went away")
        recorded.append(body)

    tally = Tally()
    with (
        MoEngageClient(settings_for(server, max_in_flight=1)) as client,
        pytest.raises(WarehouseError, match="went away"),
    ):
        client.send_all(sent, tally, record)
    # The third body was accepted by MoEngage but not recorded: it counts as unsynced (a
    # later run sends it again). A fourth, if it was queued behind it, was never sent.
    assert recorded == sent[:2]
    assert tally.uids_accepted == sum(len(b.uids) for b in sent[:2])
    assert tally.uids_failed in (len(sent[2].uids), len(sent[2].uids) + len(sent[3].uids))
    assert tally.requests == 3
    assert len(server.requests()) == 3

"""The MoEngage emulator, exercised as a real server on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from dbt_moengage.testing.emulator import ENDPOINT, Emulator, EmulatorConfig, Faults

WORKSPACE = "WS_TEST_01"
API_KEY = "sekrit-api-key-4f9a1c"


def make_body(
    uids: list[str] | None = None,
    action: str = "add_members",
    cohort_id: str = "high_value",
    cohort_name: str = ".High Value Users",
    description: str | None = "Built by dbt model high_value",
) -> dict[str, Any]:
    """A valid request body, to be altered by each test."""
    params: dict[str, Any] = {
        "cohort_name": cohort_name,
        "cohort_id": cohort_id,
        "members": [{"uid": u} for u in (uids if uids is not None else ["u-1", "u-2"])],
    }
    if description is not None:
        params["cohort_description"] = description
    return {"action": action, "partner": "dbt-moengage", "parameters": params}


def encode(body: Any) -> bytes:
    return json.dumps(body).encode("utf-8")


Post = Callable[..., requests.Response]


def poster(emu: Emulator) -> Post:
    """A POST helper with valid credentials and headers that each test may override."""

    def post(
        body: Any = None,
        *,
        data: bytes | None = None,
        auth: tuple[str, str] | None = (WORKSPACE, API_KEY),
        headers: dict[str, str] | None = None,
        timeout: float = 5.0,
    ) -> requests.Response:
        sent = {"Content-Type": "application/json", "MOE-APPKEY": WORKSPACE}
        sent.update(headers or {})
        payload = data if data is not None else encode(body if body is not None else make_body())
        return requests.post(
            emu.url + ENDPOINT, data=payload, auth=auth, headers=sent, timeout=timeout
        )

    return post


def start(**config: Any) -> Emulator:
    config.setdefault("rate_limit_per_min", None)
    return Emulator(EmulatorConfig(WORKSPACE, API_KEY, **config)).start()


@pytest.fixture
def emu() -> Iterator[Emulator]:
    emulator = start()
    yield emulator
    emulator.stop()


@pytest.fixture
def post(emu: Emulator) -> Post:
    return poster(emu)


# -- the happy path -------------------------------------------------------------------------


def test_add_members_is_applied_and_visible(emu: Emulator, post: Post) -> None:
    resp = post(make_body(["u-2", "u-1", "u-3"]))

    assert resp.status_code == 200
    assert resp.json() == {
        "status": "success",
        "message": "Your request has been accepted and will be processed soon.",
    }
    assert emu.members("high_value") == {"u-1", "u-2", "u-3"}
    assert emu.cohorts() == {
        "high_value": {
            "cohort_name": ".High Value Users",
            "cohort_description": "Built by dbt model high_value",
            "members": 3,
            "unmatched": 0,
        }
    }
    detail = requests.get(emu.url + "/cohorts/high_value", timeout=5).json()
    assert detail["cohort_id"] == "high_value"
    assert detail["cohort_name"] == ".High Value Users"
    assert detail["members"] == ["u-1", "u-2", "u-3"]
    listing = requests.get(emu.url + "/cohorts", timeout=5).json()
    assert listing["cohorts"]["high_value"]["members"] == 3
    [record] = emu.requests()
    assert (record.status, record.action, record.cohort_id) == (200, "add_members", "high_value")
    assert (record.members, record.applied) == (3, True)
    assert record.body_bytes == len(encode(make_body(["u-2", "u-1", "u-3"])))


def test_charset_suffix_is_accepted(post: Post) -> None:
    resp = post(headers={"Content-Type": "application/json; charset=utf-8"})
    assert resp.status_code == 200


def test_remove_members(emu: Emulator, post: Post) -> None:
    post(make_body(["a", "b", "c"]))
    resp = post(make_body(["b", "zz"], action="remove_members"))

    assert resp.status_code == 200
    assert emu.members("high_value") == {"a", "c"}
    assert emu.delivered("high_value") == 3


def test_delivered_counts_duplicates_and_later_calls_update_the_name(
    emu: Emulator, post: Post
) -> None:
    post(make_body(["a", "b"]))
    post(make_body(["b", "c"], cohort_name=".Renamed", description=None))

    assert emu.members("high_value") == {"a", "b", "c"}
    assert emu.delivered("high_value") == 4
    cohort = emu.cohorts()["high_value"]
    assert cohort["cohort_name"] == ".Renamed"
    assert cohort["cohort_description"] == "Built by dbt model high_value"


@pytest.mark.parametrize("name", [".With Period", "Without Period", "..Two"])
def test_both_name_forms_are_accepted(emu: Emulator, post: Post, name: str) -> None:
    # MoEngage's pages disagree on a leading '.': the emulator takes both, as the runner does.
    assert post(make_body(["a"], cohort_name=name)).status_code == 200
    assert emu.cohorts()["high_value"]["cohort_name"] == name


def test_unknown_users_are_accepted_and_dropped_until_known() -> None:
    emulator = start(known_users=frozenset({"known-1", "known-2"}))
    try:
        post = poster(emulator)
        resp = post(make_body(["known-1", "stranger", "known-2"]))
        # 200 all the same: MoEngage never says which uids it matched.
        assert resp.status_code == 200 and resp.json()["status"] == "success"
        assert emulator.members("high_value") == {"known-1", "known-2"}
        assert emulator.cohorts()["high_value"]["unmatched"] == 1
        # The profile appears later; the uid joins only when it is sent again.
        emulator.add_users(["stranger"])
        assert emulator.members("high_value") == {"known-1", "known-2"}
        post(make_body(["stranger"]))
        assert emulator.members("high_value") == {"known-1", "known-2", "stranger"}
        detail = requests.get(emulator.url + "/cohorts/high_value", timeout=5).json()
        assert detail["unmatched"] == 1
        assert emulator.known_users() == {"known-1", "known-2", "stranger"}
    finally:
        emulator.stop()


def test_every_uid_is_a_known_user_by_default(emu: Emulator, post: Post) -> None:
    post(make_body(["anyone"]))
    assert emu.members("high_value") == {"anyone"} and emu.known_users() is None


def test_unknown_cohort_is_empty_and_404s(emu: Emulator) -> None:
    assert emu.members("nope") == set()
    assert emu.delivered("nope") == 0
    assert requests.get(emu.url + "/cohorts/nope", timeout=5).status_code == 404


def test_keep_alive_survives_rejections(emu: Emulator) -> None:
    # The client reuses connections, so every answer must leave the connection usable.
    conn = http.client.HTTPConnection("127.0.0.1", int(emu.url.rsplit(":", 1)[1]), timeout=5)
    good = {
        "Content-Type": "application/json",
        "MOE-APPKEY": WORKSPACE,
        "Authorization": requests.auth._basic_auth_str(WORKSPACE, API_KEY),
    }
    too_big = b"x" * (emu.config.max_body_bytes + 1)
    attempts = [
        ({**good, "Authorization": "Basic Zm9vOmJhcg=="}, encode(make_body()), 401),
        ({**good, "Content-Type": "text/plain"}, encode(make_body()), 415),
        (good, too_big, 413),
        (good, b"{not json", 400),
        (good, encode(make_body()), 200),
    ]
    try:
        for headers, body, expected in attempts:
            conn.request("POST", ENDPOINT, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == expected
            assert resp.getheader("Content-Length") is not None
            assert not resp.will_close
    finally:
        conn.close()


# -- rejections -----------------------------------------------------------------------------


def test_no_auth_is_401(emu: Emulator, post: Post) -> None:
    resp = post(auth=None)
    assert resp.status_code == 401
    assert resp.json()["status"] == "fail"
    assert emu.members("high_value") == set()


def test_wrong_key_is_401_and_never_echoed(emu: Emulator, post: Post) -> None:
    wrong = "WRONG-key-value-77e1"
    resp = post(auth=(WORKSPACE, wrong))

    assert resp.status_code == 401
    assert wrong not in resp.text
    assert API_KEY not in resp.text
    assert requests.auth._basic_auth_str(WORKSPACE, wrong).split()[1] not in resp.text
    assert emu.members("high_value") == set()


def test_wrong_workspace_user_is_401(post: Post) -> None:
    assert post(auth=("OTHER", API_KEY)).status_code == 401


@pytest.mark.parametrize("appkey", ["OTHER_WORKSPACE", None])
def test_appkey_mismatch_or_missing_is_403(emu: Emulator, appkey: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if appkey is not None:
        headers["MOE-APPKEY"] = appkey
    resp = requests.post(
        emu.url + ENDPOINT,
        data=encode(make_body()),
        auth=(WORKSPACE, API_KEY),
        headers=headers,
        timeout=5,
    )
    assert resp.status_code == 403
    assert API_KEY not in resp.text
    assert emu.members("high_value") == set()


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/json; x=1"]
)
def test_wrong_content_type_is_415(emu: Emulator, post: Post, content_type: str) -> None:
    resp = post(headers={"Content-Type": content_type})
    assert resp.status_code == 415
    assert emu.members("high_value") == set()


def test_body_size_limit_is_inclusive(emu: Emulator, post: Post) -> None:
    limit = emu.config.max_body_bytes

    def sized(size: int, cohort_id: str) -> bytes:
        base = len(encode(make_body(cohort_id=cohort_id, description="")))
        return encode(make_body(cohort_id=cohort_id, description="x" * (size - base)))

    at_limit, over = sized(limit, "at_limit"), sized(limit + 1, "over")
    assert (len(at_limit), len(over)) == (limit, limit + 1)

    assert post(data=at_limit).status_code == 200
    resp = post(data=over)
    assert resp.status_code == 413
    assert emu.members("at_limit") == {"u-1", "u-2"}
    assert emu.members("over") == set()


def _without_members(body: dict[str, Any]) -> dict[str, Any]:
    del body["parameters"]["members"]
    return body


def _with(path: list[Any], value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(body: dict[str, Any]) -> dict[str, Any]:
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return body

    return change


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (_with(["parameters", "cohort_name"], ".High|Value"), "cohort_name"),
        (_with(["parameters", "cohort_name"], '.say "hi"'), "cohort_name"),
        (_with(["parameters", "cohort_name"], ".a$b"), "cohort_name"),
        (_with(["parameters", "cohort_name"], "."), "cohort_name"),
        (_with(["parameters", "cohort_name"], " . "), "cohort_name"),
        (_without_members, "members"),
        (_with(["parameters", "members"], []), "members"),
        (_with(["parameters", "members"], [{"uid": "a", "email": "a@x"}]), "members[0]"),
        (_with(["parameters", "members"], [{"uid": "a"}, {"uid": 7}]), "members[1].uid"),
        (_with(["parameters", "members"], [{"uid": ""}]), "members[0].uid"),
        (_with(["parameters", "members"], ["a"]), "members[0]"),
        (_with(["parameters", "cohort_id"], ""), "cohort_id"),
        (_with(["parameters", "cohort_description"], 5), "cohort_description"),
        (_with(["action"], "delete_cohort"), "action"),
        (_with(["partner"], ""), "partner"),
        (_with(["extra"], 1), "extra"),
    ],
)
def test_bad_body_is_400_naming_the_field(
    emu: Emulator, post: Post, change: Callable[[dict[str, Any]], dict[str, Any]], field: str
) -> None:
    resp = post(change(make_body()))

    assert resp.status_code == 400
    assert field in resp.json()["error"]["message"]
    assert emu.members("high_value") == set()
    assert emu.requests()[-1].applied is False


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"action": ', "JSON"),
        (b"[1, 2]", "object"),
        (b'{"action": NaN}', "NaN"),
        (b'{"action": "add_members", "action": "remove_members"}', "duplicate"),
    ],
)
def test_undecodable_body_is_400(post: Post, data: bytes, words: str) -> None:
    resp = post(data=data)
    assert resp.status_code == 400
    assert words in resp.json()["error"]["message"]


def test_other_paths_and_methods(emu: Emulator, post: Post) -> None:
    assert requests.get(emu.url + ENDPOINT, timeout=5).status_code == 405
    assert requests.put(emu.url + ENDPOINT, data=b"{}", timeout=5).status_code == 405
    assert requests.post(emu.url + "/v1/elsewhere", data=b"{}", timeout=5).status_code == 404
    assert requests.get(emu.url + "/nothing", timeout=5).status_code == 404


# -- rate limit and faults ------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", [True, False])
def test_rate_limit_answers_429(retry_after: bool) -> None:
    emu = start(rate_limit_per_min=3, faults=Faults(retry_after=retry_after))
    try:
        post = poster(emu)
        for i in range(3):
            assert post(make_body([f"u{i}"])).status_code == 200
        resp = post(make_body(["late"]))

        assert resp.status_code == 429
        assert resp.json()["error"]["message"] == "Rate limit exceeded"
        if retry_after:
            assert 1 <= int(resp.headers["Retry-After"]) <= 60
        else:
            assert "Retry-After" not in resp.headers
        assert emu.members("high_value") == {"u0", "u1", "u2"}
        # Failed auth still counts: the limit is checked before credentials.
        assert post(auth=None).status_code == 429

        emu.reset()
        assert post().status_code == 200
    finally:
        emu.stop()


def test_rate_limit_is_per_workspace() -> None:
    emu = start(rate_limit_per_min=1)
    try:
        post = poster(emu)
        assert post().status_code == 200
        assert post().status_code == 429
        # Another workspace id has its own window (and then fails auth).
        assert post(headers={"MOE-APPKEY": "OTHER"}).status_code == 403
    finally:
        emu.stop()


def test_storm_429_then_recovers(emu: Emulator, post: Post) -> None:
    emu.set_faults(Faults(storm_429=2))

    first, second, third = post(), post(), post()

    assert [first.status_code, second.status_code, third.status_code] == [429, 429, 200]
    assert first.headers["Retry-After"] == "1"
    assert [r.applied for r in emu.requests()] == [False, False, True]


def test_error_before_is_not_applied(emu: Emulator, post: Post) -> None:
    emu.set_faults(Faults(error_before_rate=1.0))
    resp = post()
    assert resp.status_code == 503
    assert emu.members("high_value") == set()
    assert emu.requests()[-1].applied is False


def test_error_after_is_applied(emu: Emulator, post: Post) -> None:
    emu.set_faults(Faults(error_after_rate=1.0))
    resp = post()
    assert resp.status_code == 500
    assert emu.members("high_value") == {"u-1", "u-2"}
    assert emu.requests()[-1].applied is True


@pytest.mark.parametrize(
    ("fault", "applied"), [("drop_before_rate", False), ("drop_after_rate", True)]
)
def test_dropped_connection(emu: Emulator, post: Post, fault: str, applied: bool) -> None:
    rates: dict[str, Any] = {fault: 1.0}
    emu.set_faults(Faults(**rates))

    with pytest.raises(requests.ConnectionError):
        post()

    assert (emu.members("high_value") == {"u-1", "u-2"}) is applied
    record = emu.requests()[-1]
    assert (record.status, record.applied) == (0, applied)
    # The server stays healthy once the fault is lifted.
    emu.set_faults(Faults())
    assert post().status_code == 200


def test_slow_answer_times_out_but_is_applied(emu: Emulator, post: Post) -> None:
    emu.set_faults(Faults(slow_rate=1.0, slow_seconds=0.5))

    with pytest.raises(requests.ReadTimeout):
        post(timeout=0.1)

    assert emu.members("high_value") == {"u-1", "u-2"}


def test_faults_are_reproducible_by_seed() -> None:
    def statuses() -> list[int]:
        emu = start(faults=Faults(error_before_rate=0.5, seed=42))
        try:
            post = poster(emu)
            return [post(make_body([f"u{i}"])).status_code for i in range(12)]
        finally:
            emu.stop()

    first = statuses()
    assert set(first) == {200, 503}
    assert statuses() == first


def test_faults_reject_bad_rates() -> None:
    with pytest.raises(ValueError, match="error_before_rate"):
        Faults(error_before_rate=1.5)


def test_config_repr_hides_the_key() -> None:
    assert API_KEY not in repr(EmulatorConfig(WORKSPACE, API_KEY))


# -- inspection and reset -------------------------------------------------------------------


def test_stats_count_requests_and_deliveries(emu: Emulator, post: Post) -> None:
    post(make_body(["a", "b"]))
    post(make_body(["a"]))
    post(auth=None)

    stats = requests.get(emu.url + "/stats", timeout=5).json()

    assert stats["requests"] == 3
    assert stats["by_status"] == {"200": 2, "401": 1}
    assert stats["deliveries"] == 3


def test_reset_forgets_everything(emu: Emulator, post: Post) -> None:
    post()
    emu.reset()

    assert emu.cohorts() == {}
    assert emu.requests() == []
    assert emu.members("high_value") == set()
    assert requests.get(emu.url + "/cohorts", timeout=5).json() == {"cohorts": {}}


def test_url_requires_start() -> None:
    emu = Emulator(EmulatorConfig(WORKSPACE, API_KEY))
    with pytest.raises(RuntimeError):
        _ = emu.url
    with emu:
        assert emu.url.startswith("http://127.0.0.1:")

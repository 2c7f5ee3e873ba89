"""Notifications: which changes are news, the message, the post under the retry policy, and
what is recorded only once a post was accepted."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from dataclasses import replace as with_fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from dbt_moengage.errors import NotificationFailed, SettingsError
from dbt_moengage.manifest import ModelNode
from dbt_moengage.notify import (
    NotifySettings,
    Past,
    announce,
    changes,
    check_notify_url,
    health,
    invalid_cohorts,
    message,
    notify_after_sync,
    notify_changes,
    post,
)
from dbt_moengage.report import (
    DRY_RUN,
    FAILED,
    GUARDED,
    INTERRUPTED,
    INVALID,
    NOT_BUILT,
    SKIPPED,
    SYNCED,
    CohortResult,
    RunReport,
)
from dbt_moengage.report.progress import Progress
from dbt_moengage.settings import Secret
from dbt_moengage.state import RunRow, StateKey, utcnow
from dbt_moengage.state.history import StateHistory
from dbt_moengage.warehouse.duckdb import DuckDBWarehouse

from ..http_receiver import serving
from ..slow_server import RawServer, answer
from ..state_helpers import store

SECRET_PATH = "/services/T000/B000/unit-notify-secret-7f3a"
KEY = StateKey("http://127.0.0.1:8765", "WS_NOTIFY")
OTHER = StateKey("https://api-01.moengage.com", "WS_NOTIFY")


# -- which changes are news ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "current", "news"),
    [
        (None, FAILED, True),  # a first run failing
        (SYNCED, FAILED, True),  # the first failure after a success
        (FAILED, FAILED, False),  # the same failure again
        (FAILED, SYNCED, True),  # a recovery
        (GUARDED, SYNCED, True),
        (None, SYNCED, False),  # nothing announced before, nothing to say
        (SYNCED, SYNCED, False),
        (SYNCED, GUARDED, True),  # a guard tripping
        (None, GUARDED, True),
        (GUARDED, GUARDED, False),
        (GUARDED, FAILED, True),
        (FAILED, GUARDED, True),
    ],
)
def test_only_a_change_is_news(previous: str | None, current: str, news: bool) -> None:
    assert announce(previous, current) is news


def result(model: str, status: str, error: str | None = None, **fields: Any) -> CohortResult:
    return CohortResult(
        model=model,
        cohort_id=f"{model}_id",
        cohort_name=model.title(),
        status=status,
        error=error,
        **fields,
    )


def test_health_of_each_outcome() -> None:
    assert health(result("a", SYNCED)) == SYNCED
    assert health(result("a", GUARDED)) == GUARDED
    assert health(result("a", FAILED)) == FAILED
    # Not kept up to date in MoEngage, as when it fails.
    assert health(result("a", INVALID)) == FAILED
    assert health(result("a", SKIPPED)) == FAILED
    # Says nothing of the cohort's health.
    assert health(result("a", SKIPPED, unselected=True)) is None
    assert health(result("a", INTERRUPTED)) is None
    assert health(result("a", DRY_RUN)) is None


def test_changes_compare_with_what_was_announced_per_key() -> None:
    runs = [
        (result("broken", FAILED, "MoEngage rejected the request with HTTP 413"), KEY),
        (result("still_broken", FAILED, "HTTP 500"), KEY),
        (result("back", SYNCED), KEY),
        (result("fine", SYNCED), KEY),
        (result("broken", FAILED, "HTTP 413"), OTHER),
    ]
    announced = {
        KEY: {"still_broken_id": FAILED, "back_id": FAILED, "fine_id": SYNCED},
        OTHER: {"broken_id": FAILED},
    }
    found = changes(runs, announced)
    assert [(c.model, c.key, c.event, c.previous) for c in found] == [
        ("broken", KEY, FAILED, None),
        ("back", KEY, "recovered", FAILED),
    ]
    assert found[0].error == "MoEngage rejected the request with HTTP 413"
    assert found[1].error is None


def test_message_is_slack_text_and_structured_fields() -> None:
    runs = [
        (result("orders", FAILED, "HTTP 413 <!channel> & more"), KEY),
        (result("big_spenders", GUARDED, "guarded, nothing sent: ... --allow-large-removal"), KEY),
        (result("back", SYNCED), KEY),
    ]
    found = changes(runs, {KEY: {"back_id": FAILED}})
    body = message(found, "run-42")
    text = body["text"]
    assert (
        text.splitlines()[0]
        == "*dbt-moengage*: 1 cohort failed, 1 guarded, 1 recovered (run run-42)"
    )
    assert "failed: model `orders` -&gt; cohort `orders_id` (Orders): HTTP 413" in text
    # Outside text never becomes Slack markup (a mention, a link).
    assert "<!channel>" not in text and "&lt;!channel&gt; &amp; more" in text
    assert "recovered: model `back` -&gt; cohort `back_id` (Back) (was failed)" in text
    assert text.count("what to do:") == 3
    assert [c["event"] for c in body["cohorts"]] == [FAILED, GUARDED, "recovered"]
    first = body["cohorts"][0]
    assert set(first) >= {"model", "cohort_id", "status", "previous", "error", "what_to_do"}
    assert first["error"] == "HTTP 413 <!channel> & more"  # fields are data, not markup
    assert "--allow-large-removal" in body["cohorts"][1]["what_to_do"]
    assert body["cohorts"][2]["previous"] == FAILED and body["cohorts"][2]["error"] is None
    json.dumps(body)


def test_a_long_error_is_cut_and_cleaned() -> None:
    error = "Authorization: Basic c2VjcmV0 \x1b[31m" + "x" * 5_000
    (found,) = changes([(result("a", FAILED, error), KEY)], {})
    assert found.error is not None and len(found.error) <= 500
    assert "c2VjcmV0" not in found.error and "\x1b" not in found.error


def test_previous_is_how_the_last_run_ended() -> None:
    runs = [
        (result("after_success", FAILED, "HTTP 413"), KEY),
        (result("after_not_built", SYNCED), KEY),
        (result("after_invalid", SYNCED), KEY),
        (result("no_rows", SYNCED), KEY),
    ]
    announced = {
        KEY: {"after_not_built_id": FAILED, "after_invalid_id": FAILED, "no_rows_id": FAILED}
    }
    past = {
        (KEY, "after_success_id"): Past(status=SYNCED),
        (KEY, "after_not_built_id"): Past(status=NOT_BUILT),
        # An invalid config writes no run row: the row before it synced.
        (KEY, "after_invalid_id"): Past(status=SYNCED),
    }
    found = changes(runs, announced, past)
    assert [(c.model, c.event, c.previous) for c in found] == [
        ("after_success", FAILED, SYNCED),
        ("after_not_built", "recovered", NOT_BUILT),
        ("after_invalid", "recovered", FAILED),
        ("no_rows", "recovered", FAILED),
    ]


@pytest.mark.parametrize(
    ("before", "now", "fraction", "news"),
    [
        (100, 151, 0.5, True),
        (100, 150, 0.5, False),
        (100, 49, 0.5, True),
        (100, 50, 0.5, False),
        (100, 1_000, 0.5, True),
        (100, 10, 0.95, False),
        (100, 10, None, True),  # the default, 0.5
        (100, 250, 2, False),
        (0, 5, 0.5, True),
        (0, 0, 0.5, False),
    ],
)
def test_a_size_change_past_the_fraction_is_news(
    before: int, now: int, fraction: float | None, news: bool
) -> None:
    runs = [(result("aud", SYNCED, uids_total=now), KEY)]
    past = {(KEY, "aud_id"): Past(status=SYNCED, uids=before)}
    found = changes(runs, {}, past, {} if fraction is None else {"aud": fraction})
    assert [c.event for c in found] == (["size_changed"] if news else [])
    if news:
        (change,) = found
        assert (change.uids_before, change.uids_now, change.status) == (before, now, SYNCED)
        text = message(found, "run-7")["text"]
        assert "1 cohort changed size" in text
        assert f"from {before:,} to {now:,}" in text


def test_no_size_news_without_a_success_to_compare_or_when_the_run_did_not_sync() -> None:
    past = {(KEY, "aud_id"): Past(status=SYNCED, uids=100)}
    assert changes([(result("aud", SYNCED, uids_total=900), KEY)], {}, {}) == []
    failed = changes([(result("aud", FAILED, "HTTP 413", uids_total=900), KEY)], {}, past)
    assert [c.event for c in failed] == [FAILED]
    # A recovery with a jump is two changes: the recovery, and the size.
    back = changes([(result("aud", SYNCED, uids_total=900), KEY)], {KEY: {"aud_id": FAILED}}, past)
    assert [c.event for c in back] == ["recovered", "size_changed"]


# -- the URL -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/services/T000/SECRET",
        "http://hooks.example.com/services/T000/SECRET",
        "https:///services/T000/SECRET",
        "https://hooks.example.com:99999/services/T000/SECRET",
    ],
)
def test_an_unusable_url_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(SettingsError, match="MOENGAGE_NOTIFY_URL") as caught:
        check_notify_url(url)
    assert "SECRET" not in str(caught.value) and "hooks.example.com" not in str(caught.value)


# Host 127.0.0.1 to urlsplit, 127.1 (loopback too) at PORT to requests, which is where it goes.
CRAFTED = "http://127.1:{port}\\@127.0.0.1" + SECRET_PATH


@pytest.mark.parametrize(
    "url",
    [
        CRAFTED,
        "http://hooks.example.com\\@127.0.0.1" + SECRET_PATH,
        "http://user:pw@127.0.0.1:9" + SECRET_PATH,
        "http://hooks.example.com:80@127.0.0.1" + SECRET_PATH,
    ],
    ids=["backslash-loopback", "backslash-elsewhere", "userinfo", "at-in-authority"],
)
def test_a_url_parsers_disagree_on_is_refused_before_any_connection(
    url: str, warehouse: DuckDBWarehouse
) -> None:
    got: list[str] = []

    def answer(path: str, body: Any) -> tuple[int, bytes]:
        got.append(path)
        return 200, b"ok"

    with serving(answer) as port:
        url = url.format(port=port)
        state, progress = store(warehouse), Recorder()
        failing = report(result("orders", FAILED, "HTTP 413"))
        env = {"MOENGAGE_NOTIFY_URL": url}
        assert notify_after_sync(state, failing, {"orders": KEY}, env, progress) == []
        assert got == []  # the receiver saw nothing
        assert progress.messages == []  # never "notified http://127.0.0.1"
        # Built by hand, too: no post can go to it.
        with pytest.raises(SettingsError):
            post(NotifySettings(url=Secret(url)), {"text": "hi"})
        assert got == []
    (warning,) = progress.warnings
    assert "MOENGAGE_NOTIFY_URL" in warning and "no notification sent" in warning
    assert "backslash" in warning or "must not carry credentials" in warning
    assert "unit-notify-secret" not in warning and "B000" not in warning
    assert "pw" not in warning and "hooks.example.com" not in warning


def test_an_at_sign_in_the_path_is_allowed() -> None:
    # Microsoft Teams webhook URLs have one; it is not a user part.
    url = "https://example.webhook.office.com/webhookb2/a1b2@c3d4/IncomingWebhook/e5/f6"
    settings = NotifySettings.from_env({"MOENGAGE_NOTIFY_URL": url})
    assert settings is not None and settings.receiver == "https://example.webhook.office.com"


def test_settings_hide_the_url() -> None:
    url = f"https://hooks.slack.com{SECRET_PATH}?token=abc"
    settings = NotifySettings.from_env({"MOENGAGE_NOTIFY_URL": f"  {url} "})
    assert settings is not None
    assert settings.url.reveal() == url
    assert settings.receiver == "https://hooks.slack.com"
    for text in (repr(settings), str(settings)):
        assert SECRET_PATH not in text and "abc" not in text
    assert NotifySettings.from_env({}) is None
    assert NotifySettings.from_env({"MOENGAGE_NOTIFY_URL": " "}) is None


# -- a receiver on loopback ----------------------------------------------------------------


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: answers each post with the next status (then the
    last), echoing its path in the body, and records what it got."""

    statuses: list[int] = field(default_factory=lambda: [200])
    bodies: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{SECRET_PATH}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()

    def answer(path: str, body: Any) -> tuple[int, bytes]:
        got.bodies.append(body)
        got.paths.append(path)
        status = got.statuses[min(len(got.bodies), len(got.statuses)) - 1]
        return status, f"no_service for {path}".encode()

    with serving(answer) as got.port:
        yield got


def fast(url: str) -> NotifySettings:
    return NotifySettings(url=Secret(url), backoff_initial=0.01, backoff_max=0.02)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_post_is_one_request(receiver: Receiver) -> None:
    assert post(fast(receiver.url), {"text": "hi"}) == 1
    assert receiver.bodies == [{"text": "hi"}] and receiver.paths == [SECRET_PATH]


def test_server_errors_are_retried_under_the_shared_policy(receiver: Receiver) -> None:
    receiver.statuses = [500, 503, 200]
    assert post(fast(receiver.url), {"text": "hi"}) == 3


def test_a_receiver_that_keeps_failing_is_given_up_on(receiver: Receiver) -> None:
    receiver.statuses = [500]
    with pytest.raises(NotificationFailed) as caught:
        post(fast(receiver.url), {"text": "hi"})
    assert len(receiver.bodies) == 3
    text = str(caught.value)
    assert f"http://127.0.0.1:{receiver.port} not sent (HTTP 500, 3 attempts)" in text
    assert "next run" in text and SECRET_PATH not in text and "B000" not in text


def test_a_refusal_is_not_retried_and_its_answer_keeps_the_secret(receiver: Receiver) -> None:
    receiver.statuses = [404]
    with pytest.raises(NotificationFailed) as caught:
        post(fast(receiver.url), {"text": "hi"})
    assert len(receiver.bodies) == 1
    text = str(caught.value)
    assert "answered HTTP 404 (no_service for ***)" in text
    assert SECRET_PATH not in text and "B000" not in text


def test_a_closed_port_is_a_failed_post() -> None:
    url = f"http://127.0.0.1:{closed_port()}{SECRET_PATH}"
    with pytest.raises(NotificationFailed, match="ConnectionError, 3 attempts") as caught:
        post(fast(url), {"text": "hi"})
    assert SECRET_PATH not in str(caught.value)


def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_deadline() -> None:
    # A byte a second: its answer would take two minutes; the post's budget is 2 s.
    with RawServer(answer("200 OK"), gap=1.0) as server:
        settings = with_fields(fast(server.url + SECRET_PATH), budget_seconds=2.0)
        started = time.monotonic()
        with pytest.raises(NotificationFailed) as caught:
            post(settings, {"text": "hi"})
        took = time.monotonic() - started
    assert 1.9 < took < 4, took
    text = str(caught.value)
    assert "not sent (no complete answer within 2 s, 1 attempt)" in text
    assert SECRET_PATH not in text


def test_a_stop_cuts_the_post_off_at_once() -> None:
    stop = threading.Event()
    with RawServer(answer("200 OK"), gap=1.0) as server:
        settings = with_fields(fast(server.url + SECRET_PATH), budget_seconds=60.0)
        threading.Timer(0.5, stop.set).start()
        started = time.monotonic()
        with pytest.raises(NotificationFailed) as caught:
            post(settings, {"text": "hi"}, stop)
        took = time.monotonic() - started
        assert len(server.received()) == 1  # not tried again
    assert took < 2, took
    assert "not sent: the run was interrupted; the next run posts it again" in str(caught.value)


# -- after a sync: recorded only once posted -----------------------------------------------


class Recorder(Progress):
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.warnings: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)

    def warning(self, text: str) -> None:
        self.warnings.append(text)


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[DuckDBWarehouse]:
    engine = DuckDBWarehouse(str(tmp_path / "state.duckdb"))
    try:
        assert store(engine).prepare(create=True).ready
        yield engine
    finally:
        engine.close()


def report(*results: CohortResult, dry_run: bool = False) -> RunReport:
    return RunReport(run_id="run-1", started_at="now", dry_run=dry_run, results=list(results))


def test_recorded_only_after_the_receiver_accepted(
    warehouse: DuckDBWarehouse, receiver: Receiver
) -> None:
    state, progress = store(warehouse), Recorder()
    keys = {"orders": KEY, "fine": KEY}
    failing = report(result("orders", FAILED, "HTTP 413"), result("fine", SYNCED))

    receiver.statuses = [500]
    assert notify_changes(state, failing, keys, fast(receiver.url), progress) == []
    assert len(progress.warnings) == 1 and "not sent (HTTP 500" in progress.warnings[0]
    assert state.notified(KEY) == {}

    receiver.statuses = [500, 500, 500, 200]
    (found,) = notify_changes(state, failing, keys, fast(receiver.url), progress)
    assert found.model == "orders" and found.previous is None
    assert state.notified(KEY) == {"orders_id": FAILED}
    assert progress.messages == [f"notified http://127.0.0.1:{receiver.port}: 1 cohort failed"]

    # The same failure again: nothing to post.
    posts = len(receiver.bodies)
    assert notify_changes(state, failing, keys, fast(receiver.url), progress) == []
    assert len(receiver.bodies) == posts
    # A dry run never notifies, whatever changed.
    back = report(result("orders", SYNCED), dry_run=True)
    assert notify_changes(state, back, keys, fast(receiver.url), progress) == []
    (found,) = notify_changes(
        state, report(result("orders", SYNCED)), keys, fast(receiver.url), progress
    )
    assert found.event == "recovered" and state.notified(KEY) == {"orders_id": SYNCED}
    assert state.notified(OTHER) == {}
    assert SECRET_PATH not in json.dumps(receiver.bodies)
    assert SECRET_PATH not in repr(progress.messages + progress.warnings)


def test_no_url_no_post_and_a_bad_url_is_a_warning(warehouse: DuckDBWarehouse) -> None:
    state, progress = store(warehouse), Recorder()
    failing = report(result("orders", FAILED, "HTTP 413"))
    assert notify_after_sync(state, failing, {"orders": KEY}, {}, progress) == []
    bad = {"MOENGAGE_NOTIFY_URL": "http://hooks.example.com/services/SECRET"}
    assert notify_after_sync(state, failing, {"orders": KEY}, bad, progress) == []
    (warning,) = progress.warnings
    assert "MOENGAGE_NOTIFY_URL" in warning and "no notification sent" in warning
    assert "SECRET" not in warning
    assert state.notified(KEY) == {}


def node(name: str, **meta: Any) -> ModelNode:
    return ModelNode(f"model.shop.{name}", name, f"main.{name}", "", meta, "config.meta")


def invalid(model: str) -> CohortResult:
    return CohortResult(model=model, cohort_id=None, cohort_name=None, status=INVALID)


def test_an_invalid_config_is_announced_under_the_cohort_it_would_sync(
    warehouse: DuckDBWarehouse,
) -> None:
    state = store(warehouse)
    started = utcnow()
    for run_id, cohort_id, model in (
        ("r1", "orders", "orders"),
        ("r2", "orders_vip", "orders"),  # its latest: the id it synced last
        ("r1", "shared", "other"),
    ):
        state.save_run(
            RunRow(run_id, *KEY.params, cohort_id, model, "add", False, started, status=SYNCED)
        )
        started += timedelta(minutes=1)
    nodes = {
        "orders": node("orders", cohortid="orders_vip", cohort_name="Orders"),
        "fresh": node("fresh", cohort_id="fresh_id", mode="bogus"),
        "nobody": node("nobody", cohort_id=42),
        "thief": node("thief", cohort_id="shared", mode="bogus"),
        "taken": node("taken", cohort_id="busy", mode="bogus"),
        "twin1": node("twin1", cohort_id="twin", mode="bogus"),
        "twin2": node("twin2", cohort_id="twin", mode="bogus"),
        "abroad": node("abroad", destination="EU", mode="bogus"),
        "unkeyed": node("unkeyed", destination="apac", mode="bogus"),
    }
    keys = {None: KEY, "eu": OTHER}
    found = invalid_cohorts(
        [invalid(name) for name in nodes],
        nodes,
        keys.get,
        StateHistory(warehouse),
        taken={(KEY, "busy")},
    )
    assert found == {
        "orders": (KEY, "orders_vip"),
        "fresh": (KEY, "fresh_id"),
        "nobody": (KEY, "nobody"),
        "abroad": (OTHER, "abroad"),
        # A destination without settings: announced under the default's.
        "unkeyed": (KEY, "unkeyed"),
    }


def test_validate_warns_of_an_unusable_url(tmp_path: Path) -> None:
    from dbt_moengage.pipeline import SyncOptions, validate

    from .test_settings_commands import _project

    environ = {
        "MOENGAGE_WORKSPACE_ID": "WS_TEST",
        "MOENGAGE_API_KEY": "Q7xK2mZp9WvR4tLs",
        "MOENGAGE_DATA_CENTER": "01",
        "MOENGAGE_NOTIFY_URL": "http://hooks.example.com/services/SECRET",
    }
    found = validate(SyncOptions(project_dir=_project(tmp_path), environ=environ))
    assert not found.problems and len(found.specs) == 1
    (warning,) = [w for w in found.warnings if "MOENGAGE_NOTIFY_URL" in w]
    assert "no notification would be sent" in warning and "SECRET" not in warning

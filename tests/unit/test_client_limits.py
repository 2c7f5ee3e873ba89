"""The client's time limits against servers on 127.0.0.1: a wall-clock deadline per request
(a server or a proxy trickling its answer), one retry budget per destination (a Retry-After
of a day, a destination that is down), long waits announced, and a stop that ends waits and
sends nothing new."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from dbt_moengage.client import MoEngageClient, Tally
from dbt_moengage.errors import Interrupted, RequestRejected, TransientError
from dbt_moengage.pacer import Pacer
from dbt_moengage.packing import ADD, Body, BodyPacker
from dbt_moengage.settings import MoEngageSettings, Secret
from dbt_moengage.testing.emulator import Emulator, EmulatorConfig, Faults

from ..slow_server import RawServer, answer

WORKSPACE = "WS_LIMITS"
KEY = "sk-limits-test-key"
SUCCESS = b'{"status": "success", "message": "accepted"}'


def settings(base_url: str, **changes: object) -> MoEngageSettings:
    base = MoEngageSettings(
        workspace_id=WORKSPACE,
        api_key=Secret(KEY),
        base_url=base_url,
        max_body_bytes=2_000,
        backoff_initial=0.01,
        backoff_max=0.05,
        max_attempts=3,
        timeout_seconds=30.0,
        request_deadline_seconds=1.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def bodies(count: int) -> list[Body]:
    packer = BodyPacker(
        action=ADD,
        partner="dbt-moengage",
        cohort_name="Limits",
        cohort_id="limits",
        description="d",
        max_bytes=2_000,
    )
    return list(packer.pack([[f"user-{i:06d}" for i in range(count)]]))


class Trickler:
    """A raw HTTP server on 127.0.0.1 that answers its first `slow` connections a byte every
    `gap` seconds (in the headers or the body), and the others at once."""

    def __init__(self, where: str, slow: int = 1, gap: float = 0.3) -> None:
        self.where, self.slow, self.gap = where, slow, gap
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        self.released = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.answer, args=(conn, self.connections), daemon=True).start()

    def answer(self, conn: socket.socket, number: int) -> None:
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(SUCCESS)}\r\n\r\n"
        ).encode()
        with conn:
            try:
                conn.recv(65536)
                if number > self.slow:
                    conn.sendall(head + SUCCESS)
                    return
                if self.where == "headers":
                    slow, rest = head, SUCCESS
                else:
                    conn.sendall(head)
                    slow, rest = SUCCESS, b""
                for byte in slow:
                    if self.released.wait(self.gap):
                        return
                    conn.sendall(bytes([byte]))
                conn.sendall(rest)
            except OSError:
                return

    def close(self) -> None:
        self.released.set()
        self.sock.close()


@pytest.fixture
def trickler(request: pytest.FixtureRequest) -> Iterator[Trickler]:
    server = Trickler(request.param)
    yield server
    server.close()


@pytest.mark.parametrize("trickler", ["headers", "body"], indirect=True)
def test_a_trickling_answer_ends_at_the_deadline_and_is_retried(trickler: Trickler) -> None:
    # Each byte comes well within the read timeout (30 s): only a wall-clock deadline ends it.
    tally = Tally()
    started = time.monotonic()
    with MoEngageClient(settings(trickler.url)) as client:
        client.send(bodies(1)[0].payload, tally)
    elapsed = time.monotonic() - started
    assert tally.requests == 2 and tally.retries == 1
    assert trickler.connections == 2
    assert elapsed < 10  # about one deadline (1 s), not the 30 s read timeout


@pytest.mark.parametrize("trickler", ["body"], indirect=True)
def test_the_deadline_is_named_when_attempts_run_out(trickler: Trickler) -> None:
    trickler.slow = 99
    with (
        MoEngageClient(settings(trickler.url, max_attempts=2)) as client,
        pytest.raises(TransientError) as caught,
    ):
        client.send(bodies(1)[0].payload, Tally())
    message = str(caught.value)
    assert "no complete answer" in message and "within 1 s" in message
    assert "MOENGAGE_REQUEST_DEADLINE_SECONDS" in message
    assert "gave up after 2 attempts in" in message


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    config = EmulatorConfig(workspace_id=WORKSPACE, api_key=KEY, rate_limit_per_min=None)
    with Emulator(config) as server:
        yield server


def retry_after(emulator: Emulator, count: int, seconds: int) -> None:
    """The emulator answers 429 with `Retry-After: seconds` to its next `count` requests."""
    original = emulator._admit
    left = [count]

    def admit(workspace: str, now: float) -> object:
        if left[0] > 0:
            left[0] -= 1
            headers = {"Retry-After": str(seconds)}
            return emulator._fail(429, "slow down", "TooManyRequests", **headers)
        return original(workspace, now)

    emulator._admit = admit  # type: ignore[assignment]


def test_a_day_long_retry_after_is_capped(emulator: Emulator) -> None:
    retry_after(emulator, count=1, seconds=86_400)
    waits: list[float] = []
    client = MoEngageClient(
        settings(emulator.url), on_wait=lambda seconds, why: waits.append(seconds)
    )
    client._sleep = waits.append  # type: ignore[method-assign,assignment]
    # The pause the 429 puts on the pacer is the test's to skip, not to sleep through.
    clock = [0.0]
    client.pacer = Pacer(
        300, clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s)
    )
    with client:
        client.send(bodies(1)[0].payload, Tally())
    # Announced once, then waited: 300 s, never the day the server asked for.
    assert waits == [300.0, 300.0]


def test_waits_are_announced_and_the_retry_budget_bounds_them(emulator: Emulator) -> None:
    retry_after(emulator, count=100, seconds=2)
    waits: list[tuple[float, str]] = []
    client = MoEngageClient(
        settings(emulator.url, max_attempts=8, retry_budget_seconds=3.0),
        on_wait=lambda seconds, why: waits.append((seconds, why)),
    )
    client.announce_after = 1.0
    started = time.monotonic()
    with client, pytest.raises(TransientError) as caught:
        client.send(bodies(1)[0].payload, Tally())
    # One 2 s wait fits the 3 s budget; a second would end past it, so it is not begun.
    assert [seconds for seconds, _ in waits] == [2.0]
    assert "HTTP 429" in waits[0][1]
    message = str(caught.value)
    assert "gave up after 2 attempts in 2 s" in message
    assert "MOENGAGE_RETRY_BUDGET_SECONDS" in message
    assert time.monotonic() - started < 10


def test_short_waits_are_not_announced(emulator: Emulator) -> None:
    emulator.set_faults(Faults(error_before_rate=0.5, seed=3))
    waits: list[tuple[float, str]] = []
    with MoEngageClient(
        settings(emulator.url, max_attempts=20), on_wait=lambda s, why: waits.append((s, why))
    ) as client:
        client.send_all(bodies(300), Tally())
    assert waits == []


def test_a_stop_ends_a_long_wait_and_sends_nothing_new(emulator: Emulator) -> None:
    retry_after(emulator, count=1, seconds=120)
    stop = threading.Event()
    waiting = threading.Event()
    client = MoEngageClient(
        settings(emulator.url, max_attempts=8, retry_budget_seconds=3_600.0),
        stop=stop,
        on_wait=lambda seconds, why: waiting.set(),
    )
    errors: list[BaseException] = []

    def send() -> None:
        try:
            client.send_all(bodies(50), Tally())
        except BaseException as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    started = time.monotonic()
    sender.start()
    assert waiting.wait(30)
    stop.set()
    sender.join(30)
    client.close()
    assert not sender.is_alive()
    assert time.monotonic() - started < 30  # not the 300 s the server asked for
    assert len(errors) == 1 and isinstance(errors[0], Interrupted)
    assert [r.status for r in emulator.requests()] == [429]


def test_a_413_names_the_body_size_setting(emulator: Emulator) -> None:
    with (
        MoEngageClient(settings(emulator.url, max_body_bytes=2_000)) as client,
        pytest.raises(RequestRejected) as caught,
    ):
        client.send(b"{" + b" " * 200_000 + b"}", Tally())
    message = str(caught.value)
    assert "HTTP 413" in message and "200,002 bytes" in message
    assert "lower MOENGAGE_MAX_BODY_BYTES (now 2,000)" in message


# -- one retry budget per destination, and the deadline through a proxy ---------------------


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests reads proxies from the environment: none but the test's own."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.mark.usefixtures("no_proxies")
def test_a_request_with_its_retries_ends_within_the_budget() -> None:
    # Attempts start at about 0, 1 and 2 s: the third gets what is left of the 2.5 s budget,
    # not a whole deadline (the 618 s against a 600 s budget, scaled down).
    with RawServer(answer("200 OK"), gap=0.3) as server:
        limits = settings(server.url, max_attempts=100, retry_budget_seconds=2.5)
        started = time.monotonic()
        with MoEngageClient(limits) as client, pytest.raises(TransientError) as caught:
            client.send(bodies(1)[0].payload, Tally())
        elapsed = time.monotonic() - started
    assert len(server.received()) == 3
    assert elapsed < 2.5 + 0.3
    assert "MOENGAGE_RETRY_BUDGET_SECONDS" in str(caught.value)


@pytest.mark.usefixtures("no_proxies")
def test_a_destination_failing_past_its_budget_is_down_for_every_later_send() -> None:
    with RawServer(answer("503 Service Unavailable", b'{"status": "fail"}')) as server:
        host = server.url.removeprefix("http://")
        limits = settings(server.url, max_attempts=1_000, retry_budget_seconds=1.0)
        with MoEngageClient(limits) as client:
            with pytest.raises(TransientError) as caught:
                client.send_all(bodies(300), Tally())
            sent = len(server.received())
            assert client.down is not None
            later = Tally()
            started = time.monotonic()
            with pytest.raises(TransientError) as again:
                client.send_all(bodies(300), later)
            assert time.monotonic() - started < 0.5
    assert sent >= 2 and len(server.received()) == sent
    assert later.requests == 0
    down = str(client.down)
    assert str(again.value) == down
    # The seconds are the budget's, or a second more on a loaded machine.
    assert re.match(rf"{re.escape(host)} has failed for [12] s", down), down
    assert "retry budget" in down and "MOENGAGE_RETRY_BUDGET_SECONDS" in down
    # The last attempt's 503, or, on a loaded machine, the deadline of an attempt begun with
    # little of the budget left.
    assert re.search(
        r'last error: (HTTP 503: \{"status": "fail"\}|no complete answer from \S+ within \d+ s)',
        down,
    ), down
    # The sender that spent the budget says how it got there; on a loaded machine a sender
    # waiting behind it (one at a time until a request succeeds) may fail first, with the
    # destination's `down` itself.
    first = str(caught.value)
    assert first == down or re.match(
        rf"gave up after {sent} attempts in [12] s: {re.escape(down)}", first
    ), first


@pytest.mark.usefixtures("no_proxies")
def test_the_deadline_holds_through_an_http_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 1 of 127.0.0.1 takes no connection: only the proxy can answer, and it trickles.
    with RawServer(answer("200 OK"), gap=0.1) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        started = time.monotonic()
        with (
            MoEngageClient(settings("http://127.0.0.1:1", max_attempts=1)) as client,
            pytest.raises(TransientError, match="no complete answer"),
        ):
            client.send(bodies(1)[0].payload, Tally())
        elapsed = time.monotonic() - started
    # requests sent the proxy the absolute URI: the proxy was used.
    assert proxy.received()[0].startswith(b"POST http://127.0.0.1:1/v1/integrations/cohortsync")
    assert elapsed < 3  # about the 1 s deadline, not the ~13 s the proxy takes to answer


@pytest.mark.usefixtures("no_proxies")
def test_the_deadline_holds_through_an_https_proxy_tunnel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The proxy trickles its answer to CONNECT, before any TLS starts.
    with RawServer(b"HTTP/1.1 200 Connection established\r\n\r\n", gap=0.3) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        started = time.monotonic()
        with (
            MoEngageClient(settings("https://127.0.0.1:1", max_attempts=1)) as client,
            pytest.raises(TransientError, match="no complete answer"),
        ):
            client.send(bodies(1)[0].payload, Tally())
        elapsed = time.monotonic() - started
    assert proxy.received()[0].startswith(b"CONNECT 127.0.0.1:1 HTTP/")
    assert elapsed < 3  # about the 1 s deadline, not the ~12 s the proxy takes to answer

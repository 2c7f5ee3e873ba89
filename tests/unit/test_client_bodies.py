"""Answers of any size cost little memory: the MoEngage client and the notifier read at most
the start of a body, the dbt Cloud artifacts client at most MAX_ARTIFACT_BYTES, and none of
them reads a body it has no use for (issue "Hardening, round three", item 13).

`Flood` answers with a body of hundreds of MB made as it is sent, never held in memory;
tracemalloc measures what the code under test allocates meanwhile.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from dbt_moengage.client import BODY_READ, MoEngageClient, Tally
from dbt_moengage.errors import ArtifactError, NotificationFailed, RequestRejected
from dbt_moengage.integrations.dbt_cloud import artifacts
from dbt_moengage.integrations.dbt_cloud.config import WebhookConfig
from dbt_moengage.integrations.dbt_cloud.events import CloudRun
from dbt_moengage.notify import NotifySettings, post
from dbt_moengage.settings import MoEngageSettings, Secret

HUGE = 200 * 1024 * 1024
# What reading the start of an answer may cost; reading a HUGE body whole costs far more.
MEMORY_LIMIT = 50 * 1024 * 1024
_FILLER = b"x" * (1 << 20)
T = TypeVar("T")


class Flood:
    """An HTTP server on 127.0.0.1 answering every request with `status`, `headers` and a
    body of `size` bytes: `start`, then filler written a MB at a time (one bytes object,
    sent again and again) until done or the client hangs up. `sent` counts the body's bytes
    written so far, over every connection."""

    def __init__(self, status: str, size: int = HUGE, start: bytes = b"", **headers: str) -> None:
        self.status, self.size, self.start, self.headers = status, size, start, headers
        self.requests: list[bytes] = []
        self.sent = 0
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept; close alone does not
        self._sock.close()
        self._thread.join(5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                request = _read_request(conn)
                with self._lock:
                    self.requests.append(request)
                extra = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in self.headers.items())
                conn.sendall(
                    f"HTTP/1.1 {self.status}\r\nContent-Type: text/plain\r\n{extra}"
                    f"Content-Length: {self.size}\r\nConnection: close\r\n\r\n".encode()
                    + self.start
                )
                sent = len(self.start)
                while sent < self.size:
                    part = min(len(_FILLER), self.size - sent)
                    conn.sendall(_FILLER if part == len(_FILLER) else _FILLER[:part])
                    sent += part
                    with self._lock:
                        self.sent += part
            except OSError:
                pass


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests reads proxies from the environment; every test request stays on 127.0.0.1."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def peak_memory(call: Callable[[], T]) -> tuple[T | BaseException, int]:
    """What `call` returned or raised, and the most memory it held at once (tracemalloc)."""
    tracemalloc.start()
    try:
        try:
            outcome: T | BaseException = call()
        except Exception as exc:
            outcome = exc
        return outcome, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def moengage(url: str) -> MoEngageSettings:
    return MoEngageSettings(
        workspace_id="WS_BODIES",
        api_key=Secret("sk-bodies-test-key"),
        base_url=url,
        backoff_initial=0.01,
        backoff_max=0.02,
        max_attempts=2,
    )


def send(settings: MoEngageSettings) -> None:
    with MoEngageClient(settings) as client:
        client.send(b'{"uids": ["u1"]}', Tally())


# -- the MoEngage client ---------------------------------------------------------------------


@pytest.mark.parametrize("status", ["400 Bad Request", "200 OK"])
def test_a_huge_answer_is_read_only_at_its_start(status: str) -> None:
    with Flood(status, start=b"error: the body is not valid ") as server:
        started = time.monotonic()
        caught, peak = peak_memory(lambda: send(moengage(server.url)))
        took = time.monotonic() - started
    assert peak < MEMORY_LIMIT, f"{peak:,} bytes held to read a {HUGE:,} byte answer"
    assert isinstance(caught, RequestRejected), caught
    message = str(caught)
    assert "the body is not valid" in message
    assert f"a body over {BODY_READ // 1024} KB: only its start was read" in message
    assert len(message) < 1_000
    # Not retried, and the connection was dropped, not drained: far from all of it was sent.
    assert len(server.requests) == 1
    assert server.sent < HUGE // 2 and took < 10


def test_a_huge_server_error_is_retried_without_reading_it() -> None:
    with Flood("503 Service Unavailable") as server:
        caught, peak = peak_memory(lambda: send(moengage(server.url)))
    assert "gave up after 2 attempts" in str(caught) and "HTTP 503" in str(caught)
    assert peak < MEMORY_LIMIT and len(server.requests) == 2


# -- the notifier ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["400 Bad Request", "200 OK", "500 Internal Server Error"])
def test_a_huge_answer_to_a_notification_costs_little(status: str) -> None:
    with Flood(status, start=b"no_service") as server:
        settings = NotifySettings(
            url=Secret(f"{server.url}/services/T1/B2/huge-secret"),
            backoff_initial=0.01,
            backoff_max=0.02,
        )
        outcome, peak = peak_memory(lambda: post(settings, {"text": "hi"}))
    assert peak < MEMORY_LIMIT, f"{peak:,} bytes held to read a {HUGE:,} byte answer"
    if status.startswith("200"):
        assert outcome == 1
    else:
        assert isinstance(outcome, NotificationFailed)
        assert ("no_service" if status.startswith("400") else "HTTP 500") in str(outcome)
        assert "huge-secret" not in str(outcome)


# -- the dbt Cloud artifacts client ----------------------------------------------------------

RUN = CloudRun(account_id="1", job_id="2", run_id="3", status="Success")


def cloud(url: str, tmp_path: Path) -> WebhookConfig:
    return WebhookConfig(
        secret=Secret("hook"),
        api_token=Secret("dbtc-token"),
        project_dir=tmp_path,
        cloud_host=url,
        fetch_attempts=1,
    )


def test_an_artifact_over_the_cap_is_refused_as_it_streams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifacts, "MAX_ARTIFACT_BYTES", 3 << 20, raising=False)
    out = tmp_path / "out"
    out.mkdir()
    with Flood("200 OK", size=HUGE) as server, pytest.raises(ArtifactError) as caught:
        artifacts.fetch_artifacts(cloud(server.url, tmp_path), RUN, out)
    assert "over 3 MB" in str(caught.value)
    assert "dbtc-token" not in str(caught.value)
    assert list(out.iterdir()) == []  # no partial file left
    assert server.sent < HUGE // 2


def test_an_artifact_within_the_cap_is_saved_whole(tmp_path: Path) -> None:
    with Flood("200 OK", size=5 << 20, start=b"{") as server:
        artifacts.fetch_artifacts(cloud(server.url, tmp_path), RUN, tmp_path)
    for name in artifacts.ARTIFACTS:
        assert (tmp_path / name).stat().st_size == 5 << 20


def test_a_redirect_body_is_not_read_before_following_it(tmp_path: Path) -> None:
    with (
        Flood("200 OK", size=1_000) as target,
        Flood("302 Found", Location=f"{target.url}/artifact") as redirect,
    ):
        outcome, peak = peak_memory(
            lambda: artifacts.fetch_artifacts(cloud(redirect.url, tmp_path), RUN, tmp_path)
        )
    assert outcome is None, outcome
    assert peak < MEMORY_LIMIT, f"{peak:,} bytes held to follow a redirect"
    assert len(target.requests) == 2 and redirect.sent < HUGE // 2
    # requests drops the token on a redirect to another host (here another port).
    assert all(b"dbtc-token" not in request for request in target.requests)

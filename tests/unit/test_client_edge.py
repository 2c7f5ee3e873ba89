"""The client's HTTP edge against misbehaving servers on 127.0.0.1: redirects, answers that
are not MoEngage's success JSON, cut or undecodable bodies, TLS and DNS failures."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from requests import exceptions as rex

from dbt_moengage.client import MoEngageClient, Tally, request_error
from dbt_moengage.errors import (
    DestinationError,
    MoEngageSyncError,
    RequestRejected,
    TransientError,
    WorkspaceFatal,
)
from dbt_moengage.packing import ADD, Body, BodyPacker
from dbt_moengage.settings import MoEngageSettings, Secret

WORKSPACE = "WS_EDGE"
KEY = "sk-edge-test-key-never-shown"
BASIC_TOKEN = base64.b64encode(f"{WORKSPACE}:{KEY}".encode()).decode()
SUCCESS = b'{"status": "success", "message": "Your request has been accepted."}'
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")

Answer = Callable[[BaseHTTPRequestHandler], None]


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests reads proxies from the environment; every test request stays on 127.0.0.1."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


# -- a scripted server ----------------------------------------------------------------------


class _CountingServer(ThreadingHTTPServer):
    """Counts connections, and sets TLS up on them itself, so a failed handshake counts."""

    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None, cut_handshakes: int, handler: Any) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.tls = tls
        self.cut_handshakes = cut_handshakes
        self.connections = 0
        self.lock = threading.Lock()

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        with self.lock:
            self.connections += 1
            cut = self.connections <= self.cut_handshakes
        if self.tls is None:
            return sock, address
        if cut:
            # Read the ClientHello, then hang up: the client sees EOF mid-handshake.
            sock.recv(65536)
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            raise OSError("handshake cut on purpose")  # socketserver skips this connection
        return self.tls.wrap_socket(sock, server_side=True), address


class Scripted:
    """An HTTP(S) server on 127.0.0.1 giving `answers` in turn, the last one from then on."""

    def __init__(
        self, *answers: Answer, tls: ssl.SSLContext | None = None, cut_handshakes: int = 0
    ) -> None:
        self.answers = answers
        self.requests: list[tuple[str, str]] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with scripted.server.lock:
                    scripted.requests.append((self.command, self.path))
                    turn = len(scripted.requests) - 1
                scripted.answers[min(turn, len(scripted.answers) - 1)](self)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _CountingServer(tls, cut_handshakes, Handler)
        self.port = self.server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def connections(self) -> int:
        """TCP connections the server took, whether or not a request followed."""
        with self.server.lock:
            return self.server.connections

    def __enter__(self) -> Scripted:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


def raw(head: str, body: bytes = b"") -> Answer:
    """Write `head` (status line and headers) and `body` as given, then close."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        head_bytes = head.replace("\n", "\r\n").encode("latin-1") + b"Connection: close\r\n\r\n"
        # One write, so the whole answer is on the wire before any reset.
        handler.wfile.write(head_bytes + body)

    return answer


def answer(
    status: str, body: bytes, content_type: str = "application/json", **extra: str
) -> Answer:
    """A well-framed answer with `body` and any `extra` headers (underscores for dashes)."""
    headers = "".join(f"{name.replace('_', '-')}: {value}\n" for name, value in extra.items())
    head = f"HTTP/1.1 {status}\nContent-Type: {content_type}\nContent-Length: {len(body)}\n"
    return raw(head + headers, body)


def reset_after(first: Answer) -> Answer:
    """`first`, then an abortive close (RST) instead of an orderly one."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        first(handler)
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    return answer


def redirect(status: str, location: str) -> Answer:
    return answer(status, b"", "text/plain", Location=location)


def redirect_to_self(handler: BaseHTTPRequestHandler) -> None:
    location = f"http://127.0.0.1:{handler.connection.getsockname()[1]}{handler.path}"
    redirect("302 Found", location)(handler)


ok = answer("200 OK", SUCCESS)


# -- the client under test ------------------------------------------------------------------


def settings_for(base_url: str, **changes: Any) -> MoEngageSettings:
    """Settings for the server at `base_url`, with quick retries."""
    values: dict[str, Any] = {
        "workspace_id": WORKSPACE,
        "api_key": Secret(KEY),
        "base_url": base_url,
        "backoff_initial": 0.01,
        "backoff_max": 0.02,
        "max_attempts": 4,
        "max_body_bytes": 2_000,
    }
    return MoEngageSettings(**{**values, **changes})


def bodies(n_uids: int = 10) -> list[Body]:
    packer = BodyPacker(
        action=ADD,
        partner="dbt-moengage",
        cohort_name=".Edge Test",
        cohort_id="edge",
        description="edge test",
        max_bytes=2_000,
    )
    return list(packer.pack([[f"user-{i:06d}" for i in range(n_uids)]]))


def send_one(settings: MoEngageSettings, tally: Tally | None = None) -> None:
    with MoEngageClient(settings) as client:
        client.send(bodies(1)[0].payload, tally or Tally())


def safe(message: str) -> str:
    assert KEY not in message and BASIC_TOKEN not in message
    return message


# -- redirects are never followed -----------------------------------------------------------


@pytest.mark.parametrize(
    "status", ["301 Moved Permanently", "302 Found", "307 Temporary Redirect", "308 Permanent"]
)
def test_a_redirect_is_not_followed_and_stops_the_destination(status: str) -> None:
    with Scripted(ok) as other:
        target = f"{other.url}/v1/integrations/cohortsync"
        with Scripted(redirect(status, f"{target}?token=s3cr3t#frag")) as server:
            tally = Tally()
            with MoEngageClient(settings_for(server.url)) as client:
                with pytest.raises(DestinationError) as caught:
                    client.send_all(bodies(500), tally)
                # The next cohort of this destination sends nothing.
                with pytest.raises(DestinationError):
                    client.send(bodies(1)[0].payload, Tally())
        assert other.connections == 0 and other.requests == []
    assert server.requests == [("POST", "/v1/integrations/cohortsync")]
    assert tally.requests == 1 and tally.accepted == 0
    message = safe(str(caught.value))
    assert isinstance(caught.value, WorkspaceFatal)
    assert f"HTTP {status.split()[0]}" in message
    assert repr(target) in message
    assert "token" not in message and "s3cr3t" not in message and "frag" not in message
    assert "MOENGAGE_BASE_URL" in message and "MOENGAGE_DATA_CENTER" in message


def test_a_redirect_loop_costs_one_request() -> None:
    with Scripted(redirect_to_self) as server, pytest.raises(DestinationError):
        send_one(settings_for(server.url))
    assert len(server.requests) == 1


def test_a_long_location_is_cut_short_and_credentials_dropped() -> None:
    location = "https://user:hunter2@login.example.com/" + "p" * 1_000 + "?sig=abc"
    with (
        Scripted(redirect("302 Found", location)) as server,
        pytest.raises(DestinationError) as caught,
    ):
        send_one(settings_for(server.url))
    message = safe(str(caught.value))
    assert "https://login.example.com/ppp" in message and "..." in message
    assert "hunter2" not in message and "sig=" not in message
    assert len(message) < 500


def test_a_redirect_without_location_says_so() -> None:
    missing = pytest.raises(DestinationError, match="without a Location header")
    with Scripted(answer("303 See Other", b"")) as server, missing:
        send_one(settings_for(server.url))


# -- only MoEngage's success JSON is an acceptance -----------------------------------------

LOGIN_PAGE = (
    "<html><head><title>Sign in to the corporate proxy</title></head><body>"
    f"<p>Authorization: Basic {BASIC_TOKEN}</p><p>key {KEY}</p>" + "<p>filler</p>" * 500
)
FAIL_JSON = {
    "status": "fail",
    "error": {"message": "cohort_id is invalid", "type": "Bad Request", "request_id": "r-1"},
}


@pytest.mark.parametrize(
    ("reply", "shown"),
    [
        (
            answer("200 OK", LOGIN_PAGE.encode(), "text/html; charset=utf-8"),
            ["text/html", "MOENGAGE_BASE_URL"],
        ),
        (answer("200 OK", json.dumps(FAIL_JSON).encode()), ["cohort_id is invalid", "fail"]),
        (answer("200 OK", b""), ["'application/json'", "body 'empty'"]),
        (answer("204 No Content", b"", "text/plain"), ["'text/plain'", "body 'empty'"]),
        (answer("200 OK", b"OK", "text/plain"), ["'text/plain'", "body 'OK'"]),
        (answer("200 OK", b'["success"]'), ['["success"]']),
        (answer("200 OK", b'{"status": "Success"}'), ["Success"]),
        (raw("HTTP/1.1 200 OK\nContent-Length: 2\n", b"{}"), ["Content-Type 'none'"]),
        (answer("200 OK", b"[" * 100_000), ["[[["]),
    ],
    ids=["html", "json-fail", "empty", "204", "text", "json-list", "wrong-case", "no-type", "deep"],
)
def test_a_2xx_that_is_not_success_json_is_rejected_without_retry(
    reply: Answer, shown: list[str]
) -> None:
    tally = Tally()
    with Scripted(reply) as server, pytest.raises(RequestRejected) as caught:
        send_one(settings_for(server.url), tally)
    assert len(server.requests) == 1 and tally.requests == 1
    detail = safe(caught.value.detail)
    assert caught.value.status in (200, 204)
    assert "not the API's acceptance" in detail and '{"status": "success"}' in detail
    for text in shown:
        assert text in detail
    # The body is cut short (~200 characters), never pasted whole.
    assert len(detail) < 400


def test_a_login_page_shows_its_start_with_secrets_masked() -> None:
    page = answer("200 OK", LOGIN_PAGE.encode(), "text/html")
    with Scripted(page) as server, pytest.raises(RequestRejected) as caught:
        send_one(settings_for(server.url))
    detail = safe(caught.value.detail)
    assert "Sign in to the corporate proxy" in detail
    assert "Basic ***" in detail and "key ***" in detail
    assert "..." in detail


def test_an_echo_of_the_credentials_in_any_encoding_is_masked() -> None:
    token, key = f"{WORKSPACE}:{KEY}".encode(), KEY.encode()
    echoed = [
        KEY.upper(),
        key.hex(),
        base64.b64encode(key).decode(),
        BASIC_TOKEN.rstrip("="),
        base64.urlsafe_b64encode(token).decode().rstrip("="),
    ]
    page = answer("400 Bad Request", json.dumps({"headers_seen": echoed}).encode())
    with Scripted(page) as server, pytest.raises(RequestRejected) as caught:
        send_one(settings_for(server.url))
    shown = safe(str(caught.value))
    assert '"headers_seen": ["***", "***", "***", "***", "***"]' in shown
    for form in echoed:
        assert form.lower() not in shown.lower()


# -- cut and undecodable bodies are retried -------------------------------------------------

CUT_CHUNKED = reset_after(
    raw(
        "HTTP/1.1 200 OK\nContent-Type: application/json\nTransfer-Encoding: chunked\n",
        b'40\r\n{"status": "succ',
    )
)
BAD_GZIP = answer("200 OK", b"this is not gzip at all", Content_Encoding="gzip")


@pytest.mark.parametrize("first", [CUT_CHUNKED, BAD_GZIP], ids=["cut-chunked", "bad-gzip"])
def test_a_broken_body_is_retried_then_succeeds(first: Answer) -> None:
    tally = Tally()
    with Scripted(first, ok) as server:
        send_one(settings_for(server.url), tally)
    assert len(server.requests) == 2
    assert tally.requests == 2 and tally.retries == 1


@pytest.mark.parametrize(
    ("first", "said"),
    [(CUT_CHUNKED, "cut off mid-body"), (BAD_GZIP, "could not be decoded")],
    ids=["cut-chunked", "bad-gzip"],
)
def test_a_body_broken_every_time_gives_up_as_transient(first: Answer, said: str) -> None:
    tally = Tally()
    with Scripted(first) as server, pytest.raises(TransientError) as caught:
        send_one(settings_for(server.url, max_attempts=3), tally)
    assert len(server.requests) == 3 and tally.requests == 3
    assert "gave up after 3 attempts" in str(caught.value) and said in str(caught.value)


# -- TLS ------------------------------------------------------------------------------------


def self_signed_context(folder: Path) -> ssl.SSLContext:
    """A server TLS context for 127.0.0.1 with a certificate no CA signed, made here."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def test_an_untrusted_certificate_stops_the_destination_after_one_connection(
    tmp_path: Path,
) -> None:
    tally = Tally()
    with Scripted(ok, tls=self_signed_context(tmp_path)) as server:
        with MoEngageClient(settings_for(server.url)) as client:
            with pytest.raises(DestinationError) as caught:
                client.send_all(bodies(500), tally)
            with pytest.raises(DestinationError):
                client.send_all(bodies(500), Tally())
        assert server.connections == 1 and server.requests == []
    assert tally.requests == 1 and tally.retries == 0
    message = safe(str(caught.value))
    assert f"TLS with 127.0.0.1:{server.port} failed" in message
    assert "certificate" in message
    assert "MOENGAGE_BASE_URL" in message


def test_a_handshake_cut_off_is_retried_but_a_bad_certificate_is_not(tmp_path: Path) -> None:
    tally = Tally()
    with Scripted(ok, tls=self_signed_context(tmp_path), cut_handshakes=1) as server:
        with pytest.raises(DestinationError, match="certificate"):
            send_one(settings_for(server.url), tally)
        assert server.connections == 2 and server.requests == []
    assert tally.requests == 2 and tally.retries == 1


# -- DNS ------------------------------------------------------------------------------------


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every name but loopback fails to resolve, as a mistyped host would; nothing leaves."""
    looked_up: list[object] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        if host in ("127.0.0.1", "localhost"):
            return real(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return looked_up


def test_a_host_that_does_not_resolve_stops_at_once(no_dns: list[object]) -> None:
    tally = Tally()
    with pytest.raises(DestinationError) as caught:
        send_one(settings_for("https://api-07.moengage.com"), tally)
    assert no_dns == ["api-07.moengage.com"]
    assert tally.requests == 1 and tally.retries == 0
    message = safe(str(caught.value))
    assert "api-07.moengage.com does not resolve" in message
    assert "MOENGAGE_DATA_CENTER" in message and "MOENGAGE_BASE_URL" in message
    assert "01, 02, 03, 04, 05, 06, 101" in message


def test_every_cohort_of_a_destination_that_does_not_resolve_fails_fast(
    no_dns: list[object],
) -> None:
    settings = settings_for("https://api-07.moengage.com", max_in_flight=4, max_attempts=8)
    cohorts = [Tally() for _ in range(3)]
    with MoEngageClient(settings) as client:
        for tally in cohorts:
            sent = bodies(2_000)
            assert len(sent) >= 20
            with pytest.raises(DestinationError):
                client.send_all(sent, tally)
    assert len(no_dns) == 1
    assert [tally.requests for tally in cohorts] == [1, 0, 0]
    assert all(tally.accepted == 0 and tally.retries == 0 for tally in cohorts)


# -- settings requests cannot send with -----------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"base_url": "ftp://127.0.0.1:1"}, "MOENGAGE_BASE_URL"),
        ({"base_url": "127.0.0.1:1"}, "MOENGAGE_BASE_URL"),
        ({"base_url": "api-01.moengage.com"}, "MOENGAGE_BASE_URL"),
        ({"base_url": "http://127.0.0.1:99999"}, "MOENGAGE_BASE_URL"),
        ({"workspace_id": "WS\nInjected: 1"}, "MOENGAGE_WORKSPACE_ID"),
        ({"api_key": Secret("k\u00e9y\u2019")}, "MOENGAGE_API_KEY"),
    ],
    ids=["ftp", "no-scheme-port", "no-scheme", "bad-port", "header-newline", "non-latin-1-key"],
)
def test_settings_requests_cannot_send_with_stop_the_destination(
    changes: dict[str, Any], named: str
) -> None:
    tally = Tally()
    settings = settings_for(**{"base_url": "http://127.0.0.1:1", **changes})
    with MoEngageClient(settings) as client:
        with pytest.raises(DestinationError) as caught:
            client.send(bodies(1)[0].payload, tally)
        with pytest.raises(DestinationError):
            client.send(bodies(1)[0].payload, tally)
    assert tally.requests == 1
    assert named in safe(str(caught.value))
    assert "k\u00e9y" not in str(caught.value)


# -- the mapping, one exception at a time ---------------------------------------------------


def _dns_failure() -> Exception:
    gaierror = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    reason = urllib3.exceptions.NameResolutionError("api-07.moengage.com", None, gaierror)  # type: ignore[arg-type]
    return rex.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", reason))  # type: ignore[arg-type]


MAPPING: list[tuple[Exception, type[MoEngageSyncError]]] = [
    (rex.ConnectTimeout(), TransientError),
    (rex.ReadTimeout(), TransientError),
    (rex.Timeout(), TransientError),
    (rex.ConnectionError(ConnectionRefusedError(111, "refused")), TransientError),
    (rex.ConnectionError(ConnectionResetError(104, "reset")), TransientError),
    (rex.ChunkedEncodingError(), TransientError),
    (rex.ContentDecodingError(), TransientError),
    (rex.ProxyError(socket.gaierror(socket.EAI_NONAME, "proxy")), TransientError),
    (rex.RetryError(), TransientError),
    (rex.StreamConsumedError(), TransientError),
    (rex.RequestException(), TransientError),
    (urllib3.exceptions.ProtocolError("Connection aborted."), TransientError),
    (_dns_failure(), DestinationError),
    (rex.ConnectionError(socket.gaierror(socket.EAI_AGAIN, "try again")), DestinationError),
    (rex.SSLError(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER]")), DestinationError),
    (rex.SSLError(ssl.SSLCertVerificationError(1, "certificate verify failed")), DestinationError),
    (rex.SSLError(ssl.SSLEOFError(8, "EOF occurred in violation of protocol")), TransientError),
    (rex.TooManyRedirects(), DestinationError),
    (rex.InvalidURL(), DestinationError),
    (rex.InvalidProxyURL(), DestinationError),
    (rex.InvalidSchema(), DestinationError),
    (rex.MissingSchema(), DestinationError),
    (rex.InvalidHeader(f"bad header value: {KEY!r}"), DestinationError),
    (UnicodeEncodeError("latin-1", "\u2019", 0, 1, "ordinal not in range(256)"), DestinationError),
]


@pytest.mark.parametrize(
    ("exc", "expected"),
    MAPPING,
    ids=[f"{i}-{type(e).__name__}" for i, (e, _) in enumerate(MAPPING)],
)
def test_every_requests_exception_has_a_type(
    exc: Exception, expected: type[MoEngageSyncError]
) -> None:
    settings = settings_for("https://user:hunter2@api-07.moengage.com/base?k=v")
    error = request_error(exc, settings)
    assert type(error) is expected
    message = safe(str(error))
    assert "api-07.moengage.com" in message and "hunter2" not in message
    if expected is DestinationError:
        assert "no further requests were sent" in message


def test_every_requests_exception_class_is_mapped() -> None:
    # A new exception in a requests release is caught (as a RequestException) all the same.
    settings = settings_for("https://api-07.moengage.com")
    for name in dir(rex):
        kind = getattr(rex, name)
        if isinstance(kind, type) and issubclass(kind, requests.RequestException):
            exc = kind("msg", "doc", 0) if issubclass(kind, rex.JSONDecodeError) else kind()
            assert isinstance(request_error(exc, settings), (TransientError, DestinationError))

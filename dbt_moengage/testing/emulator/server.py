"""The emulator served over HTTP on a local port (http.server, standard library only).

`Emulator` is a `Workspace` with a server: start it in a thread (or use it as a context
manager) and point the client at `emulator.url`; `serve_forever` runs it in the
foreground for `dbt-moengage emulator`. Besides the endpoint, `GET /cohorts`,
`GET /cohorts/<id>` and `GET /stats` show what it holds.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from .config import EmulatorConfig
from .contract import ENDPOINT
from .workspace import Reply, Workspace

# A body this many times over the limit is discarded unread: the connection is closed
# instead, since draining it would cost more than a reconnect.
_DRAIN_FACTOR = 8
_CHUNK = 65536


class Emulator(Workspace):
    """MoEngage's Cohort Sync API on a local port, with inspectable state and faults."""

    def __init__(self, config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(config)
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _bind(self) -> _Server:
        if self._server is None:
            self._server = _Server((self._host, self._port), self)
        return self._server

    def start(self) -> Emulator:
        """Serve in a daemon thread and return self."""
        server = self._bind()
        if self._thread is None:
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"moengage-emulator:{server.server_address[1]}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is None:
            return
        if thread is not None:
            server.shutdown()
            thread.join(timeout=5)
        server.server_close()
        # Keep-alive handler threads would otherwise outlive the server.
        server.close_connections()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:54321; the endpoint is url + ENDPOINT."""
        if self._server is None:
            raise RuntimeError("the emulator is not running: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket, live: bool) -> None:
        with self._live_lock:
            if live:
                self._live.add(conn)
            else:
                self._live.discard(conn)

    def close_connections(self) -> None:
        with self._live_lock:
            conns, self._live = list(self._live), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (or our own drop faults) are expected, not worth a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


def _allowed(path: str) -> str | None:
    """The method a path takes, or None when there is no such route."""
    if path == ENDPOINT:
        return "POST"
    if path in ("/cohorts", "/stats") or path.startswith("/cohorts/"):
        return "GET"
    return None


def _inspect(emulator: Emulator, path: str) -> tuple[int, dict[str, Any]] | None:
    """Answer a GET inspection path, or None when the path is not one."""
    if path == "/cohorts":
        return 200, {"cohorts": emulator.cohorts()}
    if path.startswith("/cohorts/"):
        cohort_id = unquote(path[len("/cohorts/") :])
        cohort = emulator.cohort(cohort_id)
        if cohort is not None:
            return 200, cohort
        return 404, {"status": "fail", "error": {"message": f"unknown cohort {cohort_id!r}"}}
    if path == "/stats":
        return 200, emulator.stats()
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the client reuses connections
    # Headers and body go out as two writes; with Nagle on, each answer stalls ~40 ms.
    disable_nagle_algorithm = True
    server_version = "MoEngageEmulator/1.0"
    timeout = 30  # an idle or stalled connection must not pin a thread forever

    @property
    def emulator(self) -> Emulator:
        return cast(_Server, self.server).emulator

    def setup(self) -> None:
        super().setup()
        cast(_Server, self.server).track(self.connection, True)

    def finish(self) -> None:
        cast(_Server, self.server).track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: the demo's output is the client's, and the request log is in memory.
        pass

    # -- I/O helpers -----------------------------------------------------------------------

    def _send_json(
        self, status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode("utf-8") if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _drop(self) -> None:
        # shutdown, not just close: the client must see the connection end, with no answer.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _read_body(self) -> tuple[bytes | None, int] | None:
        """Read the body: (bytes, size), (None, size) when too large, None on bad framing."""
        if "Transfer-Encoding" in self.headers:
            self._send_json(
                411,
                {"status": "fail", "error": {"message": "send a Content-Length, not chunked"}},
                {"Connection": "close"},
            )
            return None
        text = self.headers.get("Content-Length", "0").strip()
        if not text.isdigit():
            self._send_json(
                400,
                {"status": "fail", "error": {"message": "Content-Length is not a number"}},
                {"Connection": "close"},
            )
            return None
        size = int(text)
        limit = self.emulator.config.max_body_bytes
        if size <= limit:
            body = self.rfile.read(size)
            if len(body) < size:
                self.close_connection = True  # the client hung up mid-body
                return None
            return body, size
        if size > limit * _DRAIN_FACTOR:
            # Answer 413 and close rather than read megabytes we would throw away.
            self.close_connection = True
            return None, size
        left = size
        while left > 0:
            chunk = self.rfile.read(min(left, _CHUNK))
            if not chunk:
                self.close_connection = True
                return None
            left -= len(chunk)
        return None, size

    def _route_error(self, path: str) -> None:
        allowed = _allowed(path)
        if allowed is None:
            self._send_json(404, {"status": "fail", "error": {"message": f"no route {path}"}})
        else:
            self._send_json(
                405,
                {"status": "fail", "error": {"message": f"{self.command} not allowed on {path}"}},
                {"Allow": allowed},
            )

    # -- methods ---------------------------------------------------------------------------

    def do_POST(self) -> None:
        """Handle the Cohort Sync endpoint; anything else is 404/405."""
        at = time.monotonic()
        path = urlsplit(self.path).path
        read = self._read_body()
        if read is None:
            return
        body, size = read
        emulator = self.emulator
        if path != ENDPOINT:
            self._route_error(path)
            emulator.record(at, size, Reply(404 if _allowed(path) is None else 405))
            return
        reply = emulator.answer(self.headers, body, size, at)
        emulator.record(at, size, reply)
        if reply.delay > 0:
            time.sleep(reply.delay)
        if reply.status == 0:
            self._drop()
            return
        headers = dict(reply.headers)
        if self.close_connection:
            headers["Connection"] = "close"
        self._send_json(reply.status, reply.body, headers)

    def do_GET(self) -> None:
        """Serve the inspection endpoints."""
        # A GET body is meaningless, but left unread it would corrupt the next keep-alive request.
        if self._read_body() is None:
            return
        path = urlsplit(self.path).path
        answer = _inspect(self.emulator, path)
        if answer is None:
            self._route_error(path)
            return
        self._send_json(*answer)

    def _other(self) -> None:
        path = urlsplit(self.path).path
        read = self._read_body()
        if read is None:
            return
        self._route_error(path)

    do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _other


def serve_forever(config: EmulatorConfig, host: str, port: int) -> None:
    """Serve in the foreground until Ctrl-C or SIGTERM; prints the URL, never the key."""
    emulator = Emulator(config, host, port)
    server = emulator._bind()

    def _on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_term)
    print(f"MoEngage emulator listening on {emulator.url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

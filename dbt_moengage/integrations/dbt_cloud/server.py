"""Serving the receiver: uvicorn runs the ASGI app in one thread, the sync worker in another.

The listening socket is opened first (so `url` is known, and a port in use fails at once),
then the state in the warehouse (ledger.py: the runs accepted), then the worker, which
resumes the runs an earlier start accepted and did not finish, then uvicorn. Stopping
refuses new events (503), lets uvicorn finish the requests in flight, and lets the worker
finish the sync in progress; the runs still queued stay queued in the warehouse, and the
next start syncs them.

Connections: a client must send each request's head within `header_timeout` seconds (of
connecting, or of its previous answer), and its body within BODY_SECONDS (receiver.py),
else it is closed; so sockets left open without a request cannot pile up. uvicorn counts
every open connection against its limit (503 past it), so the limit is set well above what
a few idle sockets can fill within a header timeout.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

import h11
import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

from .config import WebhookConfig
from .ledger import RunLedger
from .receiver import Decision, create_app, decide, signature_ok
from .worker import RunOutcome, SyncWorker

log = logging.getLogger(__name__)

# How long uvicorn may take to start, and to finish the requests in flight when stopping.
STARTUP_SECONDS = 30.0
SHUTDOWN_SECONDS = 5
# How often the main thread wakes while it serves, to run a signal's handler.
WAKE_SECONDS = 0.5
# Connections open at once (idle ones included); beyond it uvicorn answers 503. dbt Cloud
# sends a few a minute: the limit only bounds what a flood can hold, each connection for a
# header timeout at most.
MAX_CONNECTIONS = 1000


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection that has not sent a whole request head
    within `header_timeout` seconds of opening, or of its previous answer. uvicorn's own
    keep-alive timeout ends as soon as a byte arrives, so a half-sent head would hold the
    connection (and a place under the connection limit) forever."""

    header_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            # A whole head came in: the body has its own timeout (receiver.py).
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._header_late)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_late(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.debug("closed a connection that sent no request head in %g s", self.header_timeout)
            self.transport.close()


class WebhookReceiver:
    """The webhook server and its sync worker; `start()`, `stop()`, `url`, `wait_idle()`."""

    def __init__(
        self,
        config: WebhookConfig,
        host: str = "127.0.0.1",
        port: int = 0,
        ledger: RunLedger | None = None,
    ) -> None:
        self.config = config
        self.worker = SyncWorker(config, ledger)
        self._host = host
        self._port = port
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        # Set when uvicorn's thread ends. Waited on instead of Thread.join(): Python 3.11's
        # join, interrupted by the KeyboardInterrupt a signal raises in it, takes the thread
        # for stopped while it runs, so every later join returns at once (and stop() would
        # close the socket under uvicorn: a ValueError and CancelledError traceback).
        self._served = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------

    def bind(self) -> socket.socket:
        """Open the listening socket (idempotent); OSError when the address is taken."""
        if self._socket is None:
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            self._socket = socket.create_server((self._host, self._port), family=family)
        return self._socket

    def start(self) -> WebhookReceiver:
        """Open the state, resume the runs accepted before, then serve and sync in daemon
        threads; return self once the app has started. ConfigError or WarehouseError when
        the warehouse cannot keep the runs (nothing is served then)."""
        sock = self.bind()
        if self._thread is None:
            try:
                self.worker.ledger.open()
                resumed = self.worker.resume()
            except BaseException:
                self.stop(timeout=0)
                raise
            if resumed:
                ids = ", ".join(run.run_id for run in resumed)
                log.info("resuming %d dbt Cloud run(s) accepted before: %s", len(resumed), ids)
        self.worker.start()
        if self._thread is None:
            self._ready.clear()
            self._served.clear()
            server = self._server = uvicorn.Server(self._uvicorn_config())
            self._thread = threading.Thread(
                target=self._serve, args=(server, sock), name="dbt-cloud-webhook", daemon=True
            )
            self._thread.start()
            # Set by the app's lifespan, or when uvicorn ends without starting.
            started = self._ready.wait(STARTUP_SECONDS) and self._thread.is_alive()
            if not started:
                self.stop(timeout=0)
                raise RuntimeError("the webhook server did not start: see the log above")
        return self

    def serve_forever(self, stopping: threading.Event | None = None) -> None:
        """Serve until `stop()`, `stopping` is set (`dbt-moengage serve-webhook` sets it on
        SIGINT or SIGTERM), or Ctrl-C."""
        self.start()
        try:
            # Woken every WAKE_SECONDS to look at `stopping`. A signal's handler only sets
            # it: an exception raised into this thread at any bytecode could leave a lock
            # taken (a `with` whose __enter__ had returned); and a signal the kernel hands to
            # another thread runs its handler only once this thread runs again.
            while self._thread is not None and not self._served.wait(WAKE_SECONDS):
                if stopping is not None and stopping.is_set():
                    break
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self, timeout: float | None = 600.0) -> None:
        """Stop accepting events and finish the sync in progress; queued runs stay queued in
        the warehouse for the next start."""
        self.worker.stopping.set()
        server, thread, sock = self._server, self._thread, self._socket
        self._server, self._thread, self._socket = None, None, None
        if server is not None:
            server.should_exit = True
        if thread is not None and thread is not threading.current_thread():
            self._served.wait(SHUTDOWN_SECONDS + 5)
        if sock is not None:
            sock.close()
        self.worker.stop(timeout)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL of the receiver, e.g. http://127.0.0.1:8080."""
        if self._socket is None:
            raise RuntimeError("the receiver is not running: call start() first")
        host, port = self._socket.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    def _uvicorn_config(self) -> uvicorn.Config:
        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            self._ready.set()
            yield

        protocol = type(
            "ReceiverProtocol",
            (HeaderDeadlineProtocol,),
            {"header_timeout": self.config.header_timeout},
        )
        return uvicorn.Config(
            create_app(self.config, self.worker, lifespan),
            http=protocol,
            loop="asyncio",
            lifespan="on",
            # The process's logging applies: uvicorn adds no handler of its own.
            log_config=None,
            # The app logs the path of each delivery; the access log would add its query.
            access_log=False,
            server_header=False,
            limit_concurrency=MAX_CONNECTIONS,
            timeout_graceful_shutdown=SHUTDOWN_SECONDS,
        )

    def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # uvicorn ends a failed startup with SystemExit
            log.error("the webhook server stopped: %s", type(exc).__name__)
        finally:
            self._ready.set()
            self._served.set()

    # -- events ----------------------------------------------------------------------------

    @property
    def last_reports(self) -> collections.deque[RunOutcome]:
        """How the latest syncs went, oldest first (at most 50)."""
        return self.worker.last_reports

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every accepted run has been synced; False on timeout."""
        return self.worker.wait_idle(timeout)

    def decide(self, body: bytes, signature: str) -> Decision:
        """Verify, parse and queue (or ignore) one event, as a POST would."""
        return decide(self.config, self.worker, body, signature)

    def handle_event(self, body: bytes, signature: str) -> int:
        """Verify and act on one webhook POST; return the HTTP status to answer."""
        return self.decide(body, signature).status

    def signature_ok(self, body: bytes, signature: str) -> bool:
        """Whether `signature` is the hex HMAC-SHA256 of `body` with the webhook secret."""
        return signature_ok(self.config.secret, body, signature)

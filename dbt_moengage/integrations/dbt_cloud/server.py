"""Serving the receiver: uvicorn runs the ASGI app in one thread, the sync worker in another.

The listening socket is opened first (so `url` is known, and a port in use fails at once),
then handed to uvicorn. Stopping refuses new events (503), lets uvicorn finish the requests in
flight, and lets the worker finish the sync in progress; queued runs are dropped, and dbt
Cloud's redelivery brings them back.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import socket
import threading
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette

from .config import WebhookConfig
from .receiver import Decision, create_app, decide, signature_ok
from .worker import RunOutcome, SyncWorker

log = logging.getLogger(__name__)

# How long uvicorn may take to start, and to finish the requests in flight when stopping.
STARTUP_SECONDS = 30.0
SHUTDOWN_SECONDS = 5
# Connections served at once; beyond it uvicorn answers 503 (dbt Cloud sends a few a minute).
MAX_CONNECTIONS = 64


class WebhookReceiver:
    """The webhook server and its sync worker; `start()`, `stop()`, `url`, `wait_idle()`."""

    def __init__(self, config: WebhookConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.worker = SyncWorker(config)
        self._host = host
        self._port = port
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------

    def bind(self) -> socket.socket:
        """Open the listening socket (idempotent); OSError when the address is taken."""
        if self._socket is None:
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            self._socket = socket.create_server((self._host, self._port), family=family)
        return self._socket

    def start(self) -> WebhookReceiver:
        """Serve and sync in daemon threads; return self once the app has started."""
        sock = self.bind()
        self.worker.start()
        if self._thread is None:
            self._ready.clear()
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

    def serve_forever(self) -> None:
        """Serve until `stop()`, Ctrl-C or a KeyboardInterrupt from a signal handler."""
        self.start()
        thread = self._thread
        try:
            if thread is not None:
                # Interruptible: SIGINT (or SIGTERM made KeyboardInterrupt) lands here.
                thread.join()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self, timeout: float | None = 600.0) -> None:
        """Stop accepting events, finish the sync in progress, drop the queued ones."""
        self.worker.stopping.set()
        server, thread, sock = self._server, self._thread, self._socket
        self._server, self._thread, self._socket = None, None, None
        if server is not None:
            server.should_exit = True
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=SHUTDOWN_SECONDS + 5)
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

        return uvicorn.Config(
            create_app(self.config, self.worker, lifespan),
            http="h11",
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

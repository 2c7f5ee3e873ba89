"""A wall-clock deadline for one HTTP request, which requests' timeouts cannot give.

requests' read timeout bounds each socket read, so a server that trickles a byte every
few seconds holds a request (and the run) forever. Under `within(seconds)`, a watchdog
shuts the request's socket down when the deadline passes: the blocked read fails at
once, and the caller learns from `Deadline.expired` that the deadline, not the server,
ended it. The connection classes below note which socket the sending thread uses (the
socket, not the connection: http.client hands a closing connection's socket over to the
response); `DeadlineAdapter` makes a session's pools use them, its proxies' pools too.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool

_sending = threading.local()


class Deadline:
    """One request's deadline: the connection it uses, and whether time ran out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self.expired = False
        # The request ended (answered or failed): the deadline no longer applies.
        self.done = False

    def finish(self) -> None:
        """The request is over: expiring now would shut nothing that matters."""
        with self._lock:
            self.done = True
            self._socket = None

    def watch(self, sock: socket.socket | None) -> None:
        """The request now uses this socket (shut at once if time already ran out)."""
        if sock is None:
            return
        with self._lock:
            self._socket = sock
            expired = self.expired
        if expired:
            _shut(sock)

    def expire(self) -> None:
        """Time is up: shut the socket, so a read blocked on it fails now."""
        with self._lock:
            if self.done:
                return
            self.expired = True
            sock = self._socket
        if sock is not None:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One thread that expires deadlines as their time comes, for every request.

    A timer thread per request costs a thread start (and the wait for it to run) on
    every request; one sleeper over a heap of due times costs a heap push and a notify.
    Its thread starts with the first deadline and lives as long as the process; a forked
    child (an orchestrator's task process, say) starts its own.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._changed = threading.Condition()
        self._due: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline, seconds: float) -> None:
        """Expire `deadline` in `seconds`, unless it is done first."""
        with self._changed:
            heapq.heappush(self._due, (time.monotonic() + seconds, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="moengage-deadlines", daemon=True
                )
                self._thread.start()
            elif self._due[0][2] is deadline:
                self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while self._due and self._due[0][2].done:
                    heapq.heappop(self._due)
                if not self._due:
                    self._changed.wait()
                    continue
                wait = self._due[0][0] - time.monotonic()
                if wait > 0:
                    self._changed.wait(wait)
                    continue
                _, _, deadline = heapq.heappop(self._due)
            deadline.expire()


_watchdog = _Watchdog()


@contextlib.contextmanager
def within(seconds: float) -> Iterator[Deadline]:
    """Run the request made in this block under a wall-clock deadline."""
    deadline = Deadline()
    _sending.deadline = deadline
    _watchdog.watch(deadline, seconds)
    try:
        yield deadline
    finally:
        deadline.finish()
        _sending.deadline = None


def _note(sock: socket.socket | None) -> None:
    deadline = getattr(_sending, "deadline", None)
    if deadline is not None:
        deadline.watch(sock)


class _Watched(HTTPConnection):
    """Tells the sending thread's deadline which socket the request uses, from the moment
    it exists: a proxy's slow answer to CONNECT and a slow TLS handshake count too."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _note(sock)
        return sock

    def connect(self) -> None:
        super().connect()
        _note(self.sock)  # a TLS connection reads through a new socket object

    def request(self, *args: Any, **kwargs: Any) -> None:
        _note(self.sock)  # a connection kept alive from an earlier request
        super().request(*args, **kwargs)


@functools.cache
def _watched(pool: type[HTTPConnectionPool]) -> type[HTTPConnectionPool]:
    """`pool`, building watched connections of the class it builds (plain, TLS, SOCKS)."""
    connection = pool.ConnectionCls
    if not issubclass(connection, _Watched):
        connection = type(f"Watched{connection.__name__}", (_Watched, connection), {})
    return type(f"Watched{pool.__name__}", (pool,), {"ConnectionCls": connection})


def _watch_pools(manager: PoolManager) -> PoolManager:
    manager.pool_classes_by_scheme = {
        scheme: _watched(pool) for scheme, pool in manager.pool_classes_by_scheme.items()
    }
    return manager


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter, with connections a `within` block can shut at its deadline,
    whether they go straight to the host or through a proxy (HTTPS_PROXY, HTTP_PROXY)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """The usual pool manager, building pools of watched connections."""
        super().init_poolmanager(*args, **kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> PoolManager:
        """The usual manager for `proxy`, building pools of watched connections."""
        return _watch_pools(super().proxy_manager_for(proxy, **proxy_kwargs))

"""A raw HTTP server for time-limit tests: on 127.0.0.1 in a thread, it reads each request in
full (head, then a Content-Length body), keeps it, then writes the same answer to every
connection, at once or a byte every `gap` seconds (a server, or a proxy, that trickles)."""

from __future__ import annotations

import contextlib
import socket
import threading

SUCCESS = b'{"status": "success", "message": "accepted"}'


def answer(status: str, body: bytes = SUCCESS) -> bytes:
    """A whole HTTP/1.1 answer that closes its connection."""
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class RawServer:
    """Answers every request with `reply`, trickled a byte every `gap` seconds when gap > 0."""

    def __init__(self, reply: bytes, gap: float = 0.0) -> None:
        self.reply, self.gap = reply, gap
        self.requests: list[bytes] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def received(self) -> list[bytes]:
        """Every request read so far, head and body."""
        with self._lock:
            return list(self.requests)

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        # Wakes the thread blocked in accept(), which closing alone does not on Linux.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
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
                if self.gap <= 0:
                    conn.sendall(self.reply)
                    return
                for byte in self.reply:
                    if self._closed.wait(self.gap):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return


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

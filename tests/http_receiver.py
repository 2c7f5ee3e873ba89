"""A webhook receiver for tests: an HTTP server on 127.0.0.1 in a thread, answering each
POST with what `answer(path, body)` returns. The notification tests (unit and e2e) build
their receivers on it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (path, the posted JSON) -> (status, the answer's body). Called one post at a time.
Answer = Callable[[str, Any], tuple[int, bytes]]


@dataclass
class Arrived:
    """A POST as it arrived: its headers (names in lower case) and its body's bytes."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@contextmanager
def serving(answer: Answer, arrived: list[Arrived] | None = None) -> Iterator[int]:
    """Serve POSTs on a free port of 127.0.0.1 until the block ends; yields the port.
    Each POST is appended to `arrived` as it came, when given."""
    one_at_a_time = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            body = json.loads(raw)
            with one_at_a_time:
                if arrived is not None:
                    headers = {name.lower(): value for name, value in self.headers.items()}
                    arrived.append(Arrived(self.command, self.path, headers, raw))
                status, text = answer(self.path, body)
            self.send_response(status)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

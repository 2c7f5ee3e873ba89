"""A local stand-in for MoEngage's Cohort Sync API, strict about the contract, with faults.

The demo and the end-to-end tests point the client at it over 127.0.0.1. It applies the
contract in the order MoEngage is assumed to: rate limit, auth, content type, size, body;
then injects the configured faults around applying the request. Standard library only.

Like MoEngage, it can know a set of users (`known_users`): an add of a uid it does not
know is accepted (200) and silently dropped; the user joins only if sent again once
known. Left unset, every uid is taken as a known user. A request's name and description
become the cohort's, so a rename is seen as MoEngage would show it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import itertools
import json
import math
import random
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, cast
from urllib.parse import unquote, urlsplit

ENDPOINT = "/v1/integrations/cohortsync"
ACTIONS = frozenset({"add_members", "remove_members"})
FORBIDDEN_NAME_CHARS = '|*?\\:<>=$"'
WINDOW_SECONDS = 60.0
SUCCESS_BODY: dict[str, Any] = {
    "status": "success",
    "message": "Your request has been accepted and will be processed soon.",
}
# A body this many times over the limit is discarded unread: the connection is closed
# instead, since draining it would cost more than a reconnect.
_DRAIN_FACTOR = 8
_CHUNK = 65536


@dataclass
class Faults:
    """Faults to inject; rates are probabilities per request, drawn from a seeded RNG."""

    error_before_rate: float = 0.0  # answer 503 WITHOUT applying the request
    error_after_rate: float = 0.0  # apply the request, THEN answer 500 (client sees failure)
    drop_before_rate: float = 0.0  # close the connection without answer, not applied
    drop_after_rate: float = 0.0  # apply, then close the connection without answering
    slow_rate: float = 0.0  # sleep slow_seconds before answering (after applying)
    slow_seconds: float = 0.0
    storm_429: int = 0  # answer 429 to the next N requests (not applied)
    retry_after: bool = True  # include a Retry-After header on 429s
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (
            "error_before_rate",
            "error_after_rate",
            "drop_before_rate",
            "drop_after_rate",
            "slow_rate",
        ):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"Faults.{name} must be between 0 and 1, got {rate!r}")
        if self.slow_seconds < 0:
            raise ValueError(f"Faults.slow_seconds must be >= 0, got {self.slow_seconds!r}")
        if self.storm_429 < 0:
            raise ValueError(f"Faults.storm_429 must be >= 0, got {self.storm_429!r}")


@dataclass
class EmulatorConfig:
    """The workspace the emulator accepts, its limits and the faults to inject."""

    workspace_id: str
    api_key: str = field(repr=False)  # kept out of repr so a logged config leaks nothing
    rate_limit_per_min: int | None = 300  # None = unlimited
    max_body_bytes: int = 131072  # 128 KB; 413 above it
    faults: Faults = field(default_factory=Faults)
    # The quota's window; tests shorten it to show a quota tighter than the client was told.
    window_seconds: float = WINDOW_SECONDS
    # The users MoEngage knows; None: every uid is a known user.
    known_users: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not self.workspace_id:
            raise ValueError("EmulatorConfig.workspace_id must not be empty")
        if not self.api_key:
            raise ValueError("EmulatorConfig.api_key must not be empty")
        if self.rate_limit_per_min is not None and self.rate_limit_per_min < 1:
            raise ValueError(
                f"EmulatorConfig.rate_limit_per_min must be >= 1 or None, "
                f"got {self.rate_limit_per_min!r}"
            )
        if self.max_body_bytes < 1:
            raise ValueError(
                f"EmulatorConfig.max_body_bytes must be >= 1, got {self.max_body_bytes!r}"
            )


@dataclass
class RequestRecord:
    """One request the emulator answered (or dropped), as seen by the server."""

    at: float  # time.monotonic() when the request arrived
    status: int  # status answered (0 for a dropped connection)
    action: str | None
    cohort_id: str | None
    body_bytes: int
    members: int
    applied: bool


@dataclass
class _Cohort:
    name: str
    description: str | None
    members: set[str] = field(default_factory=set)
    delivered: int = 0
    # Adds of uids no known user has: accepted, then dropped, as MoEngage does.
    unmatched: int = 0


@dataclass
class _SyncRequest:
    action: str
    cohort_id: str
    cohort_name: str
    cohort_description: str | None
    uids: list[str]


@dataclass
class _Reply:
    status: int  # 0 = close the connection without answering
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    action: str | None = None
    cohort_id: str | None = None
    members: int = 0
    applied: bool = False


class _BadRequest(Exception):
    """The body breaks the contract; the message names the field."""


def _error_body(message: str, kind: str, request_id: str) -> dict[str, Any]:
    return {
        "status": "fail",
        "error": {"message": message, "type": kind, "request_id": request_id},
    }


def _short(value: object) -> str:
    # Bad values are echoed to help debugging, but bounded so a huge one cannot bloat replies.
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _BadRequest(f"duplicate key {key!r} in a JSON object")
        obj[key] = value
    return obj


def _reject_constant(name: str) -> Any:
    raise _BadRequest(f"{name} is not valid JSON")


def _load_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadRequest(f"body is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(
            text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise _BadRequest(f"body is not valid JSON: {exc.msg} at position {exc.pos}") from None


def _require_string(obj: dict[str, Any], key: str, where: str) -> str:
    if key not in obj:
        raise _BadRequest(f"{where}{key} is missing")
    value = obj[key]
    if not isinstance(value, str) or not value:
        raise _BadRequest(f"{where}{key} must be a non-empty string, got {_short(value)}")
    return value


def _validate(doc: Any) -> _SyncRequest:
    """Check a decoded body against the contract; raise _BadRequest naming the field."""
    if not isinstance(doc, dict):
        raise _BadRequest(f"body must be a JSON object, got {type(doc).__name__}")
    extra = sorted(set(doc) - {"action", "partner", "parameters"})
    if extra:
        raise _BadRequest(f"unknown top-level key(s): {', '.join(extra)}")
    action = _require_string(doc, "action", "")
    if action not in ACTIONS:
        raise _BadRequest(
            f"action must be one of {', '.join(sorted(ACTIONS))}, got {_short(action)}"
        )
    _require_string(doc, "partner", "")
    if "parameters" not in doc:
        raise _BadRequest("parameters is missing")
    params = doc["parameters"]
    if not isinstance(params, dict):
        raise _BadRequest(f"parameters must be an object, got {_short(params)}")
    allowed = {"cohort_name", "cohort_id", "cohort_description", "members"}
    extra = sorted(set(params) - allowed)
    if extra:
        raise _BadRequest(f"unknown key(s) in parameters: {', '.join(extra)}")

    name = _require_string(params, "cohort_name", "parameters.")
    # MoEngage's pages disagree on a leading '.' (an example sends one, a field description
    # forbids it): both forms are accepted.
    if not name.strip().removeprefix(".").strip():
        raise _BadRequest(f"parameters.cohort_name must name the cohort, got {_short(name)}")
    bad = sorted({c for c in name if c in FORBIDDEN_NAME_CHARS})
    if bad:
        raise _BadRequest(
            f"parameters.cohort_name must not contain {' '.join(bad)}, got {_short(name)}"
        )
    cohort_id = _require_string(params, "cohort_id", "parameters.")
    description = params.get("cohort_description")
    if "cohort_description" in params and not isinstance(description, str):
        raise _BadRequest(
            f"parameters.cohort_description must be a string, got {_short(description)}"
        )

    if "members" not in params:
        raise _BadRequest("parameters.members is missing")
    members = params["members"]
    if not isinstance(members, list) or not members:
        raise _BadRequest("parameters.members must be a non-empty list of {'uid': <string>}")
    uids: list[str] = []
    for i, member in enumerate(members):
        if not isinstance(member, dict) or set(member) != {"uid"}:
            raise _BadRequest(
                f"parameters.members[{i}] must be exactly {{'uid': <string>}}, got {_short(member)}"
            )
        uid = member["uid"]
        if not isinstance(uid, str) or not uid:
            raise _BadRequest(
                f"parameters.members[{i}].uid must be a non-empty string, got {_short(uid)}"
            )
        uids.append(uid)
    return _SyncRequest(action, cohort_id, name, description, uids)


def _decode_basic(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # requests encodes str credentials as latin-1; accept that too.
        text = raw.decode("latin-1")
    user, sep, password = text.partition(":")
    return (user, password) if sep else None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _is_json_type(header: str | None) -> bool:
    if not header:
        return False
    media, *params = (part.strip().lower() for part in header.split(";"))
    if media != "application/json":
        return False
    return all(p.replace(" ", "") in ("", "charset=utf-8", 'charset="utf-8"') for p in params)


class Emulator:
    """MoEngage's Cohort Sync API on a local port, with inspectable state and faults."""

    def __init__(self, config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._faults = config.faults
        self._rng = random.Random(config.faults.seed)
        self._storm_left = config.faults.storm_429
        self._cohorts: dict[str, _Cohort] = {}
        self._log: list[RequestRecord] = []
        self._windows: dict[str, deque[float]] = {}
        self._ids = itertools.count(1)
        self._known = None if config.known_users is None else set(config.known_users)

    # -- lifecycle -------------------------------------------------------------------------

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

    # -- inspection ------------------------------------------------------------------------

    def members(self, cohort_id: str) -> set[str]:
        """Current members of a cohort (empty set if unknown)."""
        with self._lock:
            cohort = self._cohorts.get(cohort_id)
            return set(cohort.members) if cohort else set()

    def cohorts(self) -> dict[str, dict[str, Any]]:
        """Every cohort: id -> cohort_name, cohort_description and member count."""
        with self._lock:
            return {
                cid: {
                    "cohort_name": c.name,
                    "cohort_description": c.description,
                    "members": len(c.members),
                    "unmatched": c.unmatched,
                }
                for cid, c in self._cohorts.items()
            }

    def requests(self) -> list[RequestRecord]:
        """A copy of the request log."""
        with self._lock:
            return list(self._log)

    def delivered(self, cohort_id: str) -> int:
        """Total uid deliveries applied by add requests, duplicates counted."""
        with self._lock:
            cohort = self._cohorts.get(cohort_id)
            return cohort.delivered if cohort else 0

    def stats(self) -> dict[str, Any]:
        """Request counts by status and total uid deliveries."""
        with self._lock:
            by_status: dict[str, int] = {}
            for record in self._log:
                key = str(record.status)
                by_status[key] = by_status.get(key, 0) + 1
            return {
                "requests": len(self._log),
                "by_status": dict(sorted(by_status.items())),
                "applied": sum(1 for r in self._log if r.applied),
                "deliveries": sum(c.delivered for c in self._cohorts.values()),
                "cohorts": len(self._cohorts),
            }

    # -- control ---------------------------------------------------------------------------

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults at runtime; reseeds the RNG and re-arms the 429 storm."""
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)
            self._storm_left = faults.storm_429

    def add_users(self, uids: Iterable[str]) -> None:
        """Users whose profiles now exist in MoEngage: later adds of them are matched."""
        with self._lock:
            if self._known is not None:
                self._known.update(uids)

    def known_users(self) -> set[str] | None:
        """The users the emulator knows (None: every uid)."""
        with self._lock:
            return None if self._known is None else set(self._known)

    def reset(self) -> None:
        """Forget cohorts, the request log and the rate-limit windows."""
        with self._lock:
            self._cohorts.clear()
            self._log.clear()
            self._windows.clear()

    # -- the endpoint ----------------------------------------------------------------------

    def _record(self, at: float, body_bytes: int, reply: _Reply) -> None:
        with self._lock:
            self._log.append(
                RequestRecord(
                    at=at,
                    status=reply.status,
                    action=reply.action,
                    cohort_id=reply.cohort_id,
                    body_bytes=body_bytes,
                    members=reply.members,
                    applied=reply.applied,
                )
            )

    def _fail(self, status: int, message: str, kind: str, **headers: str) -> _Reply:
        body = _error_body(message, kind, f"emu-{next(self._ids):06d}")
        return _Reply(status, body, dict(headers))

    def _admit(self, workspace: str, now: float) -> _Reply | None:
        """Storm and rate limit; requests answered 429 here do not enter the window."""
        limit = self.config.rate_limit_per_min
        with self._lock:
            retry_after = self._faults.retry_after
            if self._storm_left > 0:
                self._storm_left -= 1
                wait: int | None = 1
            else:
                wait = None
                window = self._windows.setdefault(workspace, deque())
                while window and window[0] <= now - self.config.window_seconds:
                    window.popleft()
                if limit is not None and len(window) >= limit:
                    wait = max(1, math.ceil(window[0] + self.config.window_seconds - now))
                else:
                    window.append(now)
        if wait is None:
            return None
        headers = {"Retry-After": str(wait)} if retry_after else {}
        return self._fail(429, "Rate limit exceeded", "TooManyRequests", **headers)

    def _authorize(self, headers: Message) -> _Reply | None:
        # Fixed messages only: nothing from the Authorization header is ever echoed.
        creds = _decode_basic(headers.get("Authorization"))
        if creds is None:
            return self._fail(
                401,
                "Authentication required: HTTP Basic with the workspace id and Data API key",
                "Unauthorized",
                **{"WWW-Authenticate": 'Basic realm="MoEngage"'},
            )
        user, password = creds
        if not (_same(user, self.config.workspace_id) and _same(password, self.config.api_key)):
            return self._fail(
                401,
                "Invalid credentials: workspace id or Data API key is wrong",
                "Unauthorized",
                **{"WWW-Authenticate": 'Basic realm="MoEngage"'},
            )
        appkey = headers.get("MOE-APPKEY")
        if appkey is None or not _same(appkey, self.config.workspace_id):
            return self._fail(
                403,
                "MOE-APPKEY header must be present and equal the workspace id",
                "Forbidden",
            )
        return None

    def _apply(self, req: _SyncRequest) -> None:
        with self._lock:
            cohort = self._cohorts.get(req.cohort_id)
            if cohort is None:
                # The contract creates the cohort on first use, whatever the action.
                cohort = self._cohorts[req.cohort_id] = _Cohort(
                    req.cohort_name, req.cohort_description
                )
            cohort.name = req.cohort_name
            if req.cohort_description is not None:
                cohort.description = req.cohort_description
            if req.action == "add_members":
                matched = (
                    req.uids
                    if self._known is None
                    else [uid for uid in req.uids if uid in self._known]
                )
                cohort.members.update(matched)
                cohort.delivered += len(req.uids)
                cohort.unmatched += len(req.uids) - len(matched)
            else:
                cohort.members.difference_update(req.uids)

    def _draw(self, rate: float) -> bool:
        # Caller holds the lock; a draw per fault per request keeps runs reproducible by seed.
        return self._rng.random() < rate

    def _sync(self, headers: Message, body: bytes | None, size: int, now: float) -> _Reply:
        """Decide the answer to one POST to the endpoint, applying it when due."""
        workspace = headers.get("MOE-APPKEY")
        if workspace is None:
            creds = _decode_basic(headers.get("Authorization"))
            workspace = creds[0] if creds else ""
        reply = self._admit(workspace, now)
        if reply is None:
            reply = self._authorize(headers)
        if reply is None and not _is_json_type(headers.get("Content-Type")):
            reply = self._fail(415, "Content-Type must be application/json", "UnsupportedMediaType")
        if reply is None and (body is None or size > self.config.max_body_bytes):
            reply = self._fail(
                413,
                f"Payload of {size} bytes exceeds the limit of {self.config.max_body_bytes}",
                "PayloadTooLarge",
            )
        if reply is not None:
            return reply

        assert body is not None
        doc: Any = None
        try:
            doc = _load_json(body)
            req = _validate(doc)
        except _BadRequest as exc:
            reply = self._fail(400, str(exc), "BadRequest")
            if isinstance(doc, dict):
                action = doc.get("action")
                params = doc.get("parameters")
                cid = params.get("cohort_id") if isinstance(params, dict) else None
                reply.action = action if isinstance(action, str) else None
                reply.cohort_id = cid if isinstance(cid, str) else None
            return reply

        with self._lock:
            faults = self._faults
            error_before = self._draw(faults.error_before_rate)
            drop_before = self._draw(faults.drop_before_rate)
        if error_before:
            reply = self._fail(503, "Service temporarily unavailable", "ServiceUnavailable")
        elif drop_before:
            reply = _Reply(0)
        else:
            self._apply(req)
            with self._lock:
                error_after = self._draw(faults.error_after_rate)
                drop_after = self._draw(faults.drop_after_rate)
                slow = self._draw(faults.slow_rate)
            if drop_after:
                reply = _Reply(0)
            elif error_after:
                reply = self._fail(500, "Internal server error", "InternalServerError")
            else:
                reply = _Reply(200, dict(SUCCESS_BODY))
            reply.applied = True
            reply.delay = faults.slow_seconds if slow else 0.0
        reply.action = req.action
        reply.cohort_id = req.cohort_id
        reply.members = len(req.uids)
        return reply

    def _inspect(self, path: str) -> tuple[int, dict[str, Any]] | None:
        """Answer a GET inspection path, or None when the path is not one."""
        if path == "/cohorts":
            cohorts = self.cohorts()
            return 200, {"cohorts": cohorts}
        if path.startswith("/cohorts/"):
            cohort_id = unquote(path[len("/cohorts/") :])
            with self._lock:
                cohort = self._cohorts.get(cohort_id)
                if cohort is not None:
                    return 200, {
                        "cohort_id": cohort_id,
                        "cohort_name": cohort.name,
                        "cohort_description": cohort.description,
                        "members": sorted(cohort.members),
                        "unmatched": cohort.unmatched,
                    }
            return 404, {"status": "fail", "error": {"message": f"unknown cohort {cohort_id!r}"}}
        if path == "/stats":
            return 200, self.stats()
        return None


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

    def _route_error(self, path: str, allowed: str | None) -> None:
        if allowed is None:
            self._send_json(404, {"status": "fail", "error": {"message": f"no route {path}"}})
        else:
            self._send_json(
                405,
                {"status": "fail", "error": {"message": f"{self.command} not allowed on {path}"}},
                {"Allow": allowed},
            )

    def _allowed(self, path: str) -> str | None:
        if path == ENDPOINT:
            return "POST"
        if path in ("/cohorts", "/stats") or path.startswith("/cohorts/"):
            return "GET"
        return None

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
            self._route_error(path, self._allowed(path))
            emulator._record(at, size, _Reply(404 if self._allowed(path) is None else 405))
            return
        reply = emulator._sync(self.headers, body, size, at)
        emulator._record(at, size, reply)
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
        answer = self.emulator._inspect(path)
        if answer is None:
            self._route_error(path, self._allowed(path))
            return
        self._send_json(*answer)

    def _other(self) -> None:
        path = urlsplit(self.path).path
        read = self._read_body()
        if read is None:
            return
        self._route_error(path, self._allowed(path))

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

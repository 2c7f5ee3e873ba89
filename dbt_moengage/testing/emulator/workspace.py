"""The MoEngage workspace the emulator stands in for: cohorts and their members, the users
it knows, the quota, the request log, and the answer to each request.

A request is judged in the order MoEngage is assumed to use: rate limit, auth, content
type, size, body (see `contract.py`); then the faults in force are drawn around applying
it. Like MoEngage, the workspace can know a set of users (`known_users`): an add of a uid
it does not know is accepted (200) and silently dropped; the user joins only if sent
again once known. Left unset, every uid is taken as a known user. A request's name and
description become the cohort's, so a rename is seen as MoEngage would show it.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from .config import EmulatorConfig
from .contract import (
    SUCCESS_BODY,
    BadRequest,
    SyncRequest,
    decode_basic,
    error_body,
    is_json_type,
    load_json,
    same_secret,
    validate,
)
from .faults import FaultDice, Faults

# What a workspace without removals answers remove_members (EmulatorConfig.removals).
REMOVALS_REFUSED = "User dissociation is not supported"


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
class Reply:
    """The answer decided for one request; the server writes it (or drops the connection)."""

    status: int  # 0 = close the connection without answering
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    action: str | None = None
    cohort_id: str | None = None
    members: int = 0
    applied: bool = False


@dataclass
class _Cohort:
    name: str
    description: str | None
    members: set[str] = field(default_factory=set)
    delivered: int = 0
    # Adds of uids no known user has: accepted, then dropped, as MoEngage does.
    unmatched: int = 0


class Workspace:
    """One MoEngage workspace in memory: thread-safe, inspectable, with faults."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._dice = FaultDice(config.faults)
        self._cohorts: dict[str, _Cohort] = {}
        self._log: list[RequestRecord] = []
        # Keyed by the workspace a request claims: the quota is checked before auth.
        self._windows: dict[str, deque[float]] = {}
        self._ids = itertools.count(1)
        self._known = None if config.known_users is None else set(config.known_users)

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

    def cohort(self, cohort_id: str) -> dict[str, Any] | None:
        """One cohort with its sorted members, or None when unknown."""
        with self._lock:
            cohort = self._cohorts.get(cohort_id)
            if cohort is None:
                return None
            return {
                "cohort_id": cohort_id,
                "cohort_name": cohort.name,
                "cohort_description": cohort.description,
                "members": sorted(cohort.members),
                "unmatched": cohort.unmatched,
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
            self._dice = FaultDice(faults)

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

    # -- answering -------------------------------------------------------------------------

    def record(self, at: float, body_bytes: int, reply: Reply) -> None:
        """Append one request, as answered, to the log."""
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

    def answer(self, headers: Message, body: bytes | None, size: int, now: float) -> Reply:
        """Decide the answer to one POST to the endpoint, applying it when due.

        `body` is None when its `size` is over the limit (it was not kept).
        """
        workspace = headers.get("MOE-APPKEY")
        if workspace is None:
            creds = decode_basic(headers.get("Authorization"))
            workspace = creds[0] if creds else ""
        reply = self._admit(workspace, now)
        if reply is None:
            reply = self._authorize(headers)
        if reply is None and not is_json_type(headers.get("Content-Type")):
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
            doc = load_json(body)
            req = validate(doc)
        except BadRequest as exc:
            reply = self._fail(400, str(exc), "BadRequest")
            if isinstance(doc, dict):
                action = doc.get("action")
                params = doc.get("parameters")
                cid = params.get("cohort_id") if isinstance(params, dict) else None
                reply.action = action if isinstance(action, str) else None
                reply.cohort_id = cid if isinstance(cid, str) else None
            return reply

        if req.action == "remove_members" and not self.config.removals:
            reply = self._fail(400, REMOVALS_REFUSED, "BadRequest")
            reply.action, reply.cohort_id = req.action, req.cohort_id
            return reply

        with self._lock:
            dice = self._dice
            error_before = dice.draw(dice.faults.error_before_rate)
            drop_before = dice.draw(dice.faults.drop_before_rate)
        if error_before:
            reply = self._fail(503, "Service temporarily unavailable", "ServiceUnavailable")
        elif drop_before:
            reply = Reply(0)
        else:
            self._apply(req)
            with self._lock:
                error_after = dice.draw(dice.faults.error_after_rate)
                drop_after = dice.draw(dice.faults.drop_after_rate)
                slow = dice.draw(dice.faults.slow_rate)
            if drop_after:
                reply = Reply(0)
            elif error_after:
                reply = self._fail(500, "Internal server error", "InternalServerError")
            else:
                reply = Reply(200, dict(SUCCESS_BODY))
            reply.applied = True
            reply.delay = dice.faults.slow_seconds if slow else 0.0
        reply.action = req.action
        reply.cohort_id = req.cohort_id
        reply.members = len(req.uids)
        return reply

    def _fail(self, status: int, message: str, kind: str, **headers: str) -> Reply:
        body = error_body(message, kind, f"emu-{next(self._ids):06d}")
        return Reply(status, body, dict(headers))

    def _admit(self, workspace: str, now: float) -> Reply | None:
        """Storm and rate limit; requests answered 429 here do not enter the window."""
        limit = self.config.rate_limit_per_min
        with self._lock:
            retry_after = self._dice.faults.retry_after
            if self._dice.storm():
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

    def _authorize(self, headers: Message) -> Reply | None:
        # Fixed messages only: nothing from the Authorization header is ever echoed.
        creds = decode_basic(headers.get("Authorization"))
        if creds is None:
            return self._fail(
                401,
                "Authentication required: HTTP Basic with the workspace id and Data API key",
                "Unauthorized",
                **{"WWW-Authenticate": 'Basic realm="MoEngage"'},
            )
        user, password = creds
        if not (
            same_secret(user, self.config.workspace_id)
            and same_secret(password, self.config.api_key)
        ):
            return self._fail(
                401,
                "Invalid credentials: workspace id or Data API key is wrong",
                "Unauthorized",
                **{"WWW-Authenticate": 'Basic realm="MoEngage"'},
            )
        appkey = headers.get("MOE-APPKEY")
        if appkey is None or not same_secret(appkey, self.config.workspace_id):
            return self._fail(
                403,
                "MOE-APPKEY header must be present and equal the workspace id",
                "Forbidden",
            )
        return None

    def _apply(self, req: SyncRequest) -> None:
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

"""The receiving end: the HMAC signature check, what each POST gets, and the ASGI app.

dbt Cloud signs each delivery: the `Authorization` header is the hex HMAC-SHA256 of the raw
body, keyed with the webhook's secret. Nothing is parsed or done before that check. An event
whose signed `timestamp` is more than `max_event_age` from now is refused (a replay). A run
is answered `queued` only once the warehouse records it (ledger.py), so a run accepted is
never lost and a run synced is never synced again; when the warehouse cannot record it, the
answer is 503 and dbt Cloud delivers again. The app answers within dbt Cloud's 10 seconds;
syncing is the worker's job.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ...errors import MoEngageSyncError
from ...settings import Secret
from .config import WebhookConfig
from .events import COMPLETED, cloud_run, event_time
from .worker import SyncWorker

if TYPE_CHECKING:
    from starlette.types import Lifespan

log = logging.getLogger(__name__)

# A dbt Cloud event is about 1 KB; anything this large is not one.
MAX_BODY_BYTES = 1_000_000
# A body still arriving after this long is a slow client, not dbt Cloud.
BODY_SECONDS = 30.0


def signature_ok(secret: Secret, body: bytes, signature: str) -> bool:
    """Whether `signature` is the hex HMAC-SHA256 of `body` keyed with `secret`."""
    key = secret.reveal().encode("utf-8")
    expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode("ascii")
    given = signature.strip().lower().encode("utf-8", "replace")
    return hmac.compare_digest(expected, given)


@dataclass(frozen=True)
class Decision:
    """The answer to one POST: HTTP status and a short JSON-able reason."""

    status: int
    outcome: str
    detail: str = ""

    def body(self) -> dict[str, str]:
        """The JSON answer."""
        answer = {"status": self.outcome}
        if self.detail:
            answer["detail"] = self.detail
        return answer


def decide(config: WebhookConfig, worker: SyncWorker, body: bytes, signature: str) -> Decision:
    """Verify, parse and queue (or ignore) one event; nothing is done before the check."""
    if not signature_ok(config.secret, body, signature):
        log.warning("webhook refused: the Authorization signature does not match the body")
        return Decision(401, "unauthorized", "signature does not match")
    try:
        event = json.loads(body)
        # Whatever cannot be read (a number past Python's 4,300 digits, nesting past the
        # parser's depth, a field of an unexpected type) is a 400, never a 500.
        if not isinstance(event, dict):
            return Decision(400, "bad_request", "body is not a JSON object")
        event_type = event.get("eventType", "")
        if event_type != COMPLETED:
            shown = event_type if isinstance(event_type, str) else type(event_type).__name__
            log.info("webhook ignored: event %r is not %s", shown[:100], COMPLETED)
            return Decision(200, "ignored", f"event {shown[:100]!r} is not {COMPLETED}")
        run, problem = cloud_run(event, config.account_id)
        made = event_time(event)
    except (ValueError, TypeError, RecursionError):
        # ValueError: not JSON, not UTF-8, or an integer too long to read.
        log.warning("webhook refused: the body is not a JSON event that can be read")
        return Decision(400, "bad_request", "body is not a JSON event that can be read")
    if run is None:
        log.warning("webhook refused: %s", problem)
        return Decision(400, "bad_request", problem)
    where = f"dbt Cloud run {run.run_id} (job {run.job_id}, {run.status})"
    if made is None:
        log.warning("webhook refused: %s: the event has no RFC 3339 'timestamp'", where)
        return Decision(400, "bad_request", "the event has no RFC 3339 'timestamp'")
    age = time.time() - made.timestamp()
    if abs(age) > config.max_event_age:
        when = "old" if age > 0 else "in the future"
        log.warning(
            "webhook refused: %s: its timestamp is %.0f s %s, past %g s: a replayed event, or "
            "a clock that is off",
            where,
            abs(age),
            when,
            config.max_event_age,
        )
        return Decision(
            400, "stale", f"the event's timestamp is {abs(age):.0f} s {when}: not accepted"
        )
    if config.job_ids and run.job_id not in config.job_ids:
        log.info("webhook ignored: %s: job %s is not in --job-id", where, run.job_id)
        return Decision(200, "ignored", f"job {run.job_id} is not synced by this receiver")
    if config.account_id and run.account_id != config.account_id:
        log.info(
            "webhook ignored: %s: account %s is not DBT_CLOUD_ACCOUNT_ID", where, run.account_id
        )
        return Decision(200, "ignored", f"account {run.account_id} is not this receiver's")
    if worker.stopping.is_set():
        return Decision(503, "stopping", "the receiver is shutting down")
    try:
        duplicate = worker.submit(run)
    except Exception as exc:  # the warehouse cannot record it: not accepted, delivered again
        # A MoEngageSyncError's message never holds a secret; others show their type only.
        reason = str(exc) if isinstance(exc, MoEngageSyncError) else type(exc).__name__
        log.error("webhook not accepted: %s: the run could not be recorded: %s", where, reason)
        return Decision(503, "unavailable", "the run could not be recorded; deliver it again")
    if duplicate:
        log.info("webhook ignored: %s %s", where, duplicate)
        return Decision(200, "duplicate", f"run {run.run_id} {duplicate}")
    log.info("webhook accepted: %s queued for sync", where)
    return Decision(200, "queued", f"run {run.run_id} queued")


def create_app(
    config: WebhookConfig, worker: SyncWorker, lifespan: Lifespan[Starlette] | None = None
) -> Starlette:
    """The ASGI app: `GET /healthz`, and a dbt Cloud delivery by POST on any path."""

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def delivery(request: Request) -> JSONResponse:
        # Only the path: headers (Authorization) are never logged.
        log.debug(
            "POST %s from %s", request.url.path, request.client.host if request.client else "-"
        )
        length = request.headers.get("content-length", "").strip()
        if not (length.isascii() and length.isdigit()):
            return JSONResponse({"status": "length_required"}, 411)
        if int(length) > MAX_BODY_BYTES:
            return JSONResponse({"status": "too_large"}, 413)
        try:
            async with asyncio.timeout(BODY_SECONDS):
                body = await request.body()
        except TimeoutError:
            return JSONResponse({"status": "timeout"}, 408)
        except ClientDisconnect:
            return JSONResponse({"status": "client_disconnected"}, 400)
        # In a thread: recording the run is a warehouse write.
        signature = request.headers.get("authorization", "")
        decision = await run_in_threadpool(decide, config, worker, body, signature)
        return JSONResponse(decision.body(), decision.status)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/{path:path}", delivery, methods=["POST"]),
        ],
        lifespan=lifespan,
    )

"""The receiving end: the HMAC signature check, what each POST gets, and the ASGI app.

dbt Cloud signs each delivery: the `Authorization` header is the hex HMAC-SHA256 of the raw
body, keyed with the webhook's secret. Nothing is parsed or done before that check. The app
answers at once (dbt Cloud gives up after 10 seconds); syncing is the worker's job.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ...settings import Secret
from .config import WebhookConfig
from .events import COMPLETED, cloud_run
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
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        log.warning("webhook refused: the body is not JSON")
        return Decision(400, "bad_request", "body is not JSON")
    if not isinstance(event, dict):
        return Decision(400, "bad_request", "body is not a JSON object")
    event_type = str(event.get("eventType", ""))
    if event_type != COMPLETED:
        log.info("webhook ignored: event %r is not %s", event_type, COMPLETED)
        return Decision(200, "ignored", f"event {event_type!r} is not {COMPLETED}")
    run, problem = cloud_run(event, config.account_id)
    if run is None:
        log.warning("webhook refused: %s", problem)
        return Decision(400, "bad_request", problem)
    where = f"dbt Cloud run {run.run_id} (job {run.job_id}, {run.status})"
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
    duplicate = worker.submit(run)
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
        # Fast and non-blocking (HMAC, JSON of ~1 KB, a queue put): fine on the event loop.
        decision = decide(config, worker, body, request.headers.get("authorization", ""))
        return JSONResponse(decision.body(), decision.status)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/{path:path}", delivery, methods=["POST"]),
        ],
        lifespan=lifespan,
    )

"""A dbt Cloud webhook receiver: verify the signature, fetch the run's artifacts, sync what built.

dbt Cloud POSTs `job.run.completed` with an `Authorization` header holding the hex
HMAC-SHA256 of the raw body, keyed with the webhook's secret. The receiver refuses an event
whose signed timestamp is more than a few minutes from now, records the run as queued in the
warehouse (moengage_webhook_runs, beside the sync state), answers (dbt Cloud gives up after
10 seconds) and syncs in one worker thread, one run at a time: manifest.json and
run_results.json are fetched from the Administrative API v2 into a fresh folder, and
`run_sync(only_built=True)` syncs the cohorts whose models built in that run. Runs still
queued when the receiver stops are resumed by its next start; a run synced is never synced
again; a run given up is recorded and notified.

    config.py     WebhookConfig: credentials, the dbt project, limits
    events.py     CloudRun: what a job.run.completed event is about, and when it was made
    receiver.py   the HMAC check, the answer to each POST, the ASGI (Starlette) app
    artifacts.py  the dbt Cloud artifacts client, on the runner's retry policy (retry.py)
    ledger.py     RunLedger: the runs accepted, queued/synced/given_up, in the warehouse
    worker.py     the queue and worker: one sync per run id, fetches retried, runs given up
    server.py     WebhookReceiver: uvicorn serving the app in a thread (a header deadline
                  on every connection), beside the worker
    command.py    `dbt-moengage serve-webhook`

Why Starlette on uvicorn: this is the one part of dbt-moengage that faces the internet, and
Python's own documentation says `http.server` is not for production (it only implements basic
security checks). Starlette and uvicorn are small, maintained, typed, and widely deployed;
uvicorn's h11 parser enforces HTTP/1.1 framing, answers 503 past a connection limit, and
shuts down gracefully. They come with the `[webhook]` extra (`pip install
"dbt-moengage[webhook]"`), so they are imported only by `receiver.py` and `server.py`:
`import dbt_moengage` and the other commands work without them.

Secrets (webhook secret, API token, MoEngage key) are never logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .artifacts import artifact_url, fetch_artifacts
from .command import serve_webhook
from .config import DEFAULT_CLOUD_HOST, WebhookConfig, check_cloud_host
from .events import CloudRun
from .ledger import RunLedger
from .worker import RunOutcome, SyncWorker

if TYPE_CHECKING:
    from .receiver import Decision
    from .server import WebhookReceiver

# Names that need the [webhook] extra, imported on first use.
_LAZY = {"WebhookReceiver": "server", "Decision": "receiver"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_CLOUD_HOST",
    "CloudRun",
    "Decision",
    "RunLedger",
    "RunOutcome",
    "SyncWorker",
    "WebhookConfig",
    "WebhookReceiver",
    "artifact_url",
    "check_cloud_host",
    "fetch_artifacts",
    "serve_webhook",
]

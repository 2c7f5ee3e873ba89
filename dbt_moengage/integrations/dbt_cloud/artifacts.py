"""The dbt Cloud artifacts client: a run's manifest.json and run_results.json, to files.

Administrative API v2, `GET /api/v2/accounts/{account}/runs/{run}/artifacts/{name}`, with the
service token. Retries follow the runner's one policy (`dbt_moengage/retry.py`): throttling
(429, its Retry-After first), server errors, dropped connections, and a 404 for an artifact
dbt Cloud has not published yet are `TransientError`s; a refused token is not retried.

Of an answer, only an artifact is read, streamed to its file and at most MAX_ARTIFACT_BYTES;
the body of a refusal or of a redirect is never read (closing drops the connection). Each GET
ends by its wall-clock deadline (`fetch_deadline`, deadline.py), however slowly the API
answers, and at once when the receiver stops.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import requests

from ... import __version__, retry
from ...deadline import DeadlineAdapter
from ...errors import (
    ArtifactError,
    ArtifactsUnavailable,
    Interrupted,
    TransientError,
)
from .config import WebhookConfig
from .events import CloudRun

ARTIFACTS = ("manifest.json", "run_results.json")
MAX_BACKOFF = 30.0
_CHUNK = 1 << 20
# A large project's manifest.json is some hundreds of MB at most; past this it is not one.
MAX_ARTIFACT_BYTES = 512 * 1024 * 1024


def artifact_url(config: WebhookConfig, run: CloudRun, name: str) -> str:
    """The Administrative API v2 URL of one artifact of a run."""
    host = config.cloud_host.rstrip("/")
    account, run_id = quote(run.account_id, safe=""), quote(run.run_id, safe="")
    return f"{host}/api/v2/accounts/{account}/runs/{run_id}/artifacts/{name}"


def fetch_artifacts(
    config: WebhookConfig,
    run: CloudRun,
    folder: Path,
    *,
    sleep: Callable[[float], None] = time.sleep,
    stop: threading.Event | None = None,
) -> None:
    """Download manifest.json and run_results.json of `run` into `folder`.

    `sleep` waits between attempts (the worker passes its stop event's `wait`); raises
    ArtifactError, whose message names the URL and the fix but never the token. Setting
    `stop` ends a GET at once and starts no other: Interrupted.
    """
    params = {"step": str(config.step)} if config.step is not None else None
    stop = stop or threading.Event()
    with requests.Session() as session:
        # Its connections can be shut at a GET's deadline, or when the receiver stops.
        session.mount("http://", DeadlineAdapter())
        session.mount("https://", DeadlineAdapter())
        session.hooks["response"].append(_unread_redirect)
        session.headers.update(
            {
                "Authorization": f"Token {config.api_token.reveal()}",
                "Accept": "application/json",
                "User-Agent": f"dbt-moengage/{__version__}",
            }
        )
        for name in ARTIFACTS:
            url = artifact_url(config, run, name)
            policy = retry.policy(
                max_attempts=config.fetch_attempts,
                backoff_initial=config.fetch_backoff,
                backoff_max=MAX_BACKOFF,
                sleep=sleep,
            )
            attempts = 0
            try:
                for attempt in policy:
                    with attempt:
                        if stop.is_set():
                            raise Interrupted(f"GET {url} not made: the receiver is stopping")
                        attempts += 1
                        _download(session, config, url, params, folder / name, stop)
            except TransientError as exc:
                raise ArtifactsUnavailable(
                    f"GET {url} failed after {attempts} attempts ({exc}); "
                    "nothing synced for this run"
                ) from None


def _download(
    session: requests.Session,
    config: WebhookConfig,
    url: str,
    params: dict[str, str] | None,
    path: Path,
    stop: threading.Event,
) -> None:
    """One GET of one artifact to a file, ended by its deadline or `stop`; raise the typed
    error for anything but a 200."""
    stopping = f"GET {url} cut off: the receiver is stopping"
    # Messages of requests' errors may quote the URL or headers: only the type is shown.
    with (
        retry.one_attempt(config.fetch_deadline, stop, stopping=stopping),
        session.get(
            url,
            params=params,
            timeout=(config.connect_timeout, config.read_timeout),
            # requests drops the Authorization header on a redirect to another host.
            stream=True,
        ) as response,
    ):
        status = response.status_code
        if status == 200:
            _save(response, url, path)
            return
    problem = f"HTTP {status}"
    # 404: dbt Cloud may answer the webhook before the run's artifacts are published.
    error = retry.answer_error(status, problem, response.headers.get("Retry-After"), also=(404,))
    if error is not None:
        raise error
    if status in (401, 403):
        raise ArtifactError(
            f"GET {url} answered {problem}: check DBT_CLOUD_API_TOKEN (a service token with "
            "read access to the job's project) and DBT_CLOUD_HOST; nothing synced for this run"
        )
    raise ArtifactError(f"GET {url} answered {problem}; nothing synced for this run")


def _save(response: requests.Response, url: str, path: Path) -> None:
    """Stream an artifact to `path`, refusing one over MAX_ARTIFACT_BYTES as it comes."""
    partial = path.with_suffix(".part")
    written = 0
    with partial.open("wb") as out:
        for chunk in response.iter_content(_CHUNK):
            written += len(chunk)
            if written > MAX_ARTIFACT_BYTES:
                out.close()
                partial.unlink()
                raise ArtifactError(
                    f"GET {url}: the artifact is over {MAX_ARTIFACT_BYTES >> 20} MB, more than "
                    "a dbt artifact can be; not read further, nothing synced for this run"
                )
            out.write(chunk)
    partial.replace(path)


def _unread_redirect(response: requests.Response, *args: object, **kwargs: object) -> None:
    """A response hook: requests reads a redirect's whole body before following it, and a
    redirect's body says nothing; closed first, none of it is read (nor the connection
    kept)."""
    if response.is_redirect:
        response.raw.close()

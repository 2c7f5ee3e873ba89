"""A dbt Cloud webhook receiver: verify the signature, fetch the run's artifacts, sync what built.

dbt Cloud POSTs `job.run.completed` to this server with an `Authorization` header holding the
hex HMAC-SHA256 of the raw body, keyed with the webhook's secret. The receiver answers at once
(dbt Cloud gives up after 10 seconds) and syncs in one worker thread, one run at a time:
manifest.json and run_results.json are fetched from the Administrative API v2 into a fresh
folder, and `run_sync(only_built=True)` syncs the cohorts whose models built in that run.
A run counts as synced once `run_sync` returned a report; a redelivery meanwhile or after is a
duplicate, but a run whose artifacts could not be fetched, or whose sync raised, is forgotten so
dbt Cloud's redelivery of its event syncs it.
Standard library server; secrets (webhook secret, API token, MoEngage key) are never logged.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import hmac
import json
import logging
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, cast
from urllib.parse import quote, urlsplit

import click
import requests

from .errors import MoEngageSyncError, SettingsError
from .progress import Progress, result_text
from .report import CohortResult, RunReport
from .settings import Secret, _is_loopback
from .sync import SyncOptions, run_sync

log = logging.getLogger(__name__)

COMPLETED = "job.run.completed"
DEFAULT_CLOUD_HOST = "https://cloud.getdbt.com"
ARTIFACTS = ("manifest.json", "run_results.json")
# A dbt Cloud event is about 1 KB; anything this large is not one.
MAX_BODY_BYTES = 1_000_000
# Variables the receiver itself reads; the sync does not get them.
_OWN_SECRETS = ("DBT_CLOUD_WEBHOOK_SECRET", "DBT_CLOUD_API_TOKEN")
_CHUNK = 1 << 20
_SEEN_RUNS = 1000


@dataclass(frozen=True)
class WebhookConfig:
    """What the receiver needs: dbt Cloud credentials, the dbt project, and its limits."""

    secret: Secret
    api_token: Secret
    project_dir: Path
    profiles_dir: Path | None = None
    target: str | None = None
    cloud_host: str = DEFAULT_CLOUD_HOST
    account_id: str | None = None
    job_ids: frozenset[str] = frozenset()
    # The run step whose artifacts to fetch; None is dbt Cloud's default, the last step.
    step: int | None = None
    work_dir: Path | None = None
    keep_runs: int = 20
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    fetch_attempts: int = 4
    fetch_backoff: float = 2.0
    # The sync's environment holds MoEngage and warehouse secrets: never part of a repr.
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)

    def __post_init__(self) -> None:
        check_cloud_host(self.cloud_host)
        if not self.secret:
            raise SettingsError("DBT_CLOUD_WEBHOOK_SECRET is empty: set the webhook's secret")
        if not self.api_token:
            raise SettingsError("DBT_CLOUD_API_TOKEN is empty: set a dbt Cloud service token")


def check_cloud_host(url: str) -> None:
    """Refuse a dbt Cloud host that would carry the API token in clear or is not a URL."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise SettingsError("DBT_CLOUD_HOST must not carry credentials; use DBT_CLOUD_API_TOKEN")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"DBT_CLOUD_HOST = {url!r}: must be an https URL with a host, "
            "e.g. https://cloud.getdbt.com or your account's access URL"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise SettingsError(
            f"DBT_CLOUD_HOST = {url!r}: plain http:// is only allowed to a loopback address, "
            "because the API token would travel in clear; use https://"
        )


@dataclass(frozen=True)
class CloudRun:
    """The dbt Cloud run a webhook event is about."""

    account_id: str
    job_id: str
    run_id: str
    status: str
    event_id: str = ""


@dataclass
class RunOutcome:
    """How the sync after one dbt Cloud run went; `report` is None when it could not start."""

    run: CloudRun
    folder: Path | None
    report: RunReport | None = None
    error: str | None = None

    @property
    def exit_code(self) -> int:
        """The exit code `dbt-moengage sync` would have had: 0, 1, or 2 when it could not run."""
        return self.report.exit_code if self.report is not None else 2


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


class WebhookReceiver:
    """The webhook server and its sync worker; `start()`, `stop()`, `url`, `wait_idle()`."""

    def __init__(self, config: WebhookConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self._serving = False
        self._queue: queue.Queue[CloudRun | None] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._stopping = threading.Event()
        # Runs whose sync finished (a report, whatever the cohorts' statuses), oldest first.
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        # Runs queued or being synced; they join _seen, or are forgotten, when the sync ends.
        self._in_flight: set[str] = set()
        self._seen_lock = threading.Lock()
        self._work_dir: Path | None = config.work_dir
        self._run_dirs: collections.deque[Path] = collections.deque()
        self.last_reports: collections.deque[RunOutcome] = collections.deque(maxlen=50)

    # -- lifecycle -------------------------------------------------------------------------

    def bind(self) -> _Server:
        """Open the listening socket (idempotent)."""
        if self._server is None:
            self._server = _Server((self._host, self._port), self)
        return self._server

    def start(self) -> WebhookReceiver:
        """Serve and sync in daemon threads; return self."""
        server = self.bind()
        self._start_worker()
        if self._thread is None:
            self._serving = True
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="dbt-cloud-webhook",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until `stop()` (or Ctrl-C) and sync in a worker."""
        server = self.bind()
        self._start_worker()
        self._serving = True
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self, timeout: float | None = 600.0) -> None:
        """Stop accepting events, finish the sync in progress, drop the queued ones."""
        self._stopping.set()
        server, thread, worker = self._server, self._thread, self._worker
        self._server, self._thread = None, None
        if server is not None:
            # shutdown() waits for serve_forever() to end, so only once it has begun.
            if self._serving:
                server.shutdown()
            if thread is not None:
                thread.join(timeout=5)
            server.server_close()
        self._serving = False
        if worker is not None:
            self._queue.put(None)
            worker.join(timeout=timeout)
            self._worker = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL of the receiver, e.g. http://127.0.0.1:8080."""
        if self._server is None:
            raise RuntimeError("the receiver is not running: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every accepted run has been synced; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _start_worker(self) -> None:
        if self._worker is None:
            self._stopping.clear()
            self._worker = threading.Thread(target=self._work, name="moengage-sync", daemon=True)
            self._worker.start()

    # -- events ----------------------------------------------------------------------------

    def handle_event(self, body: bytes, signature: str) -> int:
        """Verify and act on one webhook POST; return the HTTP status to answer."""
        return self.decide(body, signature).status

    def decide(self, body: bytes, signature: str) -> Decision:
        """Verify, parse and queue (or ignore) one event; nothing is done before the check."""
        if not self.signature_ok(body, signature):
            log.warning("webhook refused: the Authorization signature does not match the body")
            return Decision(401, "unauthorized", "signature does not match")
        try:
            event = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            log.warning("webhook refused: the body is not JSON")
            return Decision(400, "bad_request", "body is not JSON")
        if not isinstance(event, dict):
            return Decision(400, "bad_request", "body is not a JSON object")
        event_type = str(event.get("eventType", ""))
        if event_type != COMPLETED:
            log.info("webhook ignored: event %r is not %s", event_type, COMPLETED)
            return Decision(200, "ignored", f"event {event_type!r} is not {COMPLETED}")
        run, problem = self._cloud_run(event)
        if run is None:
            log.warning("webhook refused: %s", problem)
            return Decision(400, "bad_request", problem)
        where = f"dbt Cloud run {run.run_id} (job {run.job_id}, {run.status})"
        if self.config.job_ids and run.job_id not in self.config.job_ids:
            log.info("webhook ignored: %s: job %s is not in --job-id", where, run.job_id)
            return Decision(200, "ignored", f"job {run.job_id} is not synced by this receiver")
        if self.config.account_id and run.account_id != self.config.account_id:
            log.info(
                "webhook ignored: %s: account %s is not DBT_CLOUD_ACCOUNT_ID", where, run.account_id
            )
            return Decision(200, "ignored", f"account {run.account_id} is not this receiver's")
        if self._stopping.is_set():
            return Decision(503, "stopping", "the receiver is shutting down")
        duplicate = self._claim(run.run_id)
        if duplicate:
            log.info("webhook ignored: %s %s", where, duplicate)
            return Decision(200, "duplicate", f"run {run.run_id} {duplicate}")
        with self._idle:
            self._pending += 1
        self._queue.put(run)
        log.info("webhook accepted: %s queued for sync", where)
        return Decision(200, "queued", f"run {run.run_id} queued")

    def signature_ok(self, body: bytes, signature: str) -> bool:
        """Whether `signature` is the hex HMAC-SHA256 of `body` with the webhook secret."""
        key = self.config.secret.reveal().encode("utf-8")
        expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode("ascii")
        given = signature.strip().lower().encode("utf-8", "replace")
        return hmac.compare_digest(expected, given)

    def _cloud_run(self, event: dict[str, Any]) -> tuple[CloudRun | None, str]:
        data = event.get("data")
        if not isinstance(data, dict):
            return None, "the event has no 'data' object"
        run_id, job_id = str(data.get("runId") or ""), str(data.get("jobId") or "")
        # The documented payload has accountId at the top; some deliveries put it in data.
        account = str(
            event.get("accountId") or data.get("accountId") or self.config.account_id or ""
        )
        for name, value in (("data.runId", run_id), ("data.jobId", job_id), ("accountId", account)):
            if not value.isdigit():
                return None, f"{name} = {value!r} is not a dbt Cloud id"
        run = CloudRun(
            account_id=account,
            job_id=job_id,
            run_id=run_id,
            status=str(data.get("runStatus") or "unknown"),
            event_id=str(event.get("eventId") or ""),
        )
        return run, ""

    def _claim(self, run_id: str) -> str:
        """Claim `run_id` for a sync and return ""; for a duplicate, return why it is one."""
        # dbt Cloud re-delivers an event it thinks failed; one sync per run is enough, but only
        # a sync that finished counts: until then a redelivery must not queue it a second time.
        with self._seen_lock:
            if run_id in self._seen:
                return "was already synced"
            if run_id in self._in_flight:
                return "is in progress (queued or syncing)"
            self._in_flight.add(run_id)
            return ""

    def _settle(self, run_id: str, synced: bool) -> None:
        """End `run_id`'s sync: remember it if it finished, else forget it so it can come again."""
        # A run whose artifacts could not be fetched, or whose sync raised before a report, is
        # forgotten: dbt Cloud's redelivery of the event then syncs it.
        with self._seen_lock:
            self._in_flight.discard(run_id)
            if synced:
                self._seen[run_id] = None
                while len(self._seen) > _SEEN_RUNS:
                    self._seen.popitem(last=False)

    # -- the worker ------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            run = self._queue.get()
            if run is None:
                break
            synced = False
            try:
                if self._stopping.is_set():
                    log.warning("dbt Cloud run %s not synced: the receiver is stopping", run.run_id)
                    continue
                outcome = self.sync_run(run)
                synced = outcome.report is not None
                self.last_reports.append(outcome)
                log.info("%s", summary_line(outcome))
            except Exception as exc:  # the worker must outlive any one run
                log.error("dbt Cloud run %s: sync crashed: %s", run.run_id, type(exc).__name__)
                self.last_reports.append(RunOutcome(run, None, error=type(exc).__name__))
            finally:
                # Settled before idle, so a delivery after wait_idle() sees how the sync ended.
                self._settle(run.run_id, synced)
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def sync_run(self, run: CloudRun) -> RunOutcome:
        """Fetch the run's artifacts into a fresh folder and sync the cohorts that built."""
        folder = self._new_run_dir(run)
        outcome = RunOutcome(run, folder)
        try:
            fetch_artifacts(self.config, run, folder)
        except ArtifactError as exc:
            outcome.error = str(exc)
            return outcome
        environ = {k: v for k, v in self.config.environ.items() if k not in _OWN_SECRETS}
        options = SyncOptions(
            project_dir=self.config.project_dir,
            profiles_dir=self.config.profiles_dir,
            target=self.config.target,
            only_built=True,
            target_path=folder,
            environ=environ,
        )
        try:
            report = run_sync(options, LogProgress(run.run_id))
        except MoEngageSyncError as exc:  # their messages never hold a secret
            outcome.error = str(exc)
            return outcome
        outcome.report = report
        try:
            report.write(folder)
        except OSError as exc:
            # The cohorts are synced; a report file that cannot be written does not undo that.
            outcome.error = f"report not written to {folder}: {exc.strerror or type(exc).__name__}"
            log.warning("dbt Cloud run %s: %s", run.run_id, outcome.error)
        return outcome

    def _new_run_dir(self, run: CloudRun) -> Path:
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="dbt-moengage-webhook-"))
        self._work_dir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"run-{run.run_id}-", dir=self._work_dir))
        self._run_dirs.append(folder)
        while len(self._run_dirs) > max(self.config.keep_runs, 1):
            shutil.rmtree(self._run_dirs.popleft(), ignore_errors=True)
        return folder


class ArtifactError(Exception):
    """A run's artifact could not be fetched from dbt Cloud; the message is safe to log."""


def artifact_url(config: WebhookConfig, run: CloudRun, name: str) -> str:
    """The Administrative API v2 URL of one artifact of a run."""
    host = config.cloud_host.rstrip("/")
    account, run_id = quote(run.account_id, safe=""), quote(run.run_id, safe="")
    return f"{host}/api/v2/accounts/{account}/runs/{run_id}/artifacts/{name}"


def fetch_artifacts(config: WebhookConfig, run: CloudRun, folder: Path) -> None:
    """Download manifest.json and run_results.json of `run` into `folder`."""
    headers = {
        "Authorization": f"Token {config.api_token.reveal()}",
        "Accept": "application/json",
    }
    params = {"step": str(config.step)} if config.step is not None else None
    with requests.Session() as session:
        session.headers.update(headers)
        for name in ARTIFACTS:
            _fetch_one(session, config, artifact_url(config, run, name), params, folder / name)


def _fetch_one(
    session: requests.Session,
    config: WebhookConfig,
    url: str,
    params: dict[str, str] | None,
    path: Path,
) -> None:
    """GET one artifact to a file; retry server errors, throttling and a not-yet-there 404."""
    problem = ""
    for attempt in range(1, config.fetch_attempts + 1):
        if attempt > 1:
            time.sleep(min(config.fetch_backoff * 2 ** (attempt - 2), 30.0))
        try:
            with session.get(
                url,
                params=params,
                timeout=(config.connect_timeout, config.read_timeout),
                stream=True,
            ) as response:
                if response.status_code == 200:
                    partial = path.with_suffix(".part")
                    with partial.open("wb") as out:
                        for chunk in response.iter_content(_CHUNK):
                            out.write(chunk)
                    partial.replace(path)
                    return
                problem = f"HTTP {response.status_code}"
                if response.status_code in (401, 403):
                    raise ArtifactError(
                        f"GET {url} answered {problem}: check DBT_CLOUD_API_TOKEN (a service "
                        "token with read access to the job's project) and DBT_CLOUD_HOST"
                    )
                if response.status_code not in (404, 429) and response.status_code < 500:
                    break
        except requests.RequestException as exc:
            problem = type(exc).__name__
    raise ArtifactError(
        f"GET {url} failed after {config.fetch_attempts} attempts ({problem}); "
        "nothing synced for this run"
    )


class LogProgress(Progress):
    """Sync events as log lines, prefixed with the dbt Cloud run."""

    def __init__(self, run_id: str) -> None:
        self.prefix = f"dbt Cloud run {run_id}:"

    def message(self, text: str) -> None:
        """Log it."""
        log.info("%s %s", self.prefix, text)

    def problem(self, text: str) -> None:
        """Log it as a warning."""
        log.warning("%s invalid cohort %s", self.prefix, text)

    def cohort_finished(self, result: CohortResult) -> None:
        """One line per cohort, as `dbt-moengage sync` prints it."""
        log.info("%s %s", self.prefix, result_text(result).plain)


def summary_line(outcome: RunOutcome) -> str:
    """One line saying how the sync after a dbt Cloud run ended."""
    run = outcome.run
    head = f"dbt Cloud run {run.run_id} (job {run.job_id}, {run.status})"
    if outcome.report is None:
        return f"{head}: not synced: {outcome.error}"
    counts = collections.Counter(r.status for r in outcome.report.results)
    statuses = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no cohort"
    where = outcome.folder / "moengage_sync_results.json" if outcome.folder else "-"
    tail = outcome.error if outcome.error else f"report {where}"
    return f"{head}: {statuses}; exit {outcome.exit_code}; {tail}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up is not worth a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server_version = "dbt-moengage-webhook/1.0"
    timeout = 30

    @property
    def receiver(self) -> WebhookReceiver:
        return cast(_Server, self.server).receiver

    def log_message(self, format: str, *args: Any) -> None:
        # The request line only: headers (Authorization) are never logged.
        log.debug("%s %s", self.address_string(), format % args)

    def _send_json(self, status: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        """GET /healthz answers 200; nothing else is served."""
        if urlsplit(self.path).path == "/healthz":
            self._send_json(200, {"status": "ok"})
        else:
            self._send_json(404, {"status": "not_found"})

    def do_POST(self) -> None:
        """A dbt Cloud webhook delivery, on any path."""
        text = self.headers.get("Content-Length", "").strip()
        if not text.isdigit():
            self.close_connection = True
            self._send_json(411, {"status": "length_required"})
            return
        size = int(text)
        if size > MAX_BODY_BYTES:
            self.close_connection = True
            self._send_json(413, {"status": "too_large"})
            return
        body = self.rfile.read(size)
        decision = self.receiver.decide(body, self.headers.get("Authorization", ""))
        self._send_json(decision.status, decision.body())


def _required_env(name: str, what: str) -> Secret:
    value = os.environ.get(name, "")
    if not value:
        raise click.UsageError(f"{name} is not set: {what}")
    return Secret(value)


@click.command("serve-webhook")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The dbt project folder (its dbt_project.yml names the profile).",
)
@click.option(
    "--profiles-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder holding profiles.yml (default: DBT_PROFILES_DIR, the current folder, ~/.dbt).",
)
@click.option("--target", "-t", default=None, help="The profile target to use.")
@click.option(
    "--job-id",
    "job_ids",
    multiple=True,
    help="Sync only runs of this dbt Cloud job (repeat for several); default: every job.",
)
@click.option(
    "--step",
    type=click.IntRange(min=1),
    default=None,
    help="Fetch the artifacts of this run step (1 = first); default: the last step.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where each run's artifacts and report go (default: a new temporary folder).",
)
def serve_webhook(
    host: str,
    port: int,
    project_dir: Path,
    profiles_dir: Path | None,
    target: str | None,
    job_ids: tuple[str, ...],
    step: int | None,
    work_dir: Path | None,
) -> None:
    """Receive dbt Cloud job.run.completed webhooks and sync the cohorts that built.

    Reads DBT_CLOUD_WEBHOOK_SECRET, DBT_CLOUD_API_TOKEN, DBT_CLOUD_ACCOUNT_ID (optional) and
    DBT_CLOUD_HOST (default https://cloud.getdbt.com) from the environment, and the MoEngage
    settings as `dbt-moengage sync` does. Put it behind HTTPS.
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    for job in job_ids:
        if not job.isdigit():
            raise click.BadParameter(f"{job!r} is not a dbt Cloud job id", param_hint="--job-id")
    try:
        config = WebhookConfig(
            secret=_required_env(
                "DBT_CLOUD_WEBHOOK_SECRET", "the secret dbt Cloud shows for the webhook"
            ),
            api_token=_required_env(
                "DBT_CLOUD_API_TOKEN", "a dbt Cloud token that reads run artifacts"
            ),
            project_dir=project_dir,
            profiles_dir=profiles_dir,
            target=target,
            cloud_host=os.environ.get("DBT_CLOUD_HOST") or DEFAULT_CLOUD_HOST,
            account_id=os.environ.get("DBT_CLOUD_ACCOUNT_ID") or None,
            job_ids=frozenset(job_ids),
            step=step,
            work_dir=work_dir,
            environ=os.environ,
        )
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    receiver = WebhookReceiver(config, host, port)
    receiver.bind()

    def _on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, _on_term)
    jobs = ", ".join(sorted(job_ids)) or "every job"
    log.info("listening on %s for dbt Cloud runs of %s (%s)", receiver.url, jobs, config.cloud_host)
    receiver.serve_forever()


__all__: list[str] = ["WebhookConfig", "WebhookReceiver", "check_cloud_host", "serve_webhook"]

"""The sync worker: one thread syncing queued dbt Cloud runs, one at a time, once per run.

Which runs are queued, synced or given up is kept in the warehouse (ledger.py), not here:
a delivery is accepted only once its run is recorded as queued there, a run that was synced
(whatever the cohorts' statuses: `run_sync` returned a report) is never synced again, and
the runs still queued when the receiver stops are resumed by its next start.

A run's artifacts are fetched under the runner's one retry policy (retry.py) twice over:
each request by the artifacts client (`fetch_attempts`), and the whole fetch again, later,
while dbt Cloud keeps failing transiently (`run_attempts`, from `run_backoff` seconds
doubling up to RUN_BACKOFF_MAX). A run that cannot be synced (its token refused, its
manifest broken, dbt Cloud down past every attempt) is given up: recorded, logged, and
posted to MOENGAGE_NOTIFY_URL when it is set.
"""

from __future__ import annotations

import collections
import logging
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tenacity import RetryCallState

from ... import retry
from ...errors import Interrupted, MoEngageSyncError, NotificationFailed, SettingsError
from ...notify import NotifySettings, post
from ...pipeline import SyncOptions, run_sync
from ...report import CohortResult, RunReport
from ...report.progress import Progress, result_text
from ...warehouse.redact import stored_error
from .artifacts import fetch_artifacts
from .config import WebhookConfig
from .events import CloudRun
from .ledger import GIVEN_UP, QUEUED, SYNCED, RunLedger

log = logging.getLogger(__name__)

# Variables the receiver itself reads; the sync does not get them.
_OWN_SECRETS = ("DBT_CLOUD_WEBHOOK_SECRET", "DBT_CLOUD_API_TOKEN")
# The longest wait between two fetches of one run's artifacts.
RUN_BACKOFF_MAX = 600.0
STOPPING = "the receiver is stopping; it stays queued and the next start resumes it"


@dataclass
class RunOutcome:
    """How the sync after one dbt Cloud run went; `report` is None when it could not start."""

    run: CloudRun
    folder: Path | None
    report: RunReport | None = None
    error: str | None = None
    # Fetches of the run's artifacts, over every start of the receiver.
    attempts: int = 0
    # The receiver stopped before the run could be synced: it stays queued.
    stopped: bool = False

    @property
    def exit_code(self) -> int:
        """The exit code `dbt-moengage sync` would have had: 0, 1, or 2 when it could not run."""
        return self.report.exit_code if self.report is not None else 2

    @property
    def status(self) -> str:
        """What the ledger records: synced, given_up, or still queued (the receiver stopped)."""
        if self.report is not None:
            return SYNCED
        return QUEUED if self.stopped else GIVEN_UP


class SyncWorker:
    """Syncs the runs it is given in one thread, in order; `submit()`, `wait_idle()`."""

    def __init__(self, config: WebhookConfig, ledger: RunLedger | None = None) -> None:
        self.config = config
        self.ledger = ledger if ledger is not None else RunLedger(config)
        # Set when stopping: nothing new is accepted, queued runs stay queued, waits end.
        self.stopping = threading.Event()
        self.last_reports: collections.deque[RunOutcome] = collections.deque(maxlen=50)
        self._queue: queue.Queue[CloudRun | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._pending = 0
        # Fetches already made of a resumed run's artifacts, by run id.
        self._attempts: dict[str, int] = {}
        self._work_dir: Path | None = config.work_dir
        self._run_dirs: collections.deque[Path] = collections.deque()

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is None:
            self.stopping.clear()
            self._thread = threading.Thread(target=self._work, name="moengage-sync", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 600.0) -> None:
        """Finish the sync in progress; the queued runs stay queued in the warehouse."""
        self.stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=timeout)

    def submit(self, run: CloudRun) -> str:
        """Record `run` as queued in the warehouse and queue it, then return ""; for a
        duplicate, queue nothing and return why it is one. Raises when the warehouse cannot
        record it (nothing is accepted then)."""
        claim = self.ledger.claim(run)
        if claim.duplicate:
            return claim.duplicate
        self._enqueue(run, 0)
        return ""

    def resume(self) -> list[CloudRun]:
        """Queue the runs an earlier start accepted and did not finish, oldest first; the
        runs resumed. Runs of jobs or accounts this receiver does not sync stay queued."""
        resumed = []
        for run, attempts in self.ledger.queued():
            if self.config.job_ids and run.job_id not in self.config.job_ids:
                continue
            if self.config.account_id and run.account_id != self.config.account_id:
                continue
            self._enqueue(run, attempts)
            resumed.append(run)
        return resumed

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

    def _enqueue(self, run: CloudRun, attempts: int) -> None:
        with self._idle:
            self._pending += 1
            self._attempts[run.run_id] = attempts
        self._queue.put(run)

    def _work(self) -> None:
        while True:
            run = self._queue.get()
            if run is None:
                break
            try:
                if self.stopping.is_set():
                    log.warning("dbt Cloud run %s not synced yet: %s", run.run_id, STOPPING)
                    continue
                try:
                    outcome = self.sync_run(run)
                except Exception as exc:  # the worker must outlive any one run
                    log.error("dbt Cloud run %s: sync crashed: %s", run.run_id, type(exc).__name__)
                    outcome = RunOutcome(run, None, error=f"the sync crashed: {type(exc).__name__}")
                self.last_reports.append(outcome)
                log.info("%s", summary_line(outcome))
                self._record(outcome)
            except Exception as exc:  # recording or logging failed: the worker goes on
                log.error("dbt Cloud run %s: %s", run.run_id, type(exc).__name__)
            finally:
                # Recorded before idle, so a delivery after wait_idle() sees how the run ended.
                with self._idle:
                    self._attempts.pop(run.run_id, None)
                    self._pending -= 1
                    self._idle.notify_all()

    def _record(self, outcome: RunOutcome) -> None:
        """Write how the run ended to the warehouse, and announce a run given up."""
        run, status = outcome.run, outcome.status
        if status == QUEUED:
            return
        try:
            self.ledger.finish(run, status, outcome.attempts, outcome.error)
        except MoEngageSyncError as exc:
            log.error(
                "dbt Cloud run %s: recording it as %s failed (%s); it stays queued, and the "
                "next start of the receiver syncs it again",
                run.run_id,
                status,
                exc,
            )
        if status == GIVEN_UP:
            announce_given_up(self.config.environ, outcome)

    def sync_run(self, run: CloudRun) -> RunOutcome:
        """Fetch the run's artifacts into a fresh folder (tried again while dbt Cloud fails
        transiently) and sync the cohorts that built."""
        folder = self._new_run_dir(run)
        outcome = RunOutcome(run, folder)
        with self._idle:
            outcome.attempts = self._attempts.get(run.run_id, 0)
        try:
            self._fetch(run, folder, outcome)
        except Interrupted:  # stopped between fetches, or a GET cut off by the stop
            outcome.stopped, outcome.error = True, STOPPING
            return outcome
        except MoEngageSyncError as exc:  # ArtifactError: never holds the token
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

    def _fetch(self, run: CloudRun, folder: Path, outcome: RunOutcome) -> None:
        """Fetch the run's artifacts, again while dbt Cloud fails transiently
        (ArtifactsUnavailable), under the shared retry policy; counts into `outcome`."""
        config = self.config

        def waiting(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "dbt Cloud run %s: artifacts not fetched (%s); trying again in %.0f s",
                run.run_id,
                exc,
                state.upcoming_sleep,
            )

        policy = retry.policy(
            max_attempts=max(config.run_attempts - outcome.attempts, 1),
            backoff_initial=config.run_backoff,
            backoff_max=RUN_BACKOFF_MAX,
            sleep=self._pause,
            before_sleep=waiting,
        )
        for attempt in policy:
            with attempt:
                if self.stopping.is_set():
                    raise Interrupted(f"dbt Cloud run {run.run_id}: the receiver is stopping")
                outcome.attempts += 1
                self.ledger.attempted(run, outcome.attempts)
                fetch_artifacts(config, run, folder, sleep=self._pause, stop=self.stopping)

    def _pause(self, seconds: float) -> None:
        """Wait between attempts, ending at once when the receiver stops."""
        self.stopping.wait(seconds)

    def _new_run_dir(self, run: CloudRun) -> Path:
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="dbt-moengage-webhook-"))
        self._work_dir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"run-{run.run_id}-", dir=self._work_dir))
        self._run_dirs.append(folder)
        while len(self._run_dirs) > max(self.config.keep_runs, 1):
            shutil.rmtree(self._run_dirs.popleft(), ignore_errors=True)
        return folder


def given_up_message(outcome: RunOutcome) -> dict[str, object]:
    """The post announcing a run given up: Slack's `text`, and the facts as fields."""
    run = outcome.run
    error = stored_error(outcome.error, 500) or "unknown error"
    what_to_do = (
        "fix what the error names, then sync the run's cohorts: the job's next run is "
        "synced when it completes, or run `dbt-moengage sync` on this run's artifacts"
    )
    head = f"dbt Cloud run {run.run_id} (job {run.job_id}, {run.status})"
    tries = f"{outcome.attempts} fetch{'' if outcome.attempts == 1 else 'es'} of its artifacts"
    lines = [
        f"*dbt-moengage*: {_slack(head)} not synced, given up after {tries}: {_slack(error)}",
        _slack(f"    what to do: {what_to_do}"),
    ]
    return {
        "text": "\n".join(lines),
        "source": "dbt-moengage",
        "event": "webhook_run_given_up",
        "dbt_cloud_run": {
            "account_id": run.account_id,
            "job_id": run.job_id,
            "run_id": run.run_id,
            "run_status": run.status,
            "attempts": outcome.attempts,
            "error": error,
        },
        "what_to_do": what_to_do,
    }


def announce_given_up(environ: Mapping[str, str], outcome: RunOutcome) -> bool:
    """Post a run given up to MOENGAGE_NOTIFY_URL, when set (notify/posting.py's post: the
    shared retry policy on a small budget); whether it was posted. A post that fails is a
    warning."""
    run_id = outcome.run.run_id
    try:
        settings = NotifySettings.from_env(environ)
    except SettingsError as exc:
        log.warning("dbt Cloud run %s: %s; no notification sent", run_id, exc)
        return False
    if settings is None:
        return False
    try:
        post(settings, given_up_message(outcome))
    except NotificationFailed as exc:
        log.warning("dbt Cloud run %s: %s", run_id, exc)
        return False
    log.info("dbt Cloud run %s: given up, notified %s", run_id, settings.receiver)
    return True


def _slack(text: str) -> str:
    """Outside text as Slack shows it literally: `<`, `>` and `&` are its markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
        if outcome.stopped:
            return f"{head}: not synced yet: {outcome.error}"
        return f"{head}: not synced, given up: {outcome.error}"
    counts = collections.Counter(r.status for r in outcome.report.results)
    statuses = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no cohort"
    where = outcome.folder / "moengage_sync_results.json" if outcome.folder else "-"
    tail = outcome.error if outcome.error else f"report {where}"
    return f"{head}: {statuses}; exit {outcome.exit_code}; {tail}"

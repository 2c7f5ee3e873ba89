"""The sync worker: one thread syncing queued dbt Cloud runs, one at a time, once per run.

A run counts as synced once `run_sync` returned a report, whatever the cohorts' statuses;
a delivery of it meanwhile (queued or syncing) or after is a duplicate. A run whose artifacts
could not be fetched, or whose sync raised, is forgotten, so dbt Cloud's redelivery of its
event syncs it.
"""

from __future__ import annotations

import collections
import logging
import queue
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ...errors import ArtifactError, MoEngageSyncError
from ...report import CohortResult, RunReport
from ...report.progress import Progress, result_text
from ...sync import SyncOptions, run_sync
from .artifacts import fetch_artifacts
from .config import WebhookConfig
from .events import CloudRun

log = logging.getLogger(__name__)

# Variables the receiver itself reads; the sync does not get them.
_OWN_SECRETS = ("DBT_CLOUD_WEBHOOK_SECRET", "DBT_CLOUD_API_TOKEN")
# How many synced run ids are remembered to answer redeliveries as duplicates.
_SEEN_RUNS = 1000


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


class SyncWorker:
    """Syncs the runs it is given in one thread, in order; `submit()`, `wait_idle()`."""

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        # Set when stopping: nothing new is accepted, queued runs are dropped, waits end.
        self.stopping = threading.Event()
        self.last_reports: collections.deque[RunOutcome] = collections.deque(maxlen=50)
        self._queue: queue.Queue[CloudRun | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._pending = 0
        # Runs whose sync finished (a report, whatever the cohorts' statuses), oldest first.
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        # Runs queued or being synced; they join _seen, or are forgotten, when the sync ends.
        self._in_flight: set[str] = set()
        self._seen_lock = threading.Lock()
        self._work_dir: Path | None = config.work_dir
        self._run_dirs: collections.deque[Path] = collections.deque()

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is None:
            self.stopping.clear()
            self._thread = threading.Thread(target=self._work, name="moengage-sync", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 600.0) -> None:
        """Finish the sync in progress and drop the queued ones."""
        self.stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=timeout)

    def submit(self, run: CloudRun) -> str:
        """Queue `run` and return ""; for a duplicate, queue nothing and return why it is one."""
        duplicate = self._claim(run.run_id)
        if duplicate:
            return duplicate
        with self._idle:
            self._pending += 1
        self._queue.put(run)
        return ""

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
        with self._seen_lock:
            self._in_flight.discard(run_id)
            if synced:
                self._seen[run_id] = None
                while len(self._seen) > _SEEN_RUNS:
                    self._seen.popitem(last=False)

    def _work(self) -> None:
        while True:
            run = self._queue.get()
            if run is None:
                break
            synced = False
            try:
                if self.stopping.is_set():
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
            fetch_artifacts(self.config, run, folder, sleep=self._pause)
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

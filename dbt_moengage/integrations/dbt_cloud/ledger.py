"""What the receiver keeps in the warehouse: the dbt Cloud runs it accepted.

One row per run in `moengage_webhook_runs`, beside the sync state (same profile, same
schema): `queued` is written before the receiver answers `queued`, and becomes `synced` or
`given_up` when the worker is done with the run. So

- a run accepted and not synced yet (the receiver stopped, crashed, or was redeployed) is
  resumed by the next start, in the order it came;
- a run synced once is never synced again, whatever delivers its event again and however
  often the receiver restarted: a replay cannot put an old manifest (an old cohort name)
  back in MoEngage;
- a run given up may be delivered again (it never synced).

Each operation opens the warehouse for itself, as the sync does, and closes it: the
receiver holds no connection between events (nor, on DuckDB, the database file). They run
one at a time in the receiver.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from ...errors import MoEngageSyncError
from ...settings import MoEngageSettings
from ...state import StateStore, utcnow
from ...state.schema import WEBHOOK_RUNS
from ...warehouse import Engine, ProfileTarget, connect, load_profile_target
from ...warehouse.redact import stored_error
from .config import WebhookConfig
from .events import CloudRun

log = logging.getLogger(__name__)

QUEUED, SYNCED, GIVEN_UP = "queued", "synced", "given_up"
# How long an answer to dbt Cloud (which waits 10 s) may wait for a DuckDB file that another
# process holds; the worker's own writes wait as long as a sync would.
ANSWER_WAIT_SECONDS = 3.0


@dataclass(frozen=True)
class Claim:
    """What the ledger said of a delivered run: accepted (`duplicate` empty) or why not."""

    duplicate: str = ""


class RunLedger:
    """The receiver's runs in the warehouse: `open()`, `claim()`, `queued()`, `finish()`."""

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self._target: ProfileTarget | None = None
        self._wait_seconds = 0.0
        self._lock = threading.Lock()

    @property
    def state_schema(self) -> str | None:
        """The schema of the state, as the sync picks it (MOENGAGE_STATE_SCHEMA, else the
        profile's)."""
        return self.config.environ.get("MOENGAGE_STATE_SCHEMA") or None

    def open(self) -> None:
        """Read the profile and create (or upgrade) the state tables; ConfigError or
        WarehouseError when the warehouse cannot be used."""
        config = self.config
        settings = MoEngageSettings.from_env(config.environ, require_credentials=False)
        self._wait_seconds = settings.lock_wait_seconds
        self._target = load_profile_target(
            config.project_dir, config.profiles_dir, config.target, config.environ
        )
        with self._engine(wait_seconds=self._sync_wait()) as engine:
            StateStore(engine).prepare(create=True)

    def claim(self, run: CloudRun) -> Claim:
        """Record `run` as queued, unless it is queued or synced already (then say which)."""
        with self._engine(wait_seconds=ANSWER_WAIT_SECONDS) as engine:
            key = (run.account_id, run.run_id)
            row = engine.one("webhook_run_status", key)
            status = str(row[0]) if row is not None else None
            if status == SYNCED:
                return Claim("was already synced")
            if status == QUEUED:
                return Claim("is in progress (queued or syncing)")
            # New, or given up before: (again) queued, from no attempt. Were the insert to
            # fail after the delete, the answer is not `queued` and dbt Cloud delivers again.
            if status is not None:
                engine.run("delete_webhook_run", key)
            row = (run.account_id, run.job_id, run.run_id, run.status, QUEUED, utcnow())
            engine.run("insert_webhook_run", (*row, None, 0, None))
        return Claim()

    def queued(self) -> list[tuple[CloudRun, int]]:
        """The runs accepted and not finished, oldest first, with their attempts so far."""
        with self._engine(wait_seconds=self._sync_wait()) as engine:
            rows = engine.all("queued_webhook_runs")
        return [
            (
                CloudRun(
                    account_id=str(account), job_id=str(job), run_id=str(run_id), status=str(st)
                ),
                int(attempts or 0),
            )
            for account, job, run_id, st, attempts in rows
        ]

    def attempted(self, run: CloudRun, attempts: int) -> None:
        """Record how many fetches of the run's artifacts were made (a warning if it fails:
        the count only informs)."""
        try:
            with self._engine(wait_seconds=self._sync_wait()) as engine:
                engine.run("webhook_run_attempts", (attempts, run.account_id, run.run_id))
        except MoEngageSyncError as exc:  # WarehouseError, or the DuckDB file held
            log.warning("dbt Cloud run %s: %s not updated: %s", run.run_id, WEBHOOK_RUNS, exc)

    def finish(self, run: CloudRun, status: str, attempts: int, error: str | None) -> None:
        """Record the run as synced or given up; WarehouseError when it cannot be written
        (the run stays queued, and the next start syncs it again)."""
        with self._engine(wait_seconds=self._sync_wait()) as engine:
            params = (status, utcnow(), attempts, stored_error(error), run.account_id, run.run_id)
            engine.run("finish_webhook_run", params)

    # -- the warehouse ---------------------------------------------------------------------

    def _sync_wait(self) -> float:
        """How long the worker waits for a DuckDB file another process holds: as a sync."""
        return self._wait_seconds

    def _engine(self, wait_seconds: float) -> _Opened:
        if self._target is None:
            raise RuntimeError("the run ledger is not open: call open() first")
        return _Opened(self, self._target, wait_seconds)


class _Opened:
    """The warehouse, opened for one ledger operation and closed after it, one at a time."""

    def __init__(self, ledger: RunLedger, target: ProfileTarget, wait_seconds: float) -> None:
        self.ledger = ledger
        self.target = target
        self.wait_seconds = wait_seconds
        self.engine: Engine | None = None

    def __enter__(self) -> Engine:
        self.ledger._lock.acquire()
        try:
            self.engine = connect(
                self.target,
                self.ledger.config.project_dir,
                state_schema=self.ledger.state_schema,
                wait_seconds=self.wait_seconds,
            )
        except BaseException:
            self.ledger._lock.release()
            raise
        return self.engine

    def __exit__(self, *exc: object) -> None:
        try:
            if self.engine is not None:
                self.engine.close()
        finally:
            self.ledger._lock.release()

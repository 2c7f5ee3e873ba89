"""One cohort in one run, under its lock: snapshot the model, plan the delta, guard a
mirror's removals, send, checkpoint each accepted request, tally."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from ..client import MoEngageClient, Tally
from ..cohorts import CohortSpec
from ..errors import (
    CohortError,
    Interrupted,
    MoEngageSyncError,
    RequestRejected,
    TransientError,
    WarehouseError,
    WorkspaceFatal,
)
from ..packing import ADD, REMOVE, Body, BodyPacker
from ..report import DRY_RUN, GUARDED, INTERRUPTED, SYNCED, CohortResult
from ..report.progress import Progress
from ..settings import MoEngageSettings
from ..state import Change, Checkpoints, CohortRecord, HeldLock, RunRow, StateStore, utcnow
from ..uids import TOO_LONG
from ..warehouse import Engine
from .guard import removal_guard
from .options import state_key


class CohortSync:
    """One cohort in one run: plan the delta, send it, checkpoint each accepted request."""

    def __init__(
        self,
        spec: CohortSpec,
        warehouse: Engine,
        state: StateStore,
        client: MoEngageClient | None,
        settings: MoEngageSettings,
        run_id: str,
        progress: Progress | None = None,
        allow_large_removal: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        self.spec = spec
        self.stop = stop
        self.progress = progress or Progress()
        self.warehouse = warehouse
        self.state = state
        self.client = client
        self.settings = settings
        self.run_id = run_id
        self.allow_large_removal = allow_large_removal
        self.key = state_key(settings)
        # One clock reading per cohort: the plan and the streams agree on what is due.
        self.now = utcnow()
        self.result = CohortResult(
            model=spec.model,
            cohort_id=spec.cohort_id,
            cohort_name=spec.cohort_name,
            mode=spec.mode,
        )
        self.fatal: WorkspaceFatal | None = None
        self.held = HeldLock()
        self.record: CohortRecord | None = None
        # The name or description MoEngage holds differs from the config (or is unknown).
        self.rename = False
        self.guard: str | None = None
        # What the run records of each accepted request, once it sends (state/checkpoints.py).
        self.checkpoints: Checkpoints | None = None
        # The packer of each action's bodies, once made: what it left out is counted.
        self._packers: dict[str, BodyPacker] = {}
        # The state's members as planned (the checkpoints count the change since).
        self._planned_members: int | None = None
        # Whether the plan found member rows a re-send superseded that no run compacted (a
        # run that died): this run's end compacts every member's (StateStore.compact).
        self._uncompacted = False
        # What the engine had billed to the cohort before this run (an engine may outlive a
        # run: the Python API, tests).
        self._billed_before = warehouse.billed(spec.unique_id) or 0

    @property
    def mirror(self) -> bool:
        """Whether this cohort sends removals."""
        return self.spec.mode == "mirror"

    def dry_run(self, full_refresh: bool = False) -> CohortResult:
        """Count what a sync would add, re-send and remove, and the requests it would take
        (and, where the warehouse bills its jobs, what planning them cost)."""
        started = time.monotonic()
        try:
            with (
                self.warehouse.billing(self.spec.unique_id),
                self.warehouse.snapshot(self.spec, self.key),
            ):
                self._plan(full_refresh)
                requests = resent = 0
                for body in self._add_bodies(full_refresh):
                    requests += 1
                    resent += body.resent
                if self.mirror:
                    requests += sum(1 for _ in self._bodies(REMOVE))
                self._count_too_long()
            self.result.planned_requests = requests
            # A rename re-sends a few current members to carry the name: counted as the
            # run will count them.
            self.result.planned_resend = max(self.result.planned_resend, resent)
            self.result.renamed = self._renaming
            if self.guard:
                self.result.status, self.result.error = GUARDED, self.guard
            else:
                self.result.status = DRY_RUN
        except CohortError as exc:
            self.result.error = str(exc)
        except Interrupted as exc:
            self.result.status, self.result.error = INTERRUPTED, str(exc)
        self.result.bytes_billed = self._billed()
        self.result.seconds = round(time.monotonic() - started, 3)
        return self.result

    def run(self, full_refresh: bool) -> CohortResult:
        """Sync under the cohort's lock; errors end this cohort only (or the workspace).

        Every warehouse job of the cohort is billed to it (where the warehouse bills its
        jobs): the lock, the snapshot, the plan, the streams and the run rows here, the
        checkpoints in the send threads (state/checkpoints.py). The result's figure is read once the
        lock is released, so it counts them all; the run row's, up to its own write.
        """
        started = time.monotonic()
        adds, removes = Tally(), Tally()
        try:
            with (
                self.warehouse.billing(self.spec.unique_id),
                self.state.lock(
                    self.spec, self.key, self.run_id, self.settings.lock_wait_seconds, self.stop
                ) as held,
            ):
                self.held = held
                self._run_locked(full_refresh, adds, removes)
        except WorkspaceFatal as exc:
            self.fatal = exc
            self.result.error = str(exc)
        except Interrupted as exc:
            self.result.status, self.result.error = INTERRUPTED, str(exc)
        except (CohortError, TransientError) as exc:
            self.result.error = str(exc)
        self._tally(adds, removes)
        self.result.bytes_billed = self._billed()
        self.result.seconds = round(time.monotonic() - started, 3)
        return self.result

    def _run_locked(self, full_refresh: bool, adds: Tally, removes: Tally) -> None:
        """Send the delta; the run row says 'running' until it says how it ended."""
        adopted = self.state.adopt_legacy(self.spec, self.key)
        if adopted:
            self.progress.message(
                f"{self.spec.model}: {adopted:,} members recorded before the state was kept "
                f"per endpoint are sent again to {self.key.endpoint}"
            )
        row = RunRow(
            run_id=self.run_id,
            endpoint=self.key.endpoint,
            workspace_id=self.key.workspace_id,
            cohort_id=self.spec.cohort_id,
            model=self.spec.model,
            mode=self.spec.mode,
            full_refresh=full_refresh,
            started_at=utcnow(),
        )
        self.state.save_run(row)
        try:
            # One reading of the model: the plan, the guard and every stream come from it.
            with self.warehouse.snapshot(self.spec, self.key):
                self._plan(full_refresh)
                if self.guard:
                    self.result.status, self.result.error = GUARDED, self.guard
                    return
                self._send(full_refresh, adds, removes)
            self.result.status = SYNCED
        except Interrupted as exc:
            # Marked here, so the run row says how it ended (not 'running' forever).
            self.result.status, self.result.error = INTERRUPTED, str(exc)
            raise
        except MoEngageSyncError as exc:
            self.result.error = str(exc)
            raise
        finally:
            self._tally(adds, removes)
            self._remember(adds)
            r = self.result
            row.finished_at = utcnow()
            row.status, row.error = r.status, r.error
            row.added, row.removed, row.resent = r.added, r.removed, r.resent
            row.unchanged, row.left_but_kept = r.unchanged, r.left_but_kept
            row.requests, row.retries, row.renamed = r.requests, r.retries, r.renamed
            row.members_after = self._members_after()
            # A row cannot count the job that writes it: it holds what was billed before.
            row.bytes_billed = self._billed()
            self.state.save_run(row)
            # Statistics first: the compaction's join is then planned for the rows the run
            # wrote (a hash join on Postgres, not one index probe per re-sent uid).
            self.state.refresh_statistics(
                adds.uids_accepted + removes.uids_accepted, self._planned_members or 0
            )
            self._compact()

    def _compact(self) -> None:
        """Once per cohort run, delete the member rows this run's re-sends superseded (and
        any a run that died left). A failure costs only rows the next run compacts (its
        plan finds them), never what MoEngage accepted: each uid keeps its newest row."""
        if not (self._resent or self._uncompacted):
            return
        try:
            self.state.compact(self.spec, self.key, self.run_id, everyone=self._uncompacted)
        except WarehouseError as exc:
            self.progress.message(
                f"model '{self.spec.model}': the state keeps older rows of the uids this run "
                f"re-sent, which the next run deletes ({exc})"
            )

    def _billed(self) -> int | None:
        """Bytes the warehouse billed for the cohort's jobs in this run so far; None where
        the engine reports no cost."""
        billed = self.warehouse.billed(self.spec.unique_id)
        return None if billed is None else billed - self._billed_before

    def _members_after(self) -> int | None:
        """The cohort's members in the state as the run ends; None if the warehouse fails.

        After a clean run, the plan's count plus what the checkpoints wrote: each added uid
        was not in the state, each removed one was, and the lock kept every other writer
        out. Otherwise (a failure, a full refresh's replacing writes) the state is counted.
        """
        if self._planned_members is not None and self.result.status in (SYNCED, GUARDED):
            written = self.checkpoints.written if self.checkpoints is not None else 0
            return self._planned_members + written
        try:
            return self.state.member_count(self.spec, self.key)
        except WarehouseError:
            return None

    def _plan(self, full_refresh: bool) -> None:
        counts = self.warehouse.audience_stats(self.spec)
        delta = self.state.plan(self.spec, self.key, full_refresh, self.now)
        if self.state.ready:
            self.record = self.state.cohort_record(self.spec, self.key)
        r = self.result
        r.uids_total = delta.distinct
        r.dropped = counts.dropped(delta.distinct)
        self._planned_members = None if full_refresh else delta.current
        self._uncompacted = delta.uncompacted
        r.unchanged = delta.unchanged
        r.planned_add = delta.to_add
        r.planned_resend = delta.to_resend
        if self.mirror:
            r.planned_remove = delta.to_remove
        else:
            r.left_but_kept = delta.to_remove
        if self.record is not None:
            self.rename = (self.record.cohort_name, self.record.cohort_description) != (
                self.spec.cohort_name,
                self.spec.description,
            )
        else:
            # Members but no record (state from before names were kept): send the name.
            self.rename = delta.current > 0
        guarded = self.mirror and not self.allow_large_removal
        self.guard = removal_guard(self.spec, r.planned_remove, delta) if guarded else None

    @property
    def _renaming(self) -> bool:
        """Whether this run changes a name or description MoEngage knows."""
        return self.rename and self.record is not None and self.record.cohort_name is not None

    def _send(self, full_refresh: bool, adds: Tally, removes: Tally) -> None:
        """Removals first, then additions and re-sends. Removals MoEngage refuses (a
        workspace without them answers 400) never hold back the additions: those go, then
        the cohort fails naming the refusal; the next run retries the removals."""
        assert self.client is not None
        self.checkpoints = Checkpoints(
            self.state, self.spec, self.key, self.run_id, self.held, full_refresh
        )
        self.progress.cohort_started(self.result)
        refused: RequestRejected | None = None
        if self.mirror and self.result.planned_remove:
            try:
                self.client.send_all(self._bodies(REMOVE), removes, self._checkpoint(REMOVE))
            except RequestRejected as exc:
                refused = exc
        bodies = self._add_bodies(full_refresh)
        self.client.send_all(bodies, adds, self._checkpoint(ADD))
        self._count_too_long()
        if refused is not None:
            left = self.result.planned_remove - removes.uids_accepted
            raise CohortError(
                f"model '{self.spec.model}': MoEngage refused the removals (HTTP "
                f"{refused.status}: {refused.detail}); "
                f"{left:,} members who left the model are still in the segment, the "
                "additions and re-sends were sent. Set meta.moengage.mode: add to stop "
                "removing, or have removals enabled for the workspace; the next run "
                "retries them"
            )

    def _count_too_long(self) -> None:
        """uids too long for any request (where no max_uid_length left them out in the
        warehouse) were left out of the bodies: each is counted as dropped, not to add, and
        named. A member who left but is too long to remove fails the cohort."""
        packer = self._packers.get(ADD)
        if packer is not None and packer.too_long:
            r, count = self.result, packer.too_long
            r.dropped[TOO_LONG] += count
            r.uids_total = max(r.uids_total - count, 0)
            r.planned_add = max(r.planned_add - count, 0)
            self.progress.message(
                f"{self.spec.model}: {count:,} uids not sent: {_too_long(packer)}; set "
                "meta.moengage.max_uid_length to leave them out in the warehouse"
            )
        packer = self._packers.get(REMOVE)
        if packer is not None and packer.too_long:
            raise CohortError(
                f"model '{self.spec.model}': {packer.too_long:,} members who left the model "
                f"cannot be removed: {_too_long(packer)}; raise MOENGAGE_MAX_BODY_BYTES"
            )

    def _remember(self, adds: Tally) -> None:
        """Record the model, and the name and description once a request carried them."""
        sent = adds.accepted > 0
        if not sent and self.result.status != SYNCED:
            return
        self.result.renamed = sent and self._renaming
        old = self.record or CohortRecord(self.spec.model, None, None)
        self.state.save_cohort(
            self.spec,
            self.key,
            CohortRecord(
                model=self.spec.model,
                cohort_name=self.spec.cohort_name if sent else old.cohort_name,
                cohort_description=self.spec.description if sent else old.cohort_description,
            ),
        )

    def _checkpoint(self, action: str) -> Callable[[Body], None]:
        """What runs after each accepted body: record its uids, then show progress."""
        assert self.checkpoints is not None
        record = self.checkpoints.removed if action == REMOVE else self.checkpoints.added

        def accepted(body: Body) -> None:
            record(body)
            self.progress.sent(self.result, action, len(body.uids))

        return accepted

    def _add_bodies(self, full_refresh: bool) -> Iterable[Body]:
        """New uids, then the re-sends due (or a rename's few members) in the same bodies."""
        if full_refresh:
            return self._bodies(ADD, everyone=True)
        r = self.result
        if r.planned_resend:
            again: Change | None = Change.DUE
        elif self.rename and not r.planned_add:
            again = Change.RENAME
        else:
            again = None
        if not r.planned_add and again is None:
            return iter(())
        # The plan counted the snapshot's new uids: with none, their anti-join is not run.
        return self._bodies(ADD, resend=again, new=bool(r.planned_add))

    def _bodies(
        self,
        action: str,
        everyone: bool = False,
        resend: Change | None = None,
        new: bool = True,
    ) -> Iterable[Body]:
        packer = BodyPacker(
            action=ADD if action == ADD else REMOVE,
            partner=self.settings.partner,
            cohort_name=self.spec.cohort_name,
            cohort_id=self.spec.cohort_id,
            description=self.spec.description,
            max_bytes=self.settings.max_body_bytes,
        )
        self._packers[action] = packer
        kind = Change.LEFT if action == REMOVE else Change.EVERYONE if everyone else Change.NEW
        stream: Iterable[list[str]] = (
            self.state.stream(self.spec, self.key, kind, now=self.now) if new else iter(())
        )
        if resend is None:
            return packer.pack(stream)
        again = self.state.stream(self.spec, self.key, resend, now=self.now)
        return packer.pack(stream, resend=again)

    @property
    def _resent(self) -> int:
        """Members re-sent so far in this run."""
        return self.checkpoints.resent if self.checkpoints is not None else 0

    def _tally(self, adds: Tally, removes: Tally) -> None:
        r = self.result
        r.resent = self._resent
        r.added, r.removed = adds.uids_accepted - r.resent, removes.uids_accepted
        r.uids_sent = adds.uids_accepted + r.removed
        r.requests = adds.requests + removes.requests
        r.retries = adds.retries + removes.retries
        if r.status != SYNCED:
            r.uids_unsynced = max(r.planned_add - r.added, 0) + max(r.planned_remove - r.removed, 0)


def _too_long(packer: BodyPacker) -> str:
    """What a packer left out, for a message."""
    size, start = packer.too_long_example or (0, "")
    return (
        f"each is too long for one request of at most {packer.max_bytes:,} bytes "
        f"(the first takes {size:,} encoded bytes and starts {start!r})"
    )

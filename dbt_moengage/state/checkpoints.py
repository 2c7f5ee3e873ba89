"""Stage 6: record what MoEngage accepted, request by request, without slowing the sending.

Each accepted request's uids are written to the state before its sending slot is freed,
so at most the requests in flight can be sent again after a crash. Writes from several
sending threads that queue up behind one another go out as one statement (a group
commit, as databases do with their logs): a warehouse write costs mostly per statement,
so the state keeps pace with the API however many requests are in flight.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .locks import HeldLock
from .schema import StateKey

if TYPE_CHECKING:
    from ..cohorts import CohortSpec
    from ..packing import Body
    from .store import StateStore


@dataclass
class _Entry:
    uids: Sequence[str]
    done: bool = False
    error: BaseException | None = None


class GroupCommit:
    """Funnels `record(uids)` calls from many threads into as few `write` calls as it can.

    `record` returns once its uids are written (or raises what the write raised). The
    first caller to find no write under way writes everything waiting; callers that
    arrive meanwhile wait and are written together by the next one.
    """

    def __init__(self, write: Callable[[list[str]], None]) -> None:
        self._write = write
        self._changed = threading.Condition()
        self._waiting: list[_Entry] = []
        self._writing = False
        self.writes = 0

    def record(self, uids: Sequence[str]) -> None:
        """Write these uids, alone or with others waiting; return when they are written."""
        entry = _Entry(uids)
        with self._changed:
            self._waiting.append(entry)
            while self._writing and not entry.done:
                self._changed.wait()
            if entry.done:
                if entry.error is not None:
                    raise entry.error
                return
            group, self._waiting = self._waiting, []
            self._writing = True
        error: BaseException | None = None
        try:
            self._write([uid for member in group for uid in member.uids])
        except BaseException as exc:
            error = exc
        with self._changed:
            for member in group:
                member.done, member.error = True, error
            self.writes += 1
            self._writing = False
            self._changed.notify_all()
        if error is not None:
            raise error


class Checkpoints:
    """What one cohort's run records after each request MoEngage accepted.

    Each accepted body's uids are written to the state while the run still holds the
    cohort's lock (checked before every write), billed to the cohort (the writes run in
    the send threads, outside the run's own billing), and group-committed across threads:
    new members, re-sent members and removed members each through their own GroupCommit.
    `written` is the net change in members the writes made; `resent` the members re-sent.
    A full refresh's additions replace their uids' rows, so the state stays true even if
    the refresh stops halfway.
    """

    def __init__(
        self,
        state: StateStore,
        cohort: CohortSpec,
        key: StateKey,
        run_id: str,
        held: HeldLock,
        full_refresh: bool = False,
    ) -> None:
        self._state, self._cohort, self._key = state, cohort, key
        self._run_id, self._held, self._full_refresh = run_id, held, full_refresh
        self._counts = threading.Lock()
        self.written = 0
        self.resent = 0
        self._added = GroupCommit(self._write_added)
        self._resent = GroupCommit(self._write_resent)
        self._removed = GroupCommit(self._write_removed)

    def added(self, body: Body) -> None:
        """An accepted body of additions (new members, re-sends, or both)."""
        if body.resent < len(body.uids):
            self._added.record(body.new_uids)
        if body.resent:
            self._resent.record(body.resent_uids)
            with self._counts:
                self.resent += body.resent

    def removed(self, body: Body) -> None:
        """An accepted body of removals."""
        self._removed.record(body.uids)

    def _write_added(self, uids: list[str]) -> None:
        with self._owned():
            self._state.record_added(
                self._cohort, self._key, uids, self._run_id, replace=self._full_refresh
            )
        self._count(len(uids))

    def _write_resent(self, uids: list[str]) -> None:
        with self._owned():
            self._state.record_resent(self._cohort, self._key, uids, self._run_id)

    def _write_removed(self, uids: list[str]) -> None:
        with self._owned():
            self._state.record_removed(self._cohort, self._key, uids)
        self._count(-len(uids))

    @contextlib.contextmanager
    def _owned(self) -> Iterator[None]:
        """A write billed to the cohort, made only while the run holds its lock."""
        with self._state.engine.billing(self._cohort.unique_id):
            self._held.check()
            yield

    def _count(self, members: int) -> None:
        with self._counts:
            self.written += members

"""Stage 6: record what MoEngage accepted, request by request, without slowing the sending.

Each accepted request's uids are written to the state before its sending slot is freed,
so at most the requests in flight can be sent again after a crash. Writes from several
sending threads that queue up behind one another go out as one statement (a group
commit, as databases do with their logs): a warehouse write costs mostly per statement,
so the state keeps pace with the API however many requests are in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass


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

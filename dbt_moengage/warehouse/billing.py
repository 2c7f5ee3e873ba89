"""What the warehouse bills: the bytes each job reports (BigQuery), counted per account.

An account is a cohort's unique_id (or '' for the run): the jobs a thread runs inside
`billing(account)` count there, so the summary, the results and the history show what
each cohort cost. `BillsBytes` is the part of Engine that keeps the books.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from functools import cached_property
from typing import ClassVar


class BillsBytes:
    """The engine's books of bytes billed (see the module's docstring)."""

    # Whether this engine's jobs report the bytes they bill (BigQuery): then each cohort's
    # cost is counted (`billing`, `billed`) and shown in the summary, results and history.
    BILLS_BYTES: ClassVar[bool] = False

    @cached_property
    def _billed(self) -> dict[str, int]:
        """account -> bytes billed so far (accounts: a cohort's unique_id, or '' for the run)."""
        return {}

    @cached_property
    def _accounts(self) -> threading.local:
        return threading.local()

    @cached_property
    def _charges(self) -> threading.Lock:
        return threading.Lock()

    @contextlib.contextmanager
    def billing(self, account: str) -> Iterator[None]:
        """Jobs this thread runs in the block are billed to `account` (a cohort's unique_id);
        checkpoints made from send threads enter it too, so every job of a cohort counts."""
        before = getattr(self._accounts, "name", "")
        self._accounts.name = account
        try:
            yield
        finally:
            self._accounts.name = before

    def charge(self, nbytes: int) -> None:
        """Add one job's bytes billed to the calling thread's account."""
        account = getattr(self._accounts, "name", "")
        with self._charges:
            self._billed[account] = self._billed.get(account, 0) + int(nbytes)

    def billed(self, account: str) -> int | None:
        """The bytes billed to `account` so far; None where the engine reports no cost."""
        if not self.BILLS_BYTES:
            return None
        with self._charges:
            return self._billed.get(account, 0)

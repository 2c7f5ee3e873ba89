"""Group commit: checkpoints from several sending threads, each written before it returns."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from dbt_moengage.errors import WarehouseError
from dbt_moengage.state.checkpoints import GroupCommit


def test_one_caller_writes_its_own_uids_at_once() -> None:
    writes: list[list[str]] = []
    commits = GroupCommit(writes.append)
    commits.record(["a", "b"])
    commits.record(["c"])
    assert writes == [["a", "b"], ["c"]]


def test_callers_waiting_behind_a_write_are_written_together() -> None:
    first_started, release = threading.Event(), threading.Event()
    writes: list[list[str]] = []

    def write(uids: list[str]) -> None:
        writes.append(uids)
        if len(writes) == 1:
            first_started.set()
            assert release.wait(10)

    commits = GroupCommit(write)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(commits.record, ["u0"])
        assert first_started.wait(10)
        # Three more arrive while the first write is under way; none returns before its
        # uids are written.
        later = [pool.submit(commits.record, [f"u{i}", f"v{i}"]) for i in (1, 2, 3)]
        while len(commits._waiting) < 3:
            time.sleep(0.001)
        assert not any(f.done() for f in later)
        release.set()
        for future in [first, *later]:
            future.result(timeout=10)
    assert writes[0] == ["u0"]
    assert len(writes) == 2
    assert sorted(writes[1]) == ["u1", "u2", "u3", "v1", "v2", "v3"]
    assert commits.writes == 2


def test_a_failed_write_is_raised_to_every_caller_in_its_group() -> None:
    first_started, release = threading.Event(), threading.Event()
    calls = 0
    written: list[list[str]] = []

    def write(uids: list[str]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            first_started.set()
            assert release.wait(10)
        if calls == 2:
            raise WarehouseError("lost the connection")
        written.append(uids)

    commits = GroupCommit(write)
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(commits.record, ["ok"])
        assert first_started.wait(10)
        failing = [pool.submit(commits.record, [name]) for name in ("x", "y")]
        while len(commits._waiting) < 2:
            time.sleep(0.001)
        release.set()
        first.result(timeout=10)
        for future in failing:
            with pytest.raises(WarehouseError, match="lost the connection"):
                future.result(timeout=10)
    assert calls == 2
    # After a failure the next caller writes again (the stream decides whether to stop).
    commits.record(["z"])
    assert written == [["ok"], ["z"]]


def test_every_uid_is_written_exactly_once_under_contention() -> None:
    written: list[str] = []
    calls = 0
    lock = threading.Lock()

    def write(uids: list[str]) -> None:
        nonlocal calls
        with lock:
            written.extend(uids)
            calls += 1

    commits = GroupCommit(write)
    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(commits.record, [f"u{i}"]) for i in range(2_000)]:
            future.result(timeout=30)
    assert sorted(written) == sorted(f"u{i}" for i in range(2_000))
    # How many writes grouping saved depends on timing (the test above pins it down); the
    # count the run reports is the writes made.
    assert commits.writes == calls

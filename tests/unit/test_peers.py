"""state/peers.py: runners of one workspace share its quota through rows in the state."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbt_moengage.pacer import Pacer
from dbt_moengage.state import StateKey, StateStore
from dbt_moengage.state.peers import (
    FIRST_CLAIM,
    STALE_BEATS,
    Peer,
    QuotaShare,
    allowed,
    sharing_quota,
)
from dbt_moengage.warehouse.duckdb import DuckDBWarehouse

LIMIT = 300
SPAN = 60.25
STALE = 12.0
KEY = StateKey("http://127.0.0.1:1", "WS")


def running(run_id: str, share: int, in_window: int = 0, age: float = 1.0) -> Peer:
    return Peer(run_id, share, in_window, age)


def test_alone_a_runner_takes_the_whole_quota() -> None:
    assert allowed(LIMIT, "a", [], SPAN, STALE) == (LIMIT, 0)


def test_a_newcomer_waits_for_the_others_to_slow_down() -> None:
    # A runner holding the whole quota: nothing for the newcomer yet.
    assert allowed(LIMIT, "b", [running("a", LIMIT, LIMIT)], SPAN, STALE) == (0, 1)
    # Beside the newcomer, the first runner claims its half at once ...
    assert allowed(LIMIT, "a", [running("b", 0)], SPAN, STALE) == (150, 1)
    # ... and the newcomer gets what the first runner's window no longer holds.
    assert allowed(LIMIT, "b", [running("a", 150, 200)], SPAN, STALE) == (100, 1)
    assert allowed(LIMIT, "b", [running("a", 150, 90)], SPAN, STALE) == (150, 1)


def test_what_does_not_divide_goes_to_the_first_run_ids() -> None:
    ids = [f"run{i}" for i in range(7)]
    shares = [
        allowed(LIMIT, me, [running(other, 0) for other in ids if other != me], SPAN, STALE)[0]
        for me in ids
    ]
    assert shares == [43] * 6 + [42]
    assert sum(shares) == LIMIT


def test_an_ended_runner_keeps_its_window_until_it_ages_out() -> None:
    ended = Peer("a", 0, 120, age=5.0, ended_age=5.0)
    assert allowed(LIMIT, "b", [ended], SPAN, STALE) == (180, 0)
    aged = Peer("a", 0, 120, age=SPAN + 1, ended_age=SPAN + 1)
    assert allowed(LIMIT, "b", [aged], SPAN, STALE) == (LIMIT, 0)


def test_a_runner_that_stopped_beating_is_counted_until_its_starts_age_out() -> None:
    # Stale: not sending any more (it stops itself), but its claim may still be in use.
    stale = running("a", 150, 100, age=STALE + 1)
    assert allowed(LIMIT, "b", [stale], SPAN, STALE) == (150, 0)
    gone = running("a", 150, 100, age=STALE + SPAN + 1)
    assert allowed(LIMIT, "b", [gone], SPAN, STALE) == (LIMIT, 0)


def test_a_limit_smaller_than_the_runners_leaves_the_last_waiting() -> None:
    peers = [running("a", 0), running("b", 0)]
    assert allowed(2, "c", peers, SPAN, STALE) == (0, 2)
    assert allowed(2, "a", [running("b", 0), running("c", 0)], SPAN, STALE) == (1, 2)


# -- the protocol on a real state table ---------------------------------------------------


@pytest.fixture
def state(tmp_path: Path) -> Iterator[DuckDBWarehouse]:
    with DuckDBWarehouse(str(tmp_path / "state.duckdb")) as engine:
        assert StateStore(engine).prepare(create=True).ready
        yield engine


FIRST = round(LIMIT * FIRST_CLAIM)


class Waits(Exception):
    """A sender would wait at its pacer's limit."""


class Clock:
    """The pacer's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def waits(seconds: float) -> None:
    raise Waits


def runner(engine: DuckDBWarehouse, run_id: str) -> QuotaShare:
    """A runner's share, beaten by hand (no thread), with a pacer of the real window on a
    clock of its own."""
    return QuotaShare(engine, KEY, run_id, Pacer(LIMIT, clock=Clock(), sleep=waits), beat=2.0)


def fill(share: QuotaShare) -> None:
    """Start as many requests as the runner's pacer lets in; one more waits at its limit."""
    with contextlib.suppress(Waits):
        while True:
            share.pacer.acquire()


def age_out(share: QuotaShare) -> None:
    """The runner's starts age out of its window."""
    clock = share.pacer._clock
    assert isinstance(clock, Clock)
    clock.now += SPAN


def ramp(share: QuotaShare) -> list[int]:
    """Send at the claim and beat, until the claim stops rising; the claims it took."""
    claims = [share.pacer.limit]
    while True:
        fill(share)
        age_out(share)
        share.beat()
        if share.pacer.limit == claims[-1]:
            return claims
        claims.append(share.pacer.limit)


def test_runners_joining_and_leaving_never_exceed_the_quota(state: DuckDBWarehouse) -> None:
    """Random joins, beats, leaves and sends: the starts of all runners in the window never
    exceed the quota, whatever order they beat in."""
    rng = random.Random(7)
    live: dict[str, QuotaShare] = {}
    ended: list[QuotaShare] = []
    joined = 0
    for _ in range(400):
        roll = rng.random()
        if roll < 0.08 and len(live) < 6:
            joined += 1
            share = runner(state, f"run{joined:03}")
            share.pacer.set_limit(0)
            share.beat()
            live[share.run_id] = share
        elif roll < 0.12 and live:
            gone = live.pop(rng.choice(sorted(live)))
            gone.stop()
            ended.append(gone)
        elif live:
            share = live[rng.choice(sorted(live))]
            share.beat()
            if rng.random() < 0.7:
                fill(share)
        # Were every runner to fill its pacer now, the window would still hold the quota.
        could = sum(max(s.pacer.in_window(), s.pacer.limit) for s in live.values())
        assert could + sum(s.pacer.in_window() for s in ended) <= LIMIT
    assert joined >= 10


def test_shares_settle_at_the_fair_share(state: DuckDBWarehouse) -> None:
    first = runner(state, "a")
    first.pacer.set_limit(0)
    first.beat()
    # Alone, a runner claims a tenth of the quota, and twice its claim while it waits at it.
    assert first.pacer.limit == FIRST and first.others == 0
    assert ramp(first) == [FIRST, 2 * FIRST, 4 * FIRST, 8 * FIRST, LIMIT]
    fill(first)
    second = runner(state, "b")
    second.pacer.set_limit(0)
    second.beat()
    # The first runner's claim and window are the whole quota until it beats.
    assert second.pacer.limit == 0 and second.others == 1
    first.beat()
    assert first.pacer.limit == LIMIT // 2 and first.others == 1
    second.beat()
    assert second.pacer.limit == 0
    # Once the first's window drains, the second takes its half as it needs it.
    age_out(first)
    first.beat()
    # Idle now, the first claims its first claim again.
    assert first.pacer.limit == FIRST
    second.beat()
    assert second.pacer.limit == FIRST
    assert ramp(second)[-1] == LIMIT // 2
    # The first leaves with an empty window: the second may take it all.
    first.stop()
    second.beat()
    assert second.ceiling == LIMIT and second.others == 0
    assert ramp(second)[-1] == LIMIT


def test_a_runner_claims_what_it_uses(state: DuckDBWarehouse) -> None:
    """A run sending a few requests holds a few of the quota: were it killed, the next run
    would wait for those, not for the whole quota to age out."""
    small = runner(state, "a")
    small.pacer.set_limit(0)
    small.beat()
    for _ in range(FIRST // 2):
        small.pacer.acquire()
    small.beat()
    assert small.claim == FIRST and small.pacer.in_window() == FIRST // 2
    # It dies without leaving: its row keeps its claim until it is stale and ages out.
    nxt = runner(state, "b")
    nxt.pacer.set_limit(0)
    nxt.beat()
    assert nxt.ceiling == LIMIT // 2
    assert ramp(nxt)[-1] == LIMIT // 2
    # Alone once the dead run's row is stale: the whole quota less its claim.
    state.conn.execute(
        "update main.moengage_quota_peers set heartbeat_at = heartbeat_at - "
        f"to_seconds(cast({STALE_BEATS * 2.0 + 1} as double)) where run_id = 'a'"
    )
    nxt.beat()
    assert nxt.others == 0 and nxt.ceiling == LIMIT - FIRST


def test_a_row_not_beaten_for_long_is_forgotten(state: DuckDBWarehouse) -> None:
    first = runner(state, "a")
    first.pacer.set_limit(0)
    first.beat()
    ramp(first)
    second = runner(state, "b")
    second.pacer.set_limit(0)
    second.beat()
    assert second.pacer.limit == 0
    # The first runner died: its beat is older than STALE_BEATS beats and a window.
    late = STALE_BEATS * 2.0 + SPAN + 5
    state.conn.execute(
        "update main.moengage_quota_peers set heartbeat_at = heartbeat_at - "
        f"to_seconds(cast({late} as double)) where run_id = 'a'"
    )
    second.beat()
    assert second.ceiling == LIMIT and second.others == 0


def test_the_row_records_the_claim_and_the_window(state: DuckDBWarehouse) -> None:
    share = runner(state, "a")
    share.pacer.set_limit(0)
    share.beat()
    fill(share)
    share.beat()
    rows = state.conn.execute(
        "select run_id, share, in_window, ended_at is null from main.moengage_quota_peers"
    ).fetchall()
    assert rows == [("a", 2 * FIRST, FIRST, True)]
    share.stop()
    rows = state.conn.execute(
        "select share, in_window, ended_at is not null from main.moengage_quota_peers"
    ).fetchall()
    assert rows == [(0, FIRST, True)]


class SharingDuckDB(DuckDBWarehouse):
    """DuckDB's runners never overlap; here it stands in for an engine whose runners do."""

    QUOTA_BEAT_SECONDS = 2.0


def peer_rows(engine: DuckDBWarehouse) -> list[tuple[object, ...]]:
    return engine.conn.execute(
        "select run_id, share, ended_at is not null from main.moengage_quota_peers"
    ).fetchall()


def test_a_run_joins_before_its_first_request_and_leaves_at_the_end(tmp_path: Path) -> None:
    changes: list[tuple[int, int]] = []
    errors: list[str] = []
    with SharingDuckDB(str(tmp_path / "state.duckdb")) as engine:
        assert StateStore(engine).prepare(create=True).ready
        pacer = Pacer(LIMIT)
        with sharing_quota(engine, KEY, "a", pacer, lambda *c: changes.append(c), errors.append):
            # Nothing sent yet: no row, so a run with nothing to send writes none.
            assert peer_rows(engine) == []
            pacer.acquire()
            assert peer_rows(engine) == [("a", FIRST, False)]
        assert peer_rows(engine) == [("a", 0, True)]
        # A second run beside the ended one claims what it uses, from its first claim.
        pacer = Pacer(LIMIT)
        with sharing_quota(engine, KEY, "b", pacer, lambda *c: changes.append(c), errors.append):
            pacer.acquire()
            assert pacer.limit == FIRST
    assert errors == [] and changes == []


def test_a_share_that_cannot_be_taken_leaves_the_whole_quota(tmp_path: Path) -> None:
    errors: list[str] = []
    with SharingDuckDB(str(tmp_path / "state.duckdb")) as engine:
        # No state tables: the join fails, the run paces alone and says why.
        pacer = Pacer(LIMIT)
        with sharing_quota(engine, KEY, "a", pacer, lambda *c: None, errors.append):
            pacer.acquire()
            assert pacer.limit == LIMIT
    assert len(errors) == 1 and "moengage_quota_peers" in errors[0]


def test_duckdb_runners_share_nothing(state: DuckDBWarehouse) -> None:
    pacer = Pacer(LIMIT)
    with sharing_quota(state, KEY, "a", pacer, lambda *c: None, lambda e: None):
        pacer.acquire()
    assert peer_rows(state) == [] and pacer.limit == LIMIT

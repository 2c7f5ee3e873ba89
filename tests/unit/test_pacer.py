"""pacer: never more than `limit` request starts within any window."""

from __future__ import annotations

import bisect
import random
import threading
import time
from collections.abc import Sequence

import pytest

from dbt_moengage.pacer import Pacer


class FakeClock:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        # A pacer that sleeps for nothing (or goes back in time) would spin forever here.
        assert seconds > 0, f"sleep({seconds!r}) at {self.now!r}"
        assert len(self.sleeps) < 100_000, "the pacer keeps sleeping"
        self.sleeps.append(seconds)
        self.now += seconds


def fake_pacer(
    limit: int, window: float, margin: float = 0.0, start: float = 1000.0
) -> tuple[Pacer, FakeClock]:
    """A pacer on a fake clock."""
    clock = FakeClock(start)
    return Pacer(limit, window, margin=margin, clock=clock, sleep=clock.sleep), clock


def most_in_any_window(starts: Sequence[float], span: float) -> int:
    """The largest number of starts within any half-open interval [t, t + span)."""
    ordered = sorted(starts)
    return max(
        (bisect.bisect_left(ordered, t + span) - i for i, t in enumerate(ordered)), default=0
    )


def test_most_in_any_window_helper() -> None:
    assert most_in_any_window([], 1.0) == 0
    assert most_in_any_window([0.0, 0.5, 0.99, 1.0, 1.5], 1.0) == 3
    assert most_in_any_window([0.0, 1.0, 2.0], 1.0) == 1


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="limit must be positive"):
        Pacer(0)


def test_first_acquires_up_to_the_limit_do_not_wait() -> None:
    pacer, clock = fake_pacer(limit=3, window=10.0)
    assert [pacer.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert clock.sleeps == []
    assert pacer.in_window() == 3
    assert pacer.waited == 0.0


def test_the_next_acquire_waits_until_the_first_leaves_the_window() -> None:
    pacer, clock = fake_pacer(limit=3, window=10.0, margin=0.5)
    pacer.acquire()
    clock.now += 2.0
    pacer.acquire()
    pacer.acquire()
    waited = pacer.acquire()
    assert waited == pytest.approx(8.5)
    assert clock.now == pytest.approx(1010.5)
    assert pacer.waited == pytest.approx(8.5)
    # The second start, at 1002, is the next to leave: at 1012.5.
    assert pacer.acquire() == pytest.approx(2.0)
    assert clock.now == pytest.approx(1012.5)


def test_starts_that_left_the_window_free_their_place() -> None:
    pacer, clock = fake_pacer(limit=2, window=1.0)
    pacer.acquire()
    pacer.acquire()
    assert pacer.in_window() == 2
    clock.now += 1.0
    assert pacer.in_window() == 0
    assert pacer.acquire() == 0.0


@pytest.mark.parametrize(
    ("limit", "window", "margin", "start"),
    [
        (1, 1.0, 0.0, 0.0),
        (5, 60.0, 0.25, 1000.0),
        (300, 60.0, 0.25, 123_456.789),
        (7, 0.3, 0.1, 987_654.321),  # spans that floats cannot hold exactly
    ],
)
def test_never_more_than_limit_in_any_window(
    limit: int, window: float, margin: float, start: float
) -> None:
    pacer, clock = fake_pacer(limit, window, margin, start)
    rng = random.Random(limit)
    starts: list[float] = []
    for _ in range(limit * 5):
        pacer.acquire()
        starts.append(clock.now)
        clock.now += rng.choice([0.0, 0.0, rng.uniform(0, window / limit)])
    assert most_in_any_window(starts, window + margin) == limit
    # Busy but not idle: the whole run takes about four spans, not many more.
    assert starts[-1] - starts[0] <= 5 * (window + margin)


def test_random_clocks_never_spin() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        window = rng.uniform(0.01, 100)
        margin = rng.uniform(0, 1)
        pacer, clock = fake_pacer(rng.randint(1, 5), window, margin, rng.uniform(0, 1e6))
        starts: list[float] = []
        for _ in range(12):
            pacer.acquire()
            starts.append(clock.now)
            clock.now += rng.choice([0.0, rng.uniform(0, 0.5)])
        assert most_in_any_window(starts, window + margin) <= pacer.limit


def test_pause_delays_the_next_acquire() -> None:
    pacer, clock = fake_pacer(limit=100, window=60.0)
    pacer.acquire()
    pacer.pause(5.0)
    assert pacer.acquire() == pytest.approx(5.0)
    assert clock.now == pytest.approx(1005.0)
    assert pacer.acquire() == 0.0


def test_pause_keeps_the_longest_hold() -> None:
    pacer, clock = fake_pacer(limit=100, window=60.0)
    pacer.pause(10.0)
    pacer.pause(3.0)
    assert pacer.acquire() == pytest.approx(10.0)
    assert clock.now == pytest.approx(1010.0)


def test_pause_that_has_passed_does_not_delay() -> None:
    pacer, clock = fake_pacer(limit=100, window=60.0)
    pacer.pause(2.0)
    clock.now += 3.0
    assert pacer.acquire() == 0.0


def test_pause_and_a_full_window_both_hold() -> None:
    pacer, clock = fake_pacer(limit=2, window=10.0)
    pacer.acquire()
    pacer.acquire()
    pacer.pause(3.0)
    # First the pause (3 s), then the window (7 s more) before a third start.
    assert pacer.acquire() == pytest.approx(10.0)
    assert clock.now == pytest.approx(1010.0)


def test_real_threads_respect_the_limit() -> None:
    limit, window, margin = 5, 0.5, 0.1
    pacer = Pacer(limit, window, margin=margin)
    starts: list[float] = []
    lock = threading.Lock()
    remaining = iter(range(15))

    def worker() -> None:
        while True:
            with lock:
                if next(remaining, None) is None:
                    return
            pacer.acquire()
            now = time.monotonic()
            with lock:
                starts.append(now)

    began = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)
    assert len(starts) == 15
    # Recorded a moment after the pacer's own start time, so judged against the bare window.
    assert most_in_any_window(starts, window) <= limit
    # Three rounds of five: at least two full spans of waiting (a lower bound only: a busy
    # machine may be slower, never faster).
    elapsed = time.monotonic() - began
    assert elapsed >= 2 * (window + margin) * 0.9


def test_a_lowered_limit_holds_starts_until_the_window_drains() -> None:
    pacer, clock = fake_pacer(limit=4, window=10.0)
    for _ in range(4):
        pacer.acquire()
        clock.now += 1.0
    # Lowered to 2 (another runner joined): the next start waits for 3 of the 4 to age out.
    pacer.set_limit(2)
    pacer.acquire()
    assert clock.now >= 1000.0 + 2.0 + 10.0
    assert pacer.in_window() <= 2


def test_a_limit_of_zero_holds_every_start_until_raised() -> None:
    pacer, clock = fake_pacer(limit=3, window=10.0)
    pacer.set_limit(0)
    raised_at = clock.now + 30.0

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.now >= raised_at:
            pacer.set_limit(3)

    pacer._sleep = sleep
    pacer.acquire()
    # Waiting senders look again often: the raise is used at once, not a window later.
    assert raised_at <= clock.now <= raised_at + 0.25 + 1e-9
    assert max(clock.sleeps) <= 0.25


def test_a_negative_limit_is_refused() -> None:
    pacer, _ = fake_pacer(limit=3, window=10.0)
    with pytest.raises(ValueError, match="must not be negative"):
        pacer.set_limit(-1)


def test_a_sender_waiting_at_the_limit_says_so() -> None:
    """A shared limit is raised on demand (state/peers.py): the pacer calls `on_full` when a
    sender waits at its limit, and `take_full` tells a beat so once; a pause is no limit."""
    pacer, clock = fake_pacer(limit=2, window=10.0)
    calls: list[float] = []
    pacer.on_full = lambda: calls.append(clock.now)
    pacer.acquire()
    pacer.acquire()
    assert calls == [] and not pacer.take_full()
    pacer.acquire()
    assert calls and pacer.take_full() and not pacer.take_full()
    calls.clear()
    pacer.pause(5.0)
    pacer.set_limit(10)
    pacer.acquire()
    assert calls == [] and not pacer.take_full()

"""retry.Budget, the retry budget a destination's requests share in a run, on a fake clock:
it runs from a failing request's start, pauses while no request is under way, stops at an
acceptance, and once spent stays spent."""

from __future__ import annotations

from dbt_moengage.errors import RateLimited, TransientError
from dbt_moengage.retry import Budget, answer_error, policy


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_clock_runs_while_failing_requests_are_under_way() -> None:
    clock = Clock()
    budget = Budget(10.0, clock)
    started = budget.begin()
    clock.now += 3
    budget.failed(started)  # counted from the request's start
    assert budget.left() == 7.0
    budget.end()
    clock.now += 1_000  # a cohort being planned: no request, no time spent
    assert budget.left() == 7.0 and not budget.spent
    budget.begin()
    clock.now += 4
    assert budget.failing_for() == 7.0 and budget.left() == 3.0
    budget.accepted()  # the destination answers again: the whole budget is back
    assert budget.left() == 10.0
    clock.now += 20
    budget.end()
    assert budget.left() == 10.0


def test_the_budget_is_spent_once_requests_failed_past_it() -> None:
    clock = Clock()
    budget = Budget(10.0, clock)
    started = budget.begin()
    clock.now += 10
    budget.failed(started)
    assert budget.spent and budget.left() == 0.0


def test_no_wait_is_begun_that_would_end_past_the_budget_and_spent_stays_spent() -> None:
    clock = Clock()
    budget = Budget(10.0, clock)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds

    retrying = policy(
        max_attempts=100, backoff_initial=4.0, backoff_max=4.0, budget=budget, sleep=sleep
    )
    started = budget.begin()
    attempts = 0
    try:
        for attempt in retrying:
            with attempt:
                attempts += 1
                clock.now += 1
                budget.failed(started)
                raise TransientError("HTTP 503")
    except TransientError:
        pass
    # 1 s attempts and waits of 4 to 8 s: the next wait would end past 10 s.
    assert sum(waits) + attempts <= 10
    assert budget.spent
    budget.accepted()
    assert budget.spent  # a request still in flight answering cannot undo it


def test_one_table_of_answers_worth_another_attempt() -> None:
    """Every HTTP client (MoEngage, notifications, dbt Cloud) reads statuses through it."""
    limited = answer_error(429, "HTTP 429", "7")
    assert isinstance(limited, RateLimited) and limited.retry_after == 7.0
    for status in (408, 500, 502, 503, 599):
        error = answer_error(status, f"HTTP {status}", None)
        assert type(error) is TransientError and str(error) == f"HTTP {status}"
    for status in (200, 400, 401, 403, 404, 413, 415):
        assert answer_error(status, "", None) is None
    # A caller's own: dbt Cloud answers 404 before a run's artifacts are published.
    assert type(answer_error(404, "HTTP 404", None, also=(404,))) is TransientError

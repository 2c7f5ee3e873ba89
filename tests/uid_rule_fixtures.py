"""The dbt package's uid-rule fixtures (integration_tests/models/uid_rule/), checked the
same way on every engine that builds them: each generic test passes only when it fails
exactly its fixture's bad rows, and its query, built as a model, equals the seed of
expected failures (seeds/uid_rule/expected_uid_rule_failures.csv)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from typing import Any

from .conftest import INTEGRATION

FAILURES = INTEGRATION / "seeds" / "uid_rule" / "expected_uid_rule_failures.csv"
PROJECT = "moengage_integration_tests"


def expected_failures() -> dict[tuple[str, str], int]:
    """Failing rows of the seed, counted by fixture and reason."""
    with FAILURES.open(newline="") as file:
        rows = list(csv.DictReader(file))
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row["fixture"], row["failure_reason"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def check_fixtures(
    result: Callable[[str], dict[str, Any]], failures: Iterable[tuple[Any, ...]]
) -> dict[tuple[str, str], int]:
    """Assert every fixture's test and the two comparisons passed (`result(unique_id)` is
    the node's run result), and that `failures` (rows of fixture, failure_reason, count
    from the built uid_rule_failures model) equal the seed. Returns the seed's counts."""
    expected = expected_failures()
    for fixture in {fixture for fixture, _ in expected}:
        done = result(f"test.{PROJECT}.moengage_moengage_uid_{fixture}_uid")
        assert done["status"] == "pass", done["message"]
    for test in ("equal_rowset_uid_rule_failures", "assert_expected_failures_name_real_cases"):
        done = result(f"test.{PROJECT}.{test}")
        assert done["status"] == "pass", done["message"]
    assert {(f, r): int(n) for f, r, n in failures} == expected
    return expected

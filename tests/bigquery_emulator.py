"""The BigQuery emulator as pytest fixtures (dbt_moengage/testing/bigquery/ starts it).

def test_something(bigquery_emulator: BigQueryEmulator) -> None:
    dataset = bigquery_emulator.new_dataset("my_test")  # or the bigquery_dataset fixture
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Iterator

import pytest

from dbt_moengage.testing.bigquery import (
    TOKEN,
    BigQueryEmulator,
    BigQueryUnavailable,
    running_bigquery,
)

__all__ = ["TOKEN", "BigQueryEmulator", "bigquery_dataset", "bigquery_emulator"]


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[BigQueryEmulator]:
    """One emulator for the session; the tests that need it fail if it cannot start."""
    with contextlib.ExitStack() as stack:
        try:
            emulator = stack.enter_context(running_bigquery())
        except BigQueryUnavailable as error:
            pytest.fail(f"BigQuery emulator for the tests: {error}", pytrace=False)
        yield emulator


_dataset_numbers = itertools.count(1)


@pytest.fixture
def bigquery_dataset(bigquery_emulator: BigQueryEmulator, request: pytest.FixtureRequest) -> str:
    """A new empty dataset on the session's emulator, named after the test."""
    stem = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower()).strip("_")[:40]
    return bigquery_emulator.new_dataset(f"t{next(_dataset_numbers)}_{stem}")

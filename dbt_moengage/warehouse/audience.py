"""What an engine reports about a cohort's model: its uid column, the rows that cannot be
sent, the uids too long to send, and the errors that name what is wrong with the model."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from .. import uids
from ..cohorts import CohortSpec
from ..errors import WarehouseError

Column = TypeVar("Column")


@dataclass(frozen=True)
class AudienceStats:
    """Rows of the model's uid column that cannot be sent: null, blank or padded."""

    rows: int
    nulls: int
    empties: int
    padded: int = 0
    # Rows whose uid is longer than the cohort's max_uid_length.
    too_long: int = 0

    def dropped(self, distinct: int) -> dict[str, int]:
        """Dropped rows by reason, given the number of distinct uids to send."""
        duplicates = self.rows - self.nulls - self.empties - self.padded - self.too_long - distinct
        return {
            uids.NULL: self.nulls,
            uids.BLANK: self.empties,
            uids.PADDED: self.padded,
            uids.DUPLICATE: max(duplicates, 0),
            uids.TOO_LONG: self.too_long,
        }


@dataclass(frozen=True)
class LongUids:
    """The valid uids longer than a cohort's max_uid_length: distinct, their rows, and one."""

    distinct: int
    rows: int
    example: str

    def message(self, cohort: CohortSpec) -> str:
        return (
            f"model '{cohort.model}': {self.distinct:,} uids ({self.rows:,} rows) are longer than "
            f"meta.moengage.max_uid_length = {cohort.max_uid_length}, e.g. {self.example[:80]!r} "
            f"({len(self.example):,} characters): they are not sent, the rest of the cohort is"
        )


@dataclass(frozen=True)
class UidColumn:
    """The uid column as the warehouse spells it (case may differ from the config)."""

    name: str
    type: str


def find_uid_column(
    cohort: CohortSpec, columns: Iterable[Column], name: Callable[[Column], str]
) -> Column:
    """The model's column the cohort's uid_column names, whatever its case (the last one,
    should two differ only in case); `name` reads a column's name. missing_column if none."""
    listed = list(columns)
    column = {name(c).lower(): c for c in listed}.get(cohort.uid_column.lower())
    if column is None:
        raise missing_column(cohort, (name(c) for c in listed))
    return column


def read_failed(cohort: CohortSpec, reason: str) -> WarehouseError:
    """Reading a cohort's uids failed mid-way (a lost connection, a dropped table)."""
    return WarehouseError(
        f"model '{cohort.model}': reading uids from {cohort.relation_name} failed: {reason}"
    )


def unreadable(cohort: CohortSpec, reason: str) -> WarehouseError:
    """The model's columns cannot be read (the engine's `reason`, explained)."""
    return WarehouseError(f"model '{cohort.model}': cannot read {cohort.relation_name}: {reason}")


def missing_column(cohort: CohortSpec, columns: Iterable[str]) -> WarehouseError:
    """The configured uid column is not in the model."""
    return WarehouseError(
        f"model '{cohort.model}': meta.moengage.uid_column = {cohort.uid_column!r}: "
        f"no such column in {cohort.relation_name} (columns: {', '.join(columns)}); "
        "set uid_column to the column holding MoEngage's Unique User ID"
    )


def unusable_type(cohort: CohortSpec, kind: str, text: str = "varchar") -> WarehouseError:
    """The uid column's type would not cast to a uid cleanly (`text`: the warehouse's name
    of its text type, for the fix)."""
    return WarehouseError(
        f"model '{cohort.model}': meta.moengage.uid_column = {cohort.uid_column!r} has "
        f"type {kind}; uids must be text or whole numbers: cast it in the model "
        f"(e.g. cast(... as {text}))"
    )

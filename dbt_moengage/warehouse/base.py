"""Stage 3: the warehouse interface every engine implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

from ..cohorts import CohortSpec

DEFAULT_FETCH_ROWS = 50_000
# A uid made only of these is empty: it can match no MoEngage user.
BLANK = " \t\n\x0b\x0c\r"


@dataclass(frozen=True)
class AudienceStats:
    """What the model holds in its uid column, and what is dropped before syncing."""

    rows: int
    nulls: int
    empties: int
    distinct: int

    @property
    def duplicates(self) -> int:
        """Rows with a valid uid already seen in another row."""
        return self.rows - self.nulls - self.empties - self.distinct

    def dropped(self) -> dict[str, int]:
        """Dropped rows by reason, as reported to the user."""
        return {"null": self.nulls, "empty": self.empties, "duplicate": self.duplicates}


class Warehouse(ABC):
    """One connection to the user's warehouse, used from one thread."""

    engine: str = ""

    @abstractmethod
    def check_uid_column(self, cohort: CohortSpec) -> str:
        """Raise WarehouseError if the relation or uid column is missing or unusable.

        Returns the column's type as the engine names it.
        """

    @abstractmethod
    def audience_stats(self, cohort: CohortSpec) -> AudienceStats:
        """Count rows, nulls, empty uids and distinct uids of the cohort's model."""

    @abstractmethod
    def stream_uids(
        self, cohort: CohortSpec, batch_rows: int = DEFAULT_FETCH_ROWS
    ) -> Iterator[list[str]]:
        """Yield the model's distinct, non-null, non-empty uids as text, in batches."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def quote_identifier(name: str, quote: str = '"') -> str:
    """Quote a column name for SQL, doubling any quote inside it."""
    return quote + name.replace(quote, quote * 2) + quote

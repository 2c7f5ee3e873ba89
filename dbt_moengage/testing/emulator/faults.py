"""Faults to inject around applying a request, drawn per request from a seeded RNG."""

from __future__ import annotations

import random
from dataclasses import dataclass

_RATES = (
    "error_before_rate",
    "error_after_rate",
    "drop_before_rate",
    "drop_after_rate",
    "slow_rate",
)


@dataclass
class Faults:
    """Faults to inject; rates are probabilities per request, drawn from a seeded RNG."""

    error_before_rate: float = 0.0  # answer 503 WITHOUT applying the request
    error_after_rate: float = 0.0  # apply the request, THEN answer 500 (client sees failure)
    drop_before_rate: float = 0.0  # close the connection without answer, not applied
    drop_after_rate: float = 0.0  # apply, then close the connection without answering
    slow_rate: float = 0.0  # sleep slow_seconds before answering (after applying)
    slow_seconds: float = 0.0
    storm_429: int = 0  # answer 429 to the next N requests (not applied)
    retry_after: bool = True  # include a Retry-After header on 429s
    seed: int = 0

    def __post_init__(self) -> None:
        for name in _RATES:
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"Faults.{name} must be between 0 and 1, got {rate!r}")
        if self.slow_seconds < 0:
            raise ValueError(f"Faults.slow_seconds must be >= 0, got {self.slow_seconds!r}")
        if self.storm_429 < 0:
            raise ValueError(f"Faults.storm_429 must be >= 0, got {self.storm_429!r}")


class FaultDice:
    """The faults in force and their dice: a fresh RNG from the seed, a re-armed storm.

    Not thread-safe: the workspace draws under its lock, one draw per fault per request
    in a fixed order, so a run is reproducible by its seed.
    """

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)
        self._storm_left = faults.storm_429

    def storm(self) -> bool:
        """Whether this request falls in the 429 storm (and count it)."""
        if self._storm_left > 0:
            self._storm_left -= 1
            return True
        return False

    def draw(self, rate: float) -> bool:
        """True with probability `rate`."""
        return self._rng.random() < rate

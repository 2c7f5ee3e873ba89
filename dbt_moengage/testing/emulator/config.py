"""The workspace the emulator accepts, its limits and the faults to inject."""

from __future__ import annotations

from dataclasses import dataclass, field

from .contract import MAX_BODY_BYTES, RATE_LIMIT_PER_MIN, WINDOW_SECONDS
from .faults import Faults


@dataclass
class EmulatorConfig:
    """The workspace the emulator accepts, its limits and the faults to inject."""

    workspace_id: str
    api_key: str = field(repr=False)  # kept out of repr so a logged config leaks nothing
    rate_limit_per_min: int | None = RATE_LIMIT_PER_MIN  # None = unlimited
    max_body_bytes: int = MAX_BODY_BYTES  # 413 above it
    faults: Faults = field(default_factory=Faults)
    # The quota's window; tests shorten it to show a quota tighter than the client was told.
    window_seconds: float = WINDOW_SECONDS
    # The users MoEngage knows; None: every uid is a known user.
    known_users: frozenset[str] | None = None
    # A workspace without removals answers remove_members with a 400, as MoEngage did when
    # "user dissociation" was not supported.
    removals: bool = True

    def __post_init__(self) -> None:
        if not self.workspace_id:
            raise ValueError("EmulatorConfig.workspace_id must not be empty")
        if not self.api_key:
            raise ValueError("EmulatorConfig.api_key must not be empty")
        if self.rate_limit_per_min is not None and self.rate_limit_per_min < 1:
            raise ValueError(
                f"EmulatorConfig.rate_limit_per_min must be >= 1 or None, "
                f"got {self.rate_limit_per_min!r}"
            )
        if self.max_body_bytes < 1:
            raise ValueError(
                f"EmulatorConfig.max_body_bytes must be >= 1, got {self.max_body_bytes!r}"
            )

"""The mirror guard: a run that would empty its cohort, or remove more of it than
its max_remove_fraction, sends nothing and says why (--allow-large-removal lets it)."""

from __future__ import annotations

from ..cohorts import CohortSpec
from ..state import Delta


def removal_guard(spec: CohortSpec, removing: int, delta: Delta) -> str | None:
    """Why a mirror run removing `removing` members is refused; None if it may go."""
    if not removing:
        return None
    current = delta.current
    fraction = spec.max_remove_fraction
    if delta.distinct == 0:
        why = f"the model has no valid uid, so all {current:,} members would be removed"
    elif removing > fraction * current:
        why = (
            f"{removing:,} of {current:,} members ({removing / current:.0%}) would be "
            f"removed, more than max_remove_fraction = {fraction:g}"
        )
    else:
        return None
    return (
        f"model '{spec.model}': guarded, nothing sent: {why}. If the model is right, "
        "re-run with --allow-large-removal (or raise meta.moengage.max_remove_fraction); "
        "if not, fix the model first"
    )

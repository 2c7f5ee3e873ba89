"""The post's body: Slack incoming-webhook JSON (`text`), with the same facts as fields for
other receivers (`cohorts`)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..report import FAILED, GUARDED
from .news import RECOVERED, SIZE_CHANGED, CohortChange

# How the headline counts each event.
_VERBS = {SIZE_CHANGED: "changed size"}


def headline(found: list[CohortChange]) -> str:
    """`2 cohorts failed, 1 recovered`: the changes counted by what happened."""
    counts = Counter(change.event for change in found)
    parts: list[str] = []
    for event in (FAILED, GUARDED, RECOVERED, SIZE_CHANGED):
        if counts[event]:
            noun = "cohort" if counts[event] == 1 else "cohorts"
            verb = _VERBS.get(event, event)
            parts.append(
                f"{counts[event]} {noun} {verb}" if not parts else f"{counts[event]} {verb}"
            )
    return ", ".join(parts)


def message(found: list[CohortChange], run_id: str) -> dict[str, Any]:
    """The post's body: Slack's `text`, and `cohorts` for receivers that read fields."""
    lines = [f"*dbt-moengage*: {_slack(headline(found))} (run {_slack(run_id)})"]
    for change in found:
        was = f" (was {change.previous})" if change.previous else ""
        name = f" ({change.cohort_name})" if change.cohort_name else ""
        line = f"• {change.event}: model `{change.model}` -> cohort `{change.cohort_id}`{name}{was}"
        if change.detail:
            line += f": {change.detail}"
        lines.append(_slack(line))
        lines.append(_slack(f"    what to do: {change.what_to_do}"))
    return {
        "text": "\n".join(lines),
        "source": "dbt-moengage",
        "run_id": run_id,
        "cohorts": [change.fields() for change in found],
    }


def _slack(text: str) -> str:
    """Outside text as Slack shows it literally: `<`, `>` and `&` are its markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

"""What `dbt-moengage ls` prints: the cohorts found, as a table, or a few lines per cohort on
a console too narrow for it (as the sync summary and `status` do), so nothing is cut."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..cohorts import CohortSpec
from ..errors import CohortSpecError, UnsettledConflict
from .tables import field_lines, labelled, print_fitted

TITLE = "MoEngage cohorts"
COLUMNS = ("model", "cohort_id", "cohort_name", "mode", "uid_column", "destination")


def cohort_table(specs: Sequence[CohortSpec]) -> Table:
    """One row per cohort, every value in full (it needs a wide console)."""
    table = Table(title=TITLE, title_justify="left")
    for name in COLUMNS:
        table.add_column(name, no_wrap=True)
    for spec in specs:
        table.add_row(
            *(
                Text(value)
                for value in (
                    spec.model,
                    spec.cohort_id,
                    spec.cohort_name,
                    spec.mode,
                    spec.uid_column,
                    spec.destination or "default",
                )
            )
        )
    return table


def stacked_cohorts(specs: Sequence[CohortSpec], width: int = 80) -> list[Text]:
    """A head line and a few field lines per cohort, broken between fields only."""
    lines = [Text(TITLE, style="italic")]
    for spec in specs:
        lines.append(Text(f"{spec.model} -> {spec.cohort_id} ({spec.mode})"))
        fields = [
            f"name {spec.cohort_name!r}",
            f"uid_column {spec.uid_column}",
            f"dest {spec.destination or 'default'}",
        ]
        lines.extend(field_lines(fields, width))
    return lines


def print_cohorts(
    specs: Sequence[CohortSpec],
    console: Console,
    warnings: Sequence[str] = (),
    problems: Sequence[CohortSpecError] = (),
) -> None:
    """The table if it fits the console, else stacked lines; then warnings and problems,
    wrapped to the console. Outside text is never read as markup."""
    print_fitted(console, cohort_table(specs), partial(stacked_cohorts, specs))
    for warning in warnings:
        console.print(labelled("warning", "yellow", warning))
    for problem in problems:
        console.print(problem_label(problem) + Text(str(problem)))


def problem_label(problem: CohortSpecError) -> Text:
    """`invalid `, or `unsettled ` for a conflict only the sync state settles."""
    if isinstance(problem, UnsettledConflict):
        return Text("unsettled ", style="yellow")
    return Text("invalid ", style="red")

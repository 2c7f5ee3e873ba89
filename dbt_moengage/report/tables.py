"""Printing on a console of any width, as the sync summary, `ls` and `status` do: the table
when it fits, else a few short lines per row, broken between fields only (`added 1,234`),
so a name or a number is never cut; and lines led by a styled word (`error `, `note `).
Outside text is never read as markup."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


def print_fitted(console: Console, table: Table, stacked: Callable[[int], list[Text]]) -> None:
    """The table if it fits the console, else the lines `stacked(console.width)` gives."""
    # The table's natural width, unclamped: only if it fits is nothing squeezed or cut.
    natural = Measurement.get(console, console.options.update_width(1_000_000), table)
    if natural.maximum <= console.width:
        console.print(table)
    else:
        # Rich wraps these at spaces, so a name or a number moves whole to the next line.
        for line in stacked(console.width):
            console.print(line)


def field_lines(fields: list[str], width: int) -> list[Text]:
    """Indented lines of `fields`, broken between fields only, none over `width` unless a
    field alone is."""
    lines: list[Text] = []
    line = ""
    for piece in fields:
        if line and len(line) + 2 + len(piece) > width:
            lines.append(Text(line))
            line = ""
        line = f"{line}  {piece}" if line else f"  {piece}"
    lines.append(Text(line))
    return lines


def labelled(label: str, style: str, text: str) -> Text:
    """`<label> <text>`: only the label styled, the text as it is."""
    line = Text(f"{label} ", style=style)
    line.append(text)
    return line

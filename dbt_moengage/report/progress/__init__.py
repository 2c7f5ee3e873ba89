"""What a sync tells the person (or orchestrator) watching it, while it runs.

`Progress` (base.py) is the interface the pipeline calls; it prints nothing. Three
renderers: `RichProgress` draws a bar per cohort on a terminal and `LinePrinter` writes
plain lines for logs and pipes (console.py); `JsonProgress` writes one JSON object per
event for orchestrators (json_lines.py). Each measures what was sent, and the request
rate, with a `Meter` (meter.py). `make_progress` picks one for `--log-format`.
"""

from __future__ import annotations

from rich.console import Console

from .base import Progress
from .console import LinePrinter, RichProgress, result_text
from .json_lines import JsonProgress

LOG_FORMATS = ("auto", "text", "json")

__all__ = [
    "LOG_FORMATS",
    "JsonProgress",
    "LinePrinter",
    "Progress",
    "RichProgress",
    "make_progress",
    "result_text",
]


def make_progress(log_format: str, console: Console, rate_limit_per_min: int) -> Progress:
    """The renderer for `--log-format`: auto (bars on a terminal, else lines), text or json."""
    if log_format == "auto":
        if console.is_terminal:
            return RichProgress(console, rate_limit_per_min)
        return LinePrinter(console, rate_limit_per_min)
    if log_format == "text":
        return LinePrinter(console, rate_limit_per_min)
    if log_format == "json":
        return JsonProgress(console.file, rate_limit_per_min)
    raise ValueError(
        f"log format {log_format!r} is not one of {', '.join(LOG_FORMATS)}: "
        "use auto (bars on a terminal, lines otherwise), text or json"
    )

"""`dbt-moengage report`: one static HTML page of every cohort's sync history, written into
dbt's target folder.

The page holds everything it shows: plotly.js is inlined (plotly, the `[report]` extra),
so it opens from a file with no network, no CDN and no server. Per cohort: its members
after each run (a line), what each run added, removed and re-sent (bars), its failures and
guards with their messages, its last sync and status; where the warehouse bills its jobs
(BigQuery), the bytes each run billed and their total over the runs shown. Text read from
the state (model and cohort names, errors) is escaped everywhere: in the HTML, and in the
charts, whose labels plotly would otherwise read as its own small HTML. Nothing secret is
on the page: the command never reads the API key, and errors are stored redacted.
"""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path

import plotly
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from ..state.health import (
    FAILING,
    FAILING_STATUSES,
    NEVER_SYNCED,
    OK,
    STOPPED,
    CohortStatus,
    StatusReport,
)
from ..state.history import MemberPoint, RunRecord, members_over_time
from .results import byte_size
from .status import ago

REPORT_FILE = "moengage_report.html"
# An error is shown in full in the tables; in a chart's hover label, cut to this.
HOVER_ERROR_CHARS = 300
# Rows of the runs table under each chart (the chart shows every run read).
TABLE_RUNS = 20

COLORS = {
    "members": "#2563eb",
    "added": "#16a34a",
    "removed": "#dc2626",
    "resent": "#94a3b8",
    "failed": "#dc2626",
}


def write_report(report: StatusReport, path: Path) -> Path:
    """Write the page to `path` (its folder is created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(report), encoding="utf-8")
    return path


def render_report(report: StatusReport) -> str:
    """The whole page, as one string."""
    now = report.generated_at
    failing = sum(1 for c in report.cohorts if c.health in (FAILING, STOPPED))
    sections = "\n".join(_cohort_section(c, index, now) for index, c in enumerate(report.cohorts))
    notes = "".join(f"<li>{_e(note)}</li>" for note in [*report.problems, *report.notes])
    return _PAGE.format(
        css=_CSS,
        plotly_version=_e(plotly.__version__),
        plotlyjs=get_plotlyjs(),
        generated=_e(_clock(now)),
        schema=_e(report.state_schema),
        count=len(report.cohorts),
        failing=failing,
        overview=_overview(report),
        sections=sections or "<p>No cohort model is selected.</p>",
        notes=f'<section class="notes"><h2>Notes</h2><ul>{notes}</ul></section>' if notes else "",
    )


def _e(text: object) -> str:
    """Text escaped for HTML, quotes included (it may sit in an attribute)."""
    return html.escape(str(text), quote=True)


def _label(text: str) -> str:
    """Text escaped for a plotly label: plotly reads <b>, <a href>, <br> and entities in
    labels, and decodes &amp; &lt; &gt; back to what they stand for."""
    return html.escape(text, quote=False)


def _clock(when: datetime | None) -> str:
    return "-" if when is None else when.strftime("%Y-%m-%d %H:%M UTC")


def _badge(c: CohortStatus) -> str:
    word = c.last_run.status if c.last_run is not None else c.health
    kind = {OK: "ok", FAILING: "bad", STOPPED: "bad", NEVER_SYNCED: "none"}.get(c.health, "warn")
    return f'<span class="badge {kind}">{_e(word)}</span>'


def _billed(runs: list[RunRecord]) -> bool:
    """Whether a run recorded its bytes billed (BigQuery): only then are they shown."""
    return any(r.bytes_billed is not None for r in runs)


def _overview(report: StatusReport) -> str:
    now = report.generated_at
    billed = _billed([c.last_run for c in report.cohorts if c.last_run is not None])
    rows = []
    for index, c in enumerate(report.cohorts):
        run = c.last_run
        cost = byte_size(run.bytes_billed if run else None)
        rows.append(
            "<tr>"
            f'<td><a href="#cohort-{index}">{_e(c.spec.model)}</a></td>'
            f"<td>{_e(c.spec.cohort_id)}</td>"
            f"<td>{_e(c.spec.destination or 'default')}</td>"
            f"<td>{_e(c.spec.mode)}</td>"
            f'<td class="num">{c.members:,}</td>'
            f"<td>{_badge(c)}</td>"
            f"<td>{_e(_clock(run.started_at) if run else 'never')}</td>"
            + (f'<td class="num">{_e(cost)}</td>' if billed else "")
            + f"<td>{_e(ago(c.last_success, now))}</td>"
            "</tr>"
        )
    return (
        '<table class="overview"><thead><tr><th>model</th><th>cohort id</th>'
        "<th>destination</th><th>mode</th><th>members</th><th>last run</th>"
        "<th>last run at</th>"
        + ("<th>last run billed</th>" if billed else "")
        + "<th>last success</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _cohort_section(c: CohortStatus, index: int, now: datetime) -> str:
    spec, run = c.spec, c.last_run
    facts = [
        f"name <q>{_e(spec.cohort_name)}</q>",
        f"destination {_e(spec.destination or 'default')}",
        f"mode {_e(spec.mode)}",
        f"members now <b>{c.members:,}</b>",
        "last run never"
        if run is None
        else f"last run {_e(_clock(run.started_at))} ({_e(ago(run.started_at, now))})",
        f"last success {_e(ago(c.last_success, now))}",
    ]
    if _billed(c.runs):
        total = sum(r.bytes_billed or 0 for r in c.runs)
        facts.append(f"billed <b>{_e(byte_size(total))}</b> over the last {len(c.runs)} run(s)")
    body = [
        f'<section class="cohort" id="cohort-{index}">',
        f"<h2>{_e(spec.model)} <span class=arrow>&rarr;</span> {_e(spec.cohort_id)} "
        f"{_badge(c)}</h2>",
        f'<p class="facts">{" &middot; ".join(facts)}</p>',
    ]
    if c.problem:
        body.append(f'<p class="problem">{_e(c.problem)}</p>')
    if c.runs:
        points = members_over_time(c.runs, c.members)
        body.append(_chart(c, points, f"chart-{index}"))
        if any(p.estimated for p in points):
            body.append(
                '<p class="hint">Open circles: counts worked back from each run\'s adds and '
                "removes (runs recorded before the state kept the count after each run).</p>"
            )
        body.append(_failures(c.runs))
        body.append(_runs_table(points))
    elif run is None and c.problem is None:
        body.append('<p class="empty">Never synced: no run is recorded for this cohort.</p>')
    body.append("</section>")
    return "\n".join(body)


def _hover(point: MemberPoint) -> str:
    run = point.run
    members = "unknown" if point.members is None else f"{point.members:,}"
    lines = [
        f"<b>{_label(run.status)}</b> {run.started_at:%Y-%m-%d %H:%M:%S} UTC",
        f"members {members}" + (" (estimated)" if point.estimated else ""),
        f"added {run.added:,} · removed {run.removed:,} · re-sent {run.resent:,}",
    ]
    if run.bytes_billed is not None:
        lines.append(f"billed {byte_size(run.bytes_billed)}")
    if run.full_refresh:
        lines.append("full refresh")
    if run.error:
        error = run.error[:HOVER_ERROR_CHARS] + ("…" if len(run.error) > HOVER_ERROR_CHARS else "")
        lines.append(_label(error))
    return "<br>".join(lines)


def _chart(c: CohortStatus, points: list[MemberPoint], div_id: str) -> str:
    """Members after each run over time, and each run's adds, removes and re-sends."""
    x = [p.run.started_at.isoformat() for p in points]
    hover = [_hover(p) for p in points]
    figure = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.62, 0.38],
        vertical_spacing=0.1,
        subplot_titles=("Members after each run", "Changes per run"),
    )
    figure.add_trace(
        go.Scatter(
            x=x,
            y=[p.members for p in points],
            name="members",
            mode="lines+markers",
            line={"color": COLORS["members"], "width": 2},
            marker={
                "size": 7,
                "symbol": ["circle-open" if p.estimated else "circle" for p in points],
            },
            hovertext=hover,
            hoverinfo="text",
        ),
        row=1,
        col=1,
    )
    failed = [p for p in points if p.run.status in FAILING_STATUSES]
    if failed:
        figure.add_trace(
            go.Scatter(
                x=[p.run.started_at.isoformat() for p in failed],
                y=[p.members if p.members is not None else 0 for p in failed],
                name="failed / guarded",
                mode="markers",
                marker={"color": COLORS["failed"], "size": 13, "symbol": "x"},
                hovertext=[_hover(p) for p in failed],
                hoverinfo="text",
            ),
            row=1,
            col=1,
        )
    for name, values in (
        ("added", [p.run.added for p in points]),
        ("removed", [p.run.removed for p in points]),
        ("resent", [p.run.resent for p in points]),
    ):
        figure.add_trace(
            go.Bar(
                x=x,
                y=values,
                name=name,
                marker={"color": COLORS[name]},
                hovertext=hover,
                hoverinfo="text",
            ),
            row=2,
            col=1,
        )
    figure.update_layout(
        height=460,
        margin={"l": 60, "r": 20, "t": 40, "b": 30},
        barmode="group",
        template="plotly_white",
        legend={"orientation": "h", "y": 1.12, "x": 0},
        hoverlabel={"align": "left"},
    )
    figure.update_yaxes(rangemode="tozero", row=1, col=1)
    # Whole seconds at most, whatever the zoom: runs are minutes or days apart.
    figure.update_xaxes(tickformatstops=_TICK_FORMATS)
    return figure.to_html(
        full_html=False,
        include_plotlyjs=False,
        include_mathjax=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )


# Tick labels by the distance between ticks (milliseconds).
_TICK_FORMATS = [
    {"dtickrange": [None, 60_000], "value": "%H:%M:%S<br>%b %d"},
    {"dtickrange": [60_000, 86_400_000], "value": "%H:%M<br>%b %d"},
    {"dtickrange": [86_400_000, None], "value": "%b %d<br>%Y"},
]


def _failures(runs: list[RunRecord]) -> str:
    failed = [r for r in runs if r.status in FAILING_STATUSES]
    if not failed:
        return f'<p class="ok">No failure or guard in the last {len(runs)} run(s).</p>'
    rows = "".join(
        f"<tr><td>{_e(_clock(r.started_at))}</td><td>{_e(r.status)}</td>"
        f'<td class="error">{_e(r.error or "no error recorded")}</td></tr>'
        for r in reversed(failed)
    )
    return (
        "<h3>Failures and guards</h3>"
        '<table class="failures"><thead><tr><th>run at</th><th>status</th><th>message</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def _runs_table(points: list[MemberPoint]) -> str:
    billed = _billed([p.run for p in points])
    rows = []
    for p in reversed(points[-TABLE_RUNS:]):
        r = p.run
        members = "?" if p.members is None else f"{p.members:,}" + ("*" if p.estimated else "")
        cost = f'<td class="num">{_e(byte_size(r.bytes_billed))}</td>' if billed else ""
        rows.append(
            f"<tr><td>{_e(_clock(r.started_at))}</td><td>{_e(r.status)}</td>"
            f'<td class="num">{r.added:,}</td><td class="num">{r.removed:,}</td>'
            f'<td class="num">{r.resent:,}</td><td class="num">{r.requests:,}</td>'
            f'<td class="num">{_e(members)}</td>{cost}</tr>'
        )
    return (
        f"<details><summary>Latest runs ({min(len(points), TABLE_RUNS)})</summary>"
        '<table class="runs"><thead><tr><th>run at</th><th>status</th><th>added</th>'
        "<th>removed</th><th>re-sent</th><th>requests</th><th>members after</th>"
        + ("<th>billed</th>" if billed else "")
        + f"</tr></thead><tbody>{''.join(rows)}</tbody></table></details>"
    )


_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #0f172a; margin: 0 auto; padding: 24px 32px; max-width: 1100px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 0 0 4px; }
h3 { font-size: 14px; margin: 12px 0 4px; }
.sub, .facts, .hint { color: #475569; margin: 0 0 8px; }
.hint { font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e2e8f0; }
th { font-weight: 600; color: #334155; background: #f8fafc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.error { font-family: ui-monospace, monospace; font-size: 12px; white-space: pre-wrap;
           word-break: break-word; }
section.cohort { border: 1px solid #e2e8f0; border-radius: 8px; padding: 14px 18px;
                 margin: 18px 0; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
         font-weight: 600; vertical-align: middle; }
.badge.ok { background: #dcfce7; color: #166534; }
.badge.bad { background: #fee2e2; color: #991b1b; }
.badge.warn { background: #fef9c3; color: #854d0e; }
.badge.none { background: #e2e8f0; color: #334155; }
.problem { color: #991b1b; }
.arrow { color: #94a3b8; }
summary { cursor: pointer; color: #334155; }
"""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MoEngage cohort sync report</title>
<style>{css}</style>
<!-- plotly.js {plotly_version}, inlined: the page needs no network. -->
<script type="text/javascript">{plotlyjs}</script>
</head>
<body>
<h1>MoEngage cohort sync report</h1>
<p class="sub">Generated {generated} from the sync state in schema <q>{schema}</q>:
{count} cohort(s), {failing} failing.</p>
{overview}
{sections}
{notes}
</body>
</html>
"""

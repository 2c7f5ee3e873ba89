"""The progress renderers, driven by a scripted sync on a fake clock."""

from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import fields
from datetime import datetime, timedelta

import pytest
from rich.console import Console

from dbt_moengage.report import DRY_RUN, FAILED, SYNCED, CohortResult
from dbt_moengage.report.progress import (
    JsonProgress,
    LinePrinter,
    Progress,
    RichProgress,
    make_progress,
)

LIMIT = 300
ADD, REMOVE = "add_members", "remove_members"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _no_forced_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    # A CI that forces colour must not turn the plain consoles of these tests into terminals.
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


def _result(model: str, planned_add: int, planned_remove: int = 0) -> CohortResult:
    return CohortResult(
        model=model,
        cohort_id=model,
        cohort_name=f".{model}",
        mode="mirror" if planned_remove else "add",
        uids_total=planned_add,
        planned_add=planned_add,
        planned_remove=planned_remove,
    )


def drive(progress: Progress, clock: FakeClock) -> tuple[CohortResult, CohortResult]:
    """A run: a problem, a cohort synced in 50 requests over 100 s, a cohort that fails."""
    progress.problem("bad_model: meta.moengage.cohort_name is required [cohort_name]")
    good = _result("high_value_users", planned_add=48_000, planned_remove=2_000)
    progress.cohort_started(good)
    for i in range(50):
        clock.now += 2.0
        progress.sent(good, REMOVE if i < 2 else ADD, 1_000)
    good.status, good.added, good.removed = SYNCED, 48_000, 2_000
    good.uids_sent, good.requests, good.seconds = 50_000, 50, 100.0
    progress.cohort_finished(good)

    bad = _result("churn_risk", planned_add=10_000)
    progress.cohort_started(bad)
    for _ in range(3):
        clock.now += 1.0
        progress.sent(bad, ADD, 1_000)
    bad.status, bad.added, bad.uids_sent, bad.requests = FAILED, 3_000, 3_000, 3
    bad.error = "MoEngage refused the request: HTTP 400 [bad payload]"
    progress.cohort_finished(bad)
    progress.message("done")
    return good, bad


def test_rich_progress_shows_bars_rate_and_end_status() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    clock = FakeClock()
    progress = RichProgress(console, LIMIT, clock=clock)
    try:
        drive(progress, clock)
    finally:
        progress.close()
    text = ANSI.sub("", out.getvalue())
    assert "high_value_users -> high_value_users" in text
    assert "50,000/50,000 uids" in text
    assert "50 requests" in text
    # The failing cohort's bar started while the first cohort's last minute of requests
    # counted: 30 of its 50 requests landed in the last 60 s.
    assert "30/300 req/min" in text
    assert "synced" in text
    assert "3,000/10,000 uids" in text
    assert "failed" in text
    assert "HTTP 400 [bad payload]" in text
    assert "[cohort_name]" in text
    assert "done" in text
    assert not progress.bars.live.is_started


def test_rich_progress_close_stops_the_display_after_an_error() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    clock = FakeClock()
    progress = RichProgress(console, LIMIT, clock=clock)
    with pytest.raises(RuntimeError), progress:
        progress.cohort_started(_result("high_value_users", 10))
        assert progress.bars.live.is_started
        raise RuntimeError("warehouse went away")
    assert not progress.bars.live.is_started
    progress.close()  # twice is fine


def test_rich_progress_in_a_non_interactive_console() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, force_interactive=False, width=120)
    clock = FakeClock()
    progress = RichProgress(console, LIMIT, clock=clock)
    drive(progress, clock)
    progress.close()
    text = ANSI.sub("", out.getvalue())
    assert "50,000/50,000 uids" in text
    assert "synced" in text
    assert "failed" in text


def test_line_printer_throttles_progress_lines_by_the_clock() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200)
    clock = FakeClock()
    drive(LinePrinter(console, LIMIT, interval=10.0, clock=clock), clock)
    lines = out.getvalue().splitlines()
    progress_lines = [line for line in lines if "req/min" in line]
    # 100 s of sending at one request per 2 s: a line per 10 s, none for the last request
    # (the result line says it), none for the failing cohort's 3 s.
    assert len(progress_lines) == 9
    assert progress_lines[0] == (
        "high_value_users -> high_value_users: 5,000/50,000 uids, 5 requests, 5/300 req/min"
    )
    assert progress_lines[-1] == (
        "high_value_users -> high_value_users: 45,000/50,000 uids, 45 requests, 30/300 req/min"
    )
    assert lines[0] == (
        "invalid cohort bad_model: meta.moengage.cohort_name is required [cohort_name]"
    )
    assert any(line.startswith("synced high_value_users -> high_value_users") for line in lines)
    assert any("failed churn_risk: MoEngage refused" in line for line in lines)
    assert "\x1b" not in out.getvalue()


def test_line_printer_keeps_working_without_a_limit() -> None:
    out = io.StringIO()
    clock = FakeClock()
    printer = LinePrinter(Console(file=out, width=200), clock=clock)
    result = _result("m", 10_000)
    printer.cohort_started(result)
    clock.now += 11
    printer.sent(result, ADD, 1_000)
    assert out.getvalue() == "m -> m: 1,000/10,000 uids, 1 request, 1 req/min\n"


def test_json_progress_emits_documented_events_throttled_with_a_final_progress() -> None:
    out = io.StringIO()
    clock = FakeClock()
    good, _ = drive(JsonProgress(out, LIMIT, interval=10.0, clock=clock), clock)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "problem"
    assert names[1] == "cohort_started"
    assert names[-1] == "message"
    assert set(names) == {"problem", "cohort_started", "progress", "cohort_finished", "message"}
    for event in events:
        ts = datetime.fromisoformat(event["ts"])
        assert ts.utcoffset() == timedelta(0)

    started = events[1]
    assert started["model"] == "high_value_users"
    assert (started["planned_add"], started["planned_remove"]) == (48_000, 2_000)
    assert started["mode"] == "mirror"

    good_progress = [e for e in events if e["event"] == "progress" and e["model"] == good.model]
    # One per 10 s over 100 s, the last one on the cohort's last request.
    assert len(good_progress) == 10
    last = good_progress[-1]
    assert (last["uids_sent"], last["added"], last["removed"]) == (50_000, 48_000, 2_000)
    assert last["requests"] == 50
    assert last["rate_per_min"] == 30
    assert last["rate_limit_per_min"] == LIMIT

    # The failing cohort sent for 3 s: no progress event, but its end says why.
    finished = [e for e in events if e["event"] == "cohort_finished"]
    assert [(e["model"], e["status"]) for e in finished] == [
        ("high_value_users", SYNCED),
        ("churn_risk", FAILED),
    ]
    assert finished[1]["error"].startswith("MoEngage refused the request")
    assert (finished[1]["added"], finished[1]["requests"]) == (3_000, 3)

    allowed = {f.name for f in fields(CohortResult)} | {
        "event",
        "ts",
        "text",
        "rate_per_min",
        "rate_limit_per_min",
    }
    for event in events:
        assert set(event) <= allowed


def test_json_progress_reports_a_small_cohort_once_at_its_end() -> None:
    out = io.StringIO()
    clock = FakeClock()
    progress = JsonProgress(out, LIMIT, clock=clock)
    result = _result("tiny", 2_000)
    progress.cohort_started(result)
    progress.sent(result, ADD, 1_000)
    progress.sent(result, ADD, 1_000)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["cohort_started", "progress"]
    assert events[1]["uids_sent"] == 2_000


def test_make_progress_picks_the_renderer() -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True)
    plain = Console(file=io.StringIO())
    assert type(make_progress("auto", terminal, LIMIT)) is RichProgress
    assert type(make_progress("auto", plain, LIMIT)) is LinePrinter
    assert type(make_progress("text", terminal, LIMIT)) is LinePrinter
    assert type(make_progress("json", terminal, LIMIT)) is JsonProgress
    with pytest.raises(ValueError, match="'yaml'"):
        make_progress("yaml", plain, LIMIT)


def test_make_progress_json_writes_to_the_console_stream() -> None:
    out = io.StringIO()
    progress = make_progress("json", Console(file=out), LIMIT)
    progress.message("hello")
    assert json.loads(out.getvalue())["text"] == "hello"


# -- outside text is never markup -----------------------------------------------------------

# Closing tags that match nothing, style tags, uid-like brackets, an emoji code and a
# trailing backslash (a Windows path): each is text to show as is.
ODD_TEXT = ("[/x]", "[bold]", "[uid-1]", ":smile:", "C:\\dbt\\")


def _odd(prefix: str) -> str:
    return prefix + " " + " ".join(ODD_TEXT)


def _odd_results() -> list[CohortResult]:
    """A cohort of each end status whose model, cohort id and error are odd outside text."""
    results = []
    for status in (SYNCED, DRY_RUN, FAILED):
        result = _result(_odd(f"model_{status}"), planned_add=1_000)
        result.cohort_id, result.status = _odd(f"cohort_{status}"), status
        result.error = _odd("MoEngage said") if status == FAILED else None
        results.append(result)
    return results


def _drive_odd(progress: Progress, clock: FakeClock) -> list[CohortResult]:
    """Every event, each carrying odd outside text."""
    progress.message(_odd("model m [my_model] sends to https://example.com/[x]"))
    progress.problem(_odd("model 'bad': cohort_id"))
    results = _odd_results()
    for result in results:
        progress.cohort_started(result)
        clock.now += 20.0
        progress.sent(result, ADD, 500)
        progress.cohort_finished(result)
    return results


def _expected_odd_text(results: list[CohortResult]) -> list[str]:
    return [
        _odd("model m [my_model] sends to https://example.com/[x]"),
        "invalid cohort " + _odd("model 'bad': cohort_id"),
        *(f"{r.model} -> {r.cohort_id}" for r in results),
        f"failed {results[2].model}: {results[2].error}",
    ]


@pytest.mark.parametrize("renderer", [LinePrinter, RichProgress])
def test_outside_text_shows_verbatim_and_never_raises(renderer: type[Progress]) -> None:
    out = io.StringIO()
    console = Console(
        file=out, color_system=None, width=400, force_terminal=renderer is RichProgress
    )
    clock = FakeClock()
    progress = renderer(console, LIMIT, clock=clock)  # type: ignore[call-arg]
    with progress:
        results = _drive_odd(progress, clock)
    text = ANSI.sub("", out.getvalue())
    for expected in _expected_odd_text(results):
        assert expected in text
    if renderer is LinePrinter:
        assert f"dry run {results[1].model} -> {results[1].cohort_id}: would add" in text
        assert f"synced {results[0].model} -> {results[0].cohort_id}: added" in text
    assert "😄" not in text


def test_status_words_keep_their_colour_around_outside_text() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="standard", width=400)
    printer = LinePrinter(console, LIMIT, clock=FakeClock())
    synced, _, failed = _odd_results()
    printer.problem(_odd("bad"))
    printer.cohort_finished(synced)
    printer.cohort_finished(failed)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("\x1b[31minvalid cohort\x1b[0m ")
    assert lines[1].startswith("\x1b[32msynced\x1b[0m ")
    assert lines[2].startswith("\x1b[31mfailed\x1b[0m ")
    # The outside text itself carries no style: no escape code after the status word.
    for line in lines:
        assert "\x1b" not in line.split("\x1b[0m", 1)[1]
        assert " ".join(ODD_TEXT) in line


def test_json_progress_keeps_outside_text_as_is() -> None:
    out = io.StringIO()
    clock = FakeClock()
    results = _drive_odd(JsonProgress(out, LIMIT, clock=clock), clock)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert events[0]["text"] == _odd("model m [my_model] sends to https://example.com/[x]")
    assert events[1]["error"] == _odd("model 'bad': cohort_id")
    finished = [e for e in events if e["event"] == "cohort_finished"]
    assert [(e["model"], e["cohort_id"]) for e in finished] == [
        (r.model, r.cohort_id) for r in results
    ]
    assert finished[2]["error"] == results[2].error


def test_webhook_log_lines_keep_outside_text_as_is(caplog: pytest.LogCaptureFixture) -> None:
    from dbt_moengage.integrations.dbt_cloud.worker import LogProgress

    caplog.set_level(logging.INFO, logger="dbt_moengage.integrations.dbt_cloud.worker")
    progress = LogProgress("9301")
    synced, dry_run, failed = _odd_results()
    for result in (synced, dry_run, failed):
        progress.cohort_finished(result)
    progress.problem(_odd("bad"))
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0].startswith(f"dbt Cloud run 9301: synced {synced.model} -> ")
    assert f"{synced.model} -> {synced.cohort_id}: added" in messages[0]
    assert f"dry run {dry_run.model} -> {dry_run.cohort_id}: would add" in messages[1]
    assert messages[2] == f"dbt Cloud run 9301: failed {failed.model}: {failed.error}"
    assert messages[3] == "dbt Cloud run 9301: invalid cohort " + _odd("bad")


def test_a_warning_is_its_own_line_and_event() -> None:
    text = "notification to http://127.0.0.1:9 not sent ([x] HTTP 500, 3 attempts)"
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="standard", width=400)
    LinePrinter(console, LIMIT, clock=FakeClock()).warning(text)
    assert out.getvalue() == f"\x1b[33mwarning\x1b[0m {text}\n"
    out = io.StringIO()
    JsonProgress(out, LIMIT, clock=FakeClock()).warning(text)
    (event,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert (event["event"], event["text"]) == ("warning", text)
    # A renderer that knows no warnings shows it as a message.
    said: list[str] = []

    class Messages(Progress):
        def message(self, text: str) -> None:
            said.append(text)

    Messages().warning(text)
    assert said == [f"warning: {text}"]

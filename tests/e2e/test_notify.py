"""End to end: notifications on a change (issue 15 §2). The runner runs as a subprocess
against the emulator and posts to a webhook receiver on 127.0.0.1; a cohort fails by a body
over the emulator's limit (413) and recovers once the limit is back."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pytest

from dbt_moengage.notify import BUDGET_SECONDS
from dbt_moengage.testing.emulator import Emulator
from dbt_moengage.testing.emulator.contract import MAX_BODY_BYTES

from ..conftest import ROOT, BuiltProject, ok, run_cli, sync_args, sync_env
from ..http_receiver import serving
from ..slow_server import RawServer, answer
from .test_moengage_behaviour import edit_meta
from .test_secrets import everything_written

HIGH = "high_value_users"
SECRET = "T0001/B0002/e2e-notify-secret-9c1d"
SECRET_PATH = f"/services/{SECRET}"


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that records every post and answers `status`.

    A post is recorded before it is answered, so once the runner's process exited every
    post it made is here: no waiting needed.
    """

    status: int = 200
    port: int = 0
    posts: list[dict[str, Any]] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{SECRET_PATH}"

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """The posts answered with a 2xx: the messages a channel would show."""
        return [p for p, s in zip(self.posts, self.answered, strict=True) if s < 300]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()

    def answer(path: str, body: Any) -> tuple[int, bytes]:
        status = got.status if path == SECRET_PATH else 404
        got.posts.append(body)
        got.answered.append(status)
        return status, b"ok"

    with serving(answer) as got.port:
        yield got


def sync(
    project: BuiltProject, emulator: Emulator, url: str, *args: str
) -> subprocess.CompletedProcess[str]:
    env = sync_env(project, emulator, MOENGAGE_NOTIFY_URL=url)
    return run_cli(sync_args(project, "--select", HIGH, *args), env)


def query(project: BuiltProject, sql: str) -> list[Any]:
    with duckdb.connect(str(project.database), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def assert_secret_kept(project: BuiltProject, *runs: subprocess.CompletedProcess[str]) -> None:
    """The URL's secret is in no output, report or state row."""
    written = everything_written(project)
    for text in (written, *(done.stdout + done.stderr for done in runs)):
        assert SECRET not in text
        assert "e2e-notify-secret" not in text


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_failure_twice_then_a_recovery_posts_twice(
    project: BuiltProject, emulator: Emulator, receiver: Receiver
) -> None:
    emulator.config.max_body_bytes = 1_000  # every request of the cohort is a 413
    first = sync(project, emulator, receiver.url)
    assert first.returncode == 1, ok(first)
    again = sync(project, emulator, receiver.url)
    assert again.returncode == 1, ok(again)
    assert len(receiver.posts) == 1
    (failed,) = receiver.posts[0]["cohorts"]
    assert (failed["model"], failed["cohort_id"]) == (HIGH, HIGH)
    assert (failed["status"], failed["previous"], failed["event"]) == ("failed", None, "failed")
    assert "HTTP 413" in failed["error"] and failed["what_to_do"]
    assert receiver.posts[0]["text"].startswith("*dbt-moengage*: 1 cohort failed")
    assert f"notified http://127.0.0.1:{receiver.port}: 1 cohort failed" in first.stdout

    # A dry run sends nothing, so it never notifies.
    emulator.config.max_body_bytes = MAX_BODY_BYTES
    dry = sync(project, emulator, receiver.url, "--dry-run")
    assert dry.returncode == 0, ok(dry)
    assert len(receiver.posts) == 1

    back = sync(project, emulator, receiver.url)
    assert back.returncode == 0, ok(back)
    assert len(receiver.posts) == 2
    (recovered,) = receiver.posts[1]["cohorts"]
    assert (recovered["status"], recovered["previous"]) == ("synced", "failed")
    assert recovered["event"] == "recovered" and recovered["error"] is None
    assert receiver.accepted == receiver.posts

    # The last announced status lives in the state; members_after follows MoEngage.
    notified = query(
        project,
        "select cohort_id, model, last_notified_status from main.moengage_notifications",
    )
    assert notified == [(HIGH, HIGH, "synced")]
    after = query(
        project,
        "select status, members_after from main.moengage_sync_runs "
        f"where cohort_id = '{HIGH}' order by started_at",
    )
    assert after == [("failed", 0), ("failed", 0), ("synced", len(emulator.members(HIGH)))]
    assert_secret_kept(project, first, again, dry, back)


def test_a_guard_tripping_posts_once(
    project: BuiltProject, emulator: Emulator, receiver: Receiver
) -> None:
    edit_meta(project, HIGH, mode="mirror")
    first = sync(project, emulator, receiver.url)
    assert first.returncode == 0, ok(first)
    assert receiver.posts == []  # a first success is no news
    members = emulator.members(HIGH)

    # An upstream outage empties the model: the mirror guard refuses to empty the cohort.
    with duckdb.connect(str(project.database)) as conn:
        conn.execute(f"delete from main.{HIGH}")
    guarded = sync(project, emulator, receiver.url)
    assert guarded.returncode == 1, ok(guarded)
    again = sync(project, emulator, receiver.url)
    assert again.returncode == 1, ok(again)
    assert len(receiver.posts) == 1
    (change,) = receiver.posts[0]["cohorts"]
    # `previous` is how the cohort's previous run ended.
    assert (change["status"], change["previous"]) == ("guarded", "synced")
    assert "no valid uid" in change["error"]
    assert "--allow-large-removal" in change["what_to_do"]
    assert "1 cohort guarded" in receiver.posts[0]["text"]
    assert emulator.members(HIGH) == members  # nothing was removed
    assert_secret_kept(project, first, guarded, again)


@pytest.mark.parametrize("broken", ["http-500", "closed-port"])
def test_a_failed_post_is_a_warning_and_the_next_run_posts(
    project: BuiltProject, emulator: Emulator, receiver: Receiver, broken: str
) -> None:
    emulator.config.max_body_bytes = 1_000
    failed = sync(project, emulator, receiver.url)
    assert failed.returncode == 1, ok(failed)
    assert len(receiver.accepted) == 1

    # The cohort recovers while the receiver is down: the sync still exits 0.
    emulator.config.max_body_bytes = MAX_BODY_BYTES
    if broken == "http-500":
        receiver.status = 500
        url = receiver.url
    else:
        url = f"http://127.0.0.1:{closed_port()}{SECRET_PATH}"
    down = sync(project, emulator, url, "--log-format", "json")
    assert down.returncode == 0, ok(down)
    events = [json.loads(line) for line in down.stdout.splitlines()]
    (warning,) = [e for e in events if e["event"] == "warning"]
    cause = "HTTP 500, 3 attempts" if broken == "http-500" else "ConnectionError, 3 attempts"
    assert cause in warning["text"] and "the next run posts it again" in warning["text"]
    assert events[-1]["event"] == "summary" and events[-1]["exit_code"] == 0
    # Kept in the run's report too, for whoever reads the results file rather than the log.
    written = json.loads((project.target_dir / "moengage_sync_results.json").read_text())
    assert written["warnings"] == [warning["text"]]
    if broken == "http-500":
        assert receiver.answered[1:] == [500, 500, 500]
    assert len(receiver.accepted) == 1
    announced = "select last_notified_status from main.moengage_notifications"
    assert query(project, announced) == [("failed",)]

    # The receiver is back: the next run announces the recovery, in text output too.
    receiver.status = 200
    back = sync(project, emulator, receiver.url)
    assert back.returncode == 0, ok(back)
    assert [p["cohorts"][0]["event"] for p in receiver.accepted] == ["failed", "recovered"]
    assert query(project, announced) == [("synced",)]
    assert_secret_kept(project, failed, down, back)


def test_a_warning_in_text_output_and_an_unusable_url(
    project: BuiltProject, emulator: Emulator
) -> None:
    emulator.config.max_body_bytes = 1_000
    url = f"http://127.0.0.1:{closed_port()}{SECRET_PATH}"
    done = sync(project, emulator, url, "--log-format", "text")
    assert done.returncode == 1, ok(done)
    assert "warning notification to http://127.0.0.1:" in done.stdout
    # Plain http to another host would carry the secret in clear: refused, the sync goes on.
    insecure = sync(project, emulator, f"http://hooks.example.com{SECRET_PATH}")
    assert insecure.returncode == 1, ok(insecure)
    assert "MOENGAGE_NOTIFY_URL: plain http:// is only allowed to a loopback" in insecure.stdout
    assert "hooks.example.com" not in insecure.stdout + insecure.stderr
    written = json.loads((project.target_dir / "moengage_sync_results.json").read_text())
    (kept,) = written["warnings"]
    assert "plain http:// is only allowed to a loopback" in kept and SECRET not in kept
    assert query(project, "select count(*) from main.moengage_notifications") == [(0,)]
    assert_secret_kept(project, done, insecure)


# -- notifications tell the truth (issue 21 §2) ---------------------------------------------


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        ({"cohort_nmae": ".High Value Users"}, "unknown key"),
        ({"cohort_name": ".High|Value"}, "which MoEngage forbids"),
    ],
    ids=["misspelt-key", "bad-cohort-name"],
)
def test_a_live_cohort_that_becomes_invalid_posts_once_then_its_recovery(
    project: BuiltProject,
    emulator: Emulator,
    receiver: Receiver,
    broken: dict[str, str],
    problem: str,
) -> None:
    first = sync(project, emulator, receiver.url)
    assert first.returncode == 0, ok(first)
    assert receiver.posts == []

    edit_meta(project, HIGH, **broken)
    invalid = sync(project, emulator, receiver.url)
    assert invalid.returncode == 1, ok(invalid)
    again = sync(project, emulator, receiver.url)
    assert again.returncode == 1, ok(again)
    assert len(receiver.posts) == 1, receiver.posts
    (failed,) = receiver.posts[0]["cohorts"]
    assert (failed["model"], failed["cohort_id"], failed["event"]) == (HIGH, HIGH, "failed")
    assert failed["previous"] == "synced"
    assert problem in failed["error"]

    edit_meta(project, HIGH, **{**dict.fromkeys(broken), "cohort_name": ".High Value Users"})
    back = sync(project, emulator, receiver.url)
    assert back.returncode == 0, ok(back)
    (recovered,) = receiver.posts[1]["cohorts"]
    assert (recovered["cohort_id"], recovered["event"]) == (HIGH, "recovered")
    # The invalid runs left no run row: what it recovered from is the failure announced.
    assert recovered["previous"] == "failed"
    notified = "select cohort_id, last_notified_status from main.moengage_notifications"
    assert query(project, notified) == [(HIGH, "synced")]
    assert_secret_kept(project, first, invalid, again, back)


def test_a_misspelt_cohort_id_is_announced_under_the_id_it_last_synced(
    project: BuiltProject, emulator: Emulator, receiver: Receiver
) -> None:
    edit_meta(project, HIGH, cohort_id="vip_users")
    assert sync(project, emulator, receiver.url).returncode == 0
    # `cohortid`: the config no longer names its cohort_id; the state says which it was.
    edit_meta(project, HIGH, cohort_id=None, cohortid="vip_users")
    assert sync(project, emulator, receiver.url).returncode == 1
    (failed,) = receiver.posts[0]["cohorts"]
    assert (failed["cohort_id"], failed["event"], failed["previous"]) == (
        "vip_users",
        "failed",
        "synced",
    )
    assert "did you mean 'cohort_id'?" in failed["error"]
    edit_meta(project, HIGH, cohort_id="vip_users", cohortid=None)
    assert sync(project, emulator, receiver.url).returncode == 0
    (recovered,) = receiver.posts[1]["cohorts"]
    assert (recovered["cohort_id"], recovered["event"]) == ("vip_users", "recovered")


def grow_or_shrink(
    project: BuiltProject, add: int = 0, keep: int | None = None, tag: str = "a"
) -> None:
    """Add `add` new users to the model's table, or keep its first `keep` rows."""
    with duckdb.connect(str(project.database)) as conn:
        if add:
            conn.executemany(
                f"insert into main.{HIGH} (uid) values (?)",
                [[f"surge-{tag}-{i:05d}"] for i in range(add)],
            )
        if keep is not None:
            conn.execute(
                f"delete from main.{HIGH} where uid not in "
                f"(select uid from main.{HIGH} order by uid limit {keep})"
            )


def test_a_model_whose_size_jumps_posts_size_changed_up_and_down(
    project: BuiltProject, emulator: Emulator, receiver: Receiver
) -> None:
    usual = len(project.expected_members(HIGH))
    assert sync(project, emulator, receiver.url).returncode == 0
    # The same model again, and a small change: nothing to say.
    grow_or_shrink(project, add=usual // 10)
    assert sync(project, emulator, receiver.url).returncode == 0
    assert receiver.posts == []
    grow_or_shrink(project, keep=usual)

    # A join gone wrong: ten times the audience, added (add mode sends it all).
    grow_or_shrink(project, add=9 * usual, tag="b")
    surge = sync(project, emulator, receiver.url)
    assert surge.returncode == 0, ok(surge)
    (up,) = receiver.posts[0]["cohorts"]
    assert (up["event"], up["status"], up["previous"]) == ("size_changed", "synced", "synced")
    assert (up["uids_before"], up["uids_now"]) == (usual + usual // 10, 10 * usual)
    assert "changed size" in receiver.posts[0]["text"]
    assert "alert_change_fraction = 0.5" in receiver.posts[0]["text"]
    assert "before a campaign uses the audience" in up["what_to_do"]

    # Back to the usual size (-90%), under a fraction of 0.95 set for it: no news.
    edit_meta(project, HIGH, alert_change_fraction=0.95)
    grow_or_shrink(project, keep=usual)
    assert sync(project, emulator, receiver.url).returncode == 0
    assert len(receiver.posts) == 1

    # Down to a tenth, with the default fraction: news in add mode too, though nobody
    # leaves the segment.
    edit_meta(project, HIGH, alert_change_fraction=None)
    grow_or_shrink(project, keep=usual // 10)
    assert sync(project, emulator, receiver.url).returncode == 0
    (down,) = receiver.posts[1]["cohorts"]
    assert (down["event"], down["uids_before"], down["uids_now"]) == (
        "size_changed",
        usual,
        usual // 10,
    )
    assert "(-90%)" in receiver.posts[1]["text"]
    # A size change is news each time it happens, never a status to remember.
    assert query(project, "select count(*) from main.moengage_notifications") == [(0,)]


# -- one URL rule (issue "Hardening, round three", item 11) ----------------------------------


def test_a_url_whose_host_depends_on_the_parser_is_refused_before_any_post(
    project: BuiltProject, emulator: Emulator, receiver: Receiver
) -> None:
    emulator.config.max_body_bytes = 1_000  # a failure: news to announce
    # urlsplit sees host 127.0.0.1; requests would connect to 127.1 (this machine) at the
    # receiver's port, carrying the secret path there.
    crafted = f"http://127.1:{receiver.port}\\@127.0.0.1{SECRET_PATH}"
    done = sync(project, emulator, crafted, "--log-format", "json")
    assert done.returncode == 1, ok(done)
    assert receiver.posts == []  # nothing reached the receiver
    events = [json.loads(line) for line in done.stdout.splitlines()]
    (warning,) = [e for e in events if e["event"] == "warning"]
    assert "MOENGAGE_NOTIFY_URL holds a backslash" in warning["text"]
    assert "no notification sent" in warning["text"]
    assert "notified" not in done.stdout
    assert query(project, "select count(*) from main.moengage_notifications") == [(0,)]
    assert_secret_kept(project, done)


# -- a receiver that trickles its answer (issue "Hardening, round three", item 1) -------------


def start_posting_sync(
    project: BuiltProject, emulator: Emulator, server: RawServer
) -> tuple[subprocess.Popen[str], float]:
    """A sync with a failure to announce, as a subprocess; once its post reached `server`
    (which trickles its answer a byte a second), the process and when the post came."""
    emulator.config.max_body_bytes = 1_000  # a failure: news to announce
    env = sync_env(project, emulator, MOENGAGE_NOTIFY_URL=server.url + SECRET_PATH)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbt_moengage", *sync_args(project)],
        cwd=ROOT,
        env={**env, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not server.received():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "no notification posted"
        time.sleep(0.05)
    return proc, time.monotonic()


def test_a_receiver_that_trickles_holds_the_run_no_longer_than_the_posts_deadline(
    project: BuiltProject, emulator: Emulator
) -> None:
    with RawServer(answer("200 OK"), gap=1.0) as server:
        proc, posted = start_posting_sync(project, emulator, server)
        output = proc.communicate(timeout=120)[0]
        held = time.monotonic() - posted
    print(f"a trickling receiver held the run {held:.2f} s")
    assert held < BUDGET_SECONDS + 3, output
    assert proc.returncode == 1, output  # the cohorts failed; the post is only a warning
    written = json.loads((project.target_dir / "moengage_sync_results.json").read_text())
    (warning,) = written["warnings"]
    assert f"not sent (no complete answer within {BUDGET_SECONDS:g} s, 1 attempt)" in warning
    assert query(project, "select count(*) from main.moengage_notifications") == [(0,)]
    assert SECRET not in output + warning


def test_a_sigterm_during_the_post_ends_it_at_once(
    project: BuiltProject, emulator: Emulator
) -> None:
    with RawServer(answer("200 OK"), gap=1.0) as server:
        proc, _ = start_posting_sync(project, emulator, server)
        time.sleep(1)  # the post is under way, its answer trickling
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        output = proc.communicate(timeout=60)[0]
        took = time.monotonic() - signalled
        assert len(server.received()) == 1  # not tried again
    print(f"SIGTERM during the post: exited {took:.2f} s after the signal")
    assert proc.returncode == 143, output
    assert took < 5, output
    written = json.loads((project.target_dir / "moengage_sync_results.json").read_text())
    assert written["exit_code"] == 143 and written["interrupted_by"] == signal.SIGTERM
    (warning,) = written["warnings"]
    assert "not sent: the run was interrupted; the next run posts it again" in warning
    assert query(project, "select count(*) from main.moengage_notifications") == [(0,)]

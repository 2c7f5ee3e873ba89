"""End to end through a misbehaving server on 127.0.0.1: what a proxy or a broken MoEngage
answers reaches the user as a clear, safe report, never as delivery, markup or a secret."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import duckdb
import pytest

from ..conftest import API_KEY, WORKSPACE, BuiltProject, run_cli, sync_args

BASIC = base64.b64encode(f"{WORKSPACE}:{API_KEY}".encode()).decode()


class Misbehaving(ThreadingHTTPServer):
    """Answers every POST with `status`, `content_type` and a body built from the request."""

    daemon_threads = True

    def __init__(self, status: int, content_type: str, body: str) -> None:
        self.status, self.content_type, self.body = status, content_type, body
        self.posts = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        server: Misbehaving = self.server  # type: ignore[assignment]
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with server.lock:
            server.posts += 1
        # The body may echo what the request carried, as careless proxies and APIs do.
        body = server.body.format(authorization=self.headers.get("Authorization", "")).encode()
        self.send_response(server.status)
        self.send_header("Content-Type", server.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[Misbehaving] = []

    def start(status: int, content_type: str, body: str) -> Misbehaving:
        server = Misbehaving(status, content_type, body)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def sync_against(project: BuiltProject, server: Misbehaving, *args: str) -> Any:
    env = {
        **project.env,
        "MOENGAGE_WORKSPACE_ID": WORKSPACE,
        "MOENGAGE_API_KEY": API_KEY,
        "MOENGAGE_BASE_URL": server.url,
        "MOENGAGE_RETRY_INITIAL_SECONDS": "0.01",
    }
    return run_cli(sync_args(project, "--select", "high_value_users", *args), env)


def state_rows(project: BuiltProject, table: str) -> list[Any]:
    with duckdb.connect(str(project.database), read_only=True) as conn:
        return conn.execute(f"select * from main.{table}").fetchall()


def test_an_echoed_authorization_and_markup_stay_out_of_everything(
    project: BuiltProject, serve: Any
) -> None:
    body = (
        '{{"status": "fail", "error": {{"message": "bad [/x] request [uid-1] '
        'with Authorization: {authorization}"}}}}'
    )
    server = serve(400, "application/json", body)
    done = sync_against(project, server)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "MarkupError" not in done.stderr
    output = done.stdout + done.stderr
    # Outside text is printed as it came: markup is never interpreted.
    assert "[/x]" in output and "[uid-1]" in output
    report = (project.target_dir / "moengage_sync_results.json").read_text()
    runs = json.dumps(state_rows(project, "moengage_sync_runs"), default=str)
    for where in (output, report, runs):
        assert API_KEY not in where and BASIC not in where
    assert "HTTP 400" in json.loads(report)["cohorts"][0]["error"]
    assert state_rows(project, "moengage_cohort_members") == []


def test_a_proxy_login_page_is_not_delivery(project: BuiltProject, serve: Any) -> None:
    server = serve(200, "text/html", "<html><body>Please sign in [here]</body></html>")
    done = sync_against(project, server)
    assert done.returncode == 1, done.stdout + done.stderr
    cohort = json.loads((project.target_dir / "moengage_sync_results.json").read_text())["cohorts"][
        0
    ]
    assert cohort["status"] == "failed" and cohort["added"] == 0
    assert cohort["uids_unsynced"] == cohort["planned_add"] > 0
    assert "text/html" in cohort["error"] and "Please sign in [here]" in cohort["error"]
    # Nothing recorded as sent: the next run against MoEngage sends everything.
    assert state_rows(project, "moengage_cohort_members") == []
    assert server.posts == 1


def test_a_redirect_stops_the_destination(project: BuiltProject, serve: Any) -> None:
    server = serve(302, "text/plain", "moved")
    done = sync_against(project, server)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "redirect" in done.stdout and "MOENGAGE_BASE_URL" in done.stdout
    assert server.posts == 1
    assert state_rows(project, "moengage_cohort_members") == []

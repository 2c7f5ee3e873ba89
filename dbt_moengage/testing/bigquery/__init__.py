"""A BigQuery emulator on 127.0.0.1: bqemulator 1.4.0, for the tests and the benchmark.

    with running_bigquery() as emulator:
        dataset = emulator.new_dataset("my_test")

The emulator runs in a venv of its own (`make bq-emulator` builds .venv-bqemulator in a
checkout; BQEMULATOR_PYTHON names another), started by launch.py on free ports and
stopped by its pid. dbt-bigquery and the runner reach it through a profile with
`method: oauth-secrets`, any token, and `api_endpoint` (profile_env).

It is not BigQuery: it reports no bytes billed, runs each job to its end before answering
(so nothing is left to cancel), never aborts concurrent DML, and has no collations. The
tests that need those drive the engine's seams (warehouse/bigquery.py and
warehouse/bigquery_jobs.py) instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
LAUNCHER = Path(__file__).with_name("launch.py")
HOST = "127.0.0.1"
PROJECT = "moengage-test"
# Any token: the emulator checks none; the runner must never print it.
TOKEN = "ya29.emulator-token-do-not-print"
START_SECONDS = 60.0


class BigQueryUnavailable(RuntimeError):
    """The emulator's venv is missing or the emulator did not start."""


def emulator_python() -> Path:
    """The emulator venv's python: BQEMULATOR_PYTHON, or .venv-bqemulator (`make test`)."""
    configured = os.environ.get("BQEMULATOR_PYTHON")
    python = Path(configured) if configured else ROOT / ".venv-bqemulator" / "bin" / "python"
    if not python.exists():
        raise BigQueryUnavailable(
            f"no BigQuery emulator venv at {python}: run `make bq-emulator` (make test does) "
            "or set BQEMULATOR_PYTHON to a python with bqemulator==1.4.0, duckdb>=1.5 and numpy"
        )
    return python


@dataclass(frozen=True)
class BigQueryEmulator:
    """A running emulator: its REST endpoint and default project."""

    port: int
    project: str
    pid: int

    @property
    def endpoint(self) -> str:
        """The REST endpoint, as a dbt-bigquery profile's `api_endpoint`."""
        return f"http://{HOST}:{self.port}"

    def client(self) -> Any:
        """A google-cloud-bigquery client on the emulator (anonymous credentials)."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=self.project,
            credentials=AnonymousCredentials(),
            location="US",
            client_options=ClientOptions(api_endpoint=self.endpoint),
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run one statement; its rows as tuples."""
        return [tuple(row.values()) for row in self.client().query(sql).result()]

    def new_dataset(self, name: str) -> str:
        """A new empty dataset."""
        self.query(f"create schema `{self.project}.{name}`")
        return name

    def profile_env(self, dataset: str) -> dict[str, str]:
        """The MOENGAGE_IT_BQ_* variables integration_tests/profiles.yml's bigquery target
        reads (and the runner, through the same profile)."""
        return {
            "MOENGAGE_IT_BQ_PROJECT": self.project,
            "MOENGAGE_IT_BQ_DATASET": dataset,
            "MOENGAGE_IT_BQ_ENDPOINT": self.endpoint,
            "MOENGAGE_IT_BQ_TOKEN": TOKEN,
        }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait_until_ready(
    emulator: BigQueryEmulator, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BigQueryUnavailable(f"the emulator exited ({process.returncode}): {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, emulator.port), 0.5):
            try:
                emulator.query("select 1")
                return
            except Exception:  # still starting: the REST server answers before DuckDB is up
                pass
        time.sleep(0.2)
    raise BigQueryUnavailable(f"the emulator did not answer in {START_SECONDS:g} s: {_tail(log)}")


def _tail(log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return text[-2000:]


@contextlib.contextmanager
def running_bigquery(project: str = PROJECT) -> Iterator[BigQueryEmulator]:
    """A fresh, in-memory emulator on free loopback ports, stopped by its pid on exit."""
    python = emulator_python()
    root = Path(tempfile.mkdtemp(prefix="moengage-bq-"))
    log = root / "emulator.log"
    rest, grpc = _free_port(), _free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(python),
                str(LAUNCHER),
                "start",
                "--rest-host",
                HOST,
                "--rest-port",
                str(rest),
                "--grpc-host",
                HOST,
                "--grpc-port",
                str(grpc),
                "--project",
                project,
                "--log-level",
                "warning",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
            start_new_session=True,
        )
    emulator = BigQueryEmulator(port=rest, project=project, pid=process.pid)
    try:
        _wait_until_ready(emulator, process, log)
        yield emulator
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)

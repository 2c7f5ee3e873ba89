"""A real PostgreSQL server on 127.0.0.1 for the tests, started once per session.

    def test_something(postgres_server: PostgresServer) -> None:
        dbname = postgres_server.new_database("my_test")  # or the postgres_database fixture
        with contextlib.closing(postgres_server.connect(dbname)) as conn, conn.cursor() as cur:
            cur.execute("select 1")

The server is the machine's own PostgreSQL (Debian package postgresql-15), run from a
fresh data folder in a temp directory on a free loopback port, with trust authentication
for the `postgres` superuser and fsync off: a throwaway, never a place for data to keep.
initdb and postgres refuse to run as root, so under root they run as the `postgres`
system user (runuser); under any other user, as that user. Missing binaries fail the
tests that ask for the server, loudly: a suite that skipped them would pass while
testing nothing on Postgres. The server is stopped and its folder removed when the session
ends, failed tests or not, and by a watchdog process when the test process is killed.

Registered for the whole suite by one import at the end of tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
SYSTEM_USER = "postgres"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
# Run the server's tools from a folder the postgres user may enter (the caller's may be /root).
TOOL_CWD = "/"
START_TIMEOUT_SECONDS = 30
# Settings for a throwaway test server: nothing here has to survive a crash.
SERVER_SETTINGS = {
    "listen_addresses": HOST,
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "timezone": "UTC",
    "max_connections": "50",
}
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresUnavailable(Exception):
    """The server could not be found, set up or started; the message says what to do."""


@dataclass(frozen=True)
class PostgresServer:
    """A running server: where it listens, who to connect as, and per-test databases."""

    host: str
    port: int
    user: str
    bindir: Path
    data_dir: Path
    socket_dir: Path

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq connection string for `dbname` (trust authentication: no password)."""
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def connect(self, dbname: str = "postgres", *, autocommit: bool = True) -> Any:
        """A new psycopg2 connection to `dbname`; the caller closes it."""
        conn = psycopg2.connect(self.dsn(dbname), connect_timeout=10)
        conn.autocommit = autocommit
        return conn

    def new_database(self, name: str, *, icu_locale: str | None = None) -> str:
        """Create database `name` empty, dropping one left with that name; returns the name.

        The server's default collation is libc's C (byte order). icu_locale (e.g. 'en-US')
        makes an ICU collation the database's default instead, as on most managed servers.
        """
        if not _DATABASE_NAME.match(name):
            raise ValueError(
                f"new_database: {name!r} is not a plain lower-case Postgres name"
                " (a-z, 0-9, _, at most 63 characters, not starting with a digit)"
            )
        create = f'create database "{name}"'
        if icu_locale is not None:
            create += " template template0 locale_provider icu icu_locale %s"
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f'drop database if exists "{name}" with (force)')
                cur.execute(create, (icu_locale,) if icu_locale is not None else None)
        finally:
            conn.close()
        return name

    def profile_env(self, dbname: str) -> dict[str, str]:
        """The variables integration_tests/profiles.yml's `postgres` target reads."""
        return {
            "MOENGAGE_IT_PG_HOST": self.host,
            "MOENGAGE_IT_PG_PORT": str(self.port),
            "MOENGAGE_IT_PG_USER": self.user,
            "MOENGAGE_IT_PG_DBNAME": dbname,
        }


def candidate_bindirs() -> list[Path]:
    """Where the binaries may be: Debian's 15, pg_config's, then any version, newest first."""
    candidates = [Path("/usr/lib/postgresql/15/bin")]
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            )
            if done.returncode == 0 and done.stdout.strip():
                candidates.append(Path(done.stdout.strip()))
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        reverse=True,
    )
    return list(dict.fromkeys(candidates))


def find_bindir(candidates: list[Path] | None = None) -> Path:
    """The folder holding initdb, pg_ctl and postgres; PostgresUnavailable says how to get them."""
    candidates = candidate_bindirs() if candidates is None else candidates
    for bindir in candidates:
        if all((bindir / name).is_file() for name in SERVER_BINARIES):
            return bindir
    looked = ", ".join(str(path) for path in candidates) or "(nowhere)"
    raise PostgresUnavailable(
        f"PostgreSQL server binaries ({', '.join(SERVER_BINARIES)}) not found in: {looked}."
        " The Postgres tests need a real server: install it with"
        " `apt-get install postgresql-15` (or Debian's `postgresql` package), then run the"
        " tests again."
    )


def _free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _as_server_user() -> list[str]:
    """The command prefix that runs a server binary as a user it accepts."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable(
            "the tests run as root, which initdb and postgres refuse, and runuser (util-linux)"
            " is missing to run them as the postgres user: run the tests as another user or"
            " `apt-get install util-linux`"
        )
    return [runuser, "-u", SYSTEM_USER, "--"]


def _server_owner() -> tuple[int, int]:
    """uid and gid that own the data folder: the postgres system user under root."""
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"the tests run as root and there is no {SYSTEM_USER!r} system user to run the"
            " server as; installing Debian's postgresql-15 package creates it"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _run(command: list[str], what: str) -> None:
    """Run a server tool, or PostgresUnavailable with its output."""
    done = subprocess.run(command, cwd=TOOL_CWD, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise PostgresUnavailable(
            f"{what} failed (exit {done.returncode}): {' '.join(command)}\n"
            f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


def _log_tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-3000:]
    except OSError:
        return "(no server log)"


def _wait_until_ready(server: PostgresServer, log: Path) -> None:
    """Return once the server answers a query; PostgresUnavailable after the timeout."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            conn = server.connect()
        except psycopg2.OperationalError as error:
            if time.monotonic() > deadline:
                raise PostgresUnavailable(
                    f"PostgreSQL on {HOST}:{server.port} did not accept connections within"
                    f" {START_TIMEOUT_SECONDS}s: {error}\n{_log_tail(log)}"
                ) from error
            time.sleep(0.05)
            continue
        try:
            with conn.cursor() as cur:
                cur.execute("select 1")
        finally:
            conn.close()
        return


def _start(bindir: Path, data_dir: Path, socket_dir: Path, log: Path) -> int:
    """Start the server on a free port with pg_ctl; returns the port."""
    prefix = _as_server_user()
    last_error: PostgresUnavailable | None = None
    # Another process may take the free port between the probe and the bind: try again.
    for _ in range(3):
        port = _free_port()
        options = " ".join(
            f"-c {key}={value}"
            for key, value in {
                **SERVER_SETTINGS,
                "port": str(port),
                "unix_socket_directories": str(socket_dir),
            }.items()
        )
        command = [
            *prefix,
            str(bindir / "pg_ctl"),
            "start",
            "--wait",
            f"--timeout={START_TIMEOUT_SECONDS}",
            "-D",
            str(data_dir),
            "-l",
            str(log),
            "-o",
            options,
        ]
        done = subprocess.run(
            command,
            cwd=TOOL_CWD,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_SECONDS + 30,
        )
        if done.returncode == 0:
            return port
        last_error = PostgresUnavailable(
            f"pg_ctl start failed (exit {done.returncode}) on port {port}:"
            f" {done.stdout[-1000:]}{done.stderr[-1000:]}\n{_log_tail(log)}"
        )
        if "could not bind" not in _log_tail(log):
            break
    assert last_error is not None
    raise last_error


def _stop(bindir: Path, data_dir: Path) -> None:
    """Stop the server (fast shutdown); if pg_ctl cannot, end the postmaster by its pid."""
    command = [*_as_server_user(), str(bindir / "pg_ctl"), "stop", "-m", "fast", "-D"]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            [*command, str(data_dir), "--wait", "--timeout=30"],
            cwd=TOOL_CWD,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode == 0:
            return
    pid_file = data_dir / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError, IndexError):
        os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGQUIT)


# Stops the server and removes its folder once the test process is gone, when it died
# without running its teardown (SIGTERM from a timeout, SIGKILL): a server left running
# would hold its port and folder until the machine restarts.
_WATCHDOG = """
parent=$1; data=$2; root=$3; shift 3
while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
"$@" stop -m immediate -D "$data" --wait --timeout=30
rm -rf "$root"
"""


def _watchdog(bindir: Path, data_dir: Path, root: Path) -> subprocess.Popen[bytes]:
    """A shell, in a session of its own, that cleans up after this process if it dies."""
    pg_ctl = [*_as_server_user(), str(bindir / "pg_ctl")]
    return subprocess.Popen(
        ["sh", "-c", _WATCHDOG, "watchdog", str(os.getpid()), str(data_dir), str(root), *pg_ctl],
        cwd=TOOL_CWD,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A fresh server in a temp folder, stopped and removed on exit whatever happened."""
    bindir = find_bindir()
    uid, gid = _server_owner()
    # Not under pytest's tmp_path: its folders are private to the test user (0700), and
    # the server runs as the postgres user, which must reach its folder.
    root = Path(tempfile.mkdtemp(prefix="moengage-pg-"))
    data_dir = root / "data"
    log = root / "server.log"
    started = False
    watchdog = _watchdog(bindir, data_dir, root)
    try:
        os.chown(root, uid, gid)
        _run(
            [
                *_as_server_user(),
                str(bindir / "initdb"),
                "-D",
                str(data_dir),
                "-A",
                "trust",
                "-U",
                SUPERUSER,
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ],
            "initdb",
        )
        port = _start(bindir, data_dir, root, log)
        started = True
        server = PostgresServer(
            host=HOST, port=port, user=SUPERUSER, bindir=bindir, data_dir=data_dir, socket_dir=root
        )
        _wait_until_ready(server, log)
        yield server
    finally:
        watchdog.kill()
        watchdog.wait()
        if started or (data_dir / "postmaster.pid").exists():
            _stop(bindir, data_dir)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; the tests that need it fail if it cannot start."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running_postgres())
        except PostgresUnavailable as error:
            pytest.fail(f"PostgreSQL for the tests: {error}", pytrace=False)
        yield server


_database_numbers = itertools.count(1)


@pytest.fixture
def postgres_database(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A new empty database on the session's server, named after the test."""
    stem = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower()).strip("_")[:40]
    return postgres_server.new_database(f"t{next(_database_numbers)}_{stem}")

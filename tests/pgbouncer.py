"""A real PgBouncer in transaction pooling mode in front of the test PostgreSQL server.

Most managed Postgres users connect through a transaction-pooling pooler (PgBouncer,
Supavisor): each transaction may run on another server connection, so anything a session
keeps between statements (advisory locks, temp tables, prepared statements, cursors
WITH HOLD) is lost or lands on a stranger's connection. The tests that must hold there
connect through this one, on a free port of 127.0.0.1.

It is Debian's `pgbouncer` package (.ci/run installs it); a missing binary fails the tests
that ask for it, loudly. PgBouncer refuses to run as root, so under root it runs as the
`postgres` system user, as the server does.
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
from dataclasses import replace
from pathlib import Path

import pytest

from .postgres_server import (
    HOST,
    TOOL_CWD,
    PostgresServer,
    _as_server_user,
    _free_port,
    _server_owner,
)

START_TIMEOUT_SECONDS = 20

CONFIG = """\
[databases]
* = host={host} port={port} user={user}

[pgbouncer]
listen_addr = {host}
listen_port = {listen}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 8
max_client_conn = 200
ignore_startup_parameters = extra_float_digits,options
server_reset_query =
logfile = {log}
"""


@contextlib.contextmanager
def running_pgbouncer(server: PostgresServer) -> Iterator[PostgresServer]:
    """PgBouncer in front of `server`; yields the server as reached through it."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        pytest.fail(
            "PgBouncer for the tests: no pgbouncer binary; `apt-get install pgbouncer` "
            "(.ci/run does)",
            pytrace=False,
        )
    root = Path(tempfile.mkdtemp(prefix="moengage-pgbouncer-"))
    uid, gid = _server_owner()
    os.chown(root, uid, gid)
    listen = _free_port()
    log = root / "pgbouncer.log"
    ini = root / "pgbouncer.ini"
    ini.write_text(
        CONFIG.format(host=HOST, port=server.port, user=server.user, listen=listen, log=log)
    )
    proc = subprocess.Popen(
        [*_as_server_user(), binary, str(ini)],
        cwd=TOOL_CWD,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            with socket.socket() as probe:
                if probe.connect_ex((HOST, listen)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                pytest.fail(f"PgBouncer did not start (exit {proc.poll()}): {text}")
            time.sleep(0.05)
        yield replace(server, port=listen)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pgbouncer(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """The session's PostgreSQL server, reached through PgBouncer in transaction mode."""
    with running_pgbouncer(postgres_server) as pooled:
        yield pooled

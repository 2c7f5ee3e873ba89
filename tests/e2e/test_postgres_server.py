"""The PostgreSQL test server (tests/postgres_server.py): it runs, answers and isolates tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import ROOT
from ..postgres_server import PostgresServer, PostgresUnavailable, find_bindir, running_postgres


def test_server_answers_a_query_on_loopback(postgres_server: PostgresServer) -> None:
    assert postgres_server.host == "127.0.0.1"
    conn = postgres_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select current_user, inet_server_addr()::text, inet_server_port(),"
                " current_setting('server_encoding'), current_setting('TimeZone'),"
                " current_setting('fsync'), version()"
            )
            user, address, port, encoding, timezone, fsync, version = cur.fetchone()
    finally:
        conn.close()
    assert (user, address, port) == (postgres_server.user, "127.0.0.1/32", postgres_server.port)
    assert (encoding, timezone, fsync) == ("UTF8", "UTC", "off")
    assert version.startswith("PostgreSQL ")
    # Only loopback: the socket folder is the server's own, not /var/run/postgresql.
    assert postgres_server.socket_dir in postgres_server.data_dir.parents


def test_new_database_is_fresh_and_separate(postgres_server: PostgresServer) -> None:
    name = postgres_server.new_database("fixture_check")
    conn = postgres_server.connect(name)
    try:
        with conn.cursor() as cur:
            cur.execute("create table left_behind (x int)")
            cur.execute("select current_database()")
            assert cur.fetchone() == (name,)
    finally:
        conn.close()

    # Asking again gives an empty database of the same name, even with a session open on it.
    holder = postgres_server.connect(name)
    try:
        postgres_server.new_database(name)
    finally:
        holder.close()
    conn = postgres_server.connect(name, autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("select count(*) from pg_tables where tablename = 'left_behind'")
            assert cur.fetchone() == (0,)
    finally:
        conn.close()


def test_new_database_with_an_icu_default_collation(postgres_server: PostgresServer) -> None:
    name = postgres_server.new_database("fixture_icu", icu_locale="en-US")
    conn = postgres_server.connect(name)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select datlocprovider, daticulocale from pg_database"
                " where datname = current_database()"
            )
            assert cur.fetchone() == ("i", "en-US")
            # Dictionary order, not the server's byte order.
            cur.execute("select 'a' < 'B', 'a' < 'B' collate \"C\"")
            assert cur.fetchone() == (True, False)
    finally:
        conn.close()


def test_per_test_database_fixture(postgres_server: PostgresServer, postgres_database: str) -> None:
    assert postgres_database.endswith("test_per_test_database_fixture")
    conn = postgres_server.connect(postgres_database)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select count(*) from information_schema.tables where table_schema = 'public'"
            )
            assert cur.fetchone() == (0,)
    finally:
        conn.close()
    assert postgres_server.profile_env(postgres_database) == {
        "MOENGAGE_IT_PG_HOST": "127.0.0.1",
        "MOENGAGE_IT_PG_PORT": str(postgres_server.port),
        "MOENGAGE_IT_PG_USER": "postgres",
        "MOENGAGE_IT_PG_DBNAME": postgres_database,
    }


def test_icu_collations_are_available(
    postgres_server: PostgresServer, postgres_database: str
) -> None:
    """integration_tests' Postgres target relies on a non-deterministic ICU collation."""
    conn = postgres_server.connect(postgres_database)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "create collation ci (provider = icu, locale = 'und-u-ks-level2',"
                " deterministic = false)"
            )
            cur.execute("select 'abc' = 'ABC' collate ci, 'abc' = 'ABC' collate \"C\"")
            assert cur.fetchone() == (True, False)
    finally:
        conn.close()


def test_new_database_refuses_names_it_would_have_to_quote(postgres_server: PostgresServer) -> None:
    with pytest.raises(ValueError, match="plain lower-case Postgres name"):
        postgres_server.new_database('x"; drop database postgres; --')


def test_an_error_in_the_tests_stops_and_removes_the_server() -> None:
    with pytest.raises(RuntimeError, match="a test failed"), running_postgres() as server:
        raise RuntimeError("a test failed")
    assert not server.socket_dir.exists()
    assert not _listening(server.port)


def test_a_killed_test_process_leaves_no_server_behind() -> None:
    """SIGKILL runs no teardown: the watchdog stops the server and removes its folder."""
    script = (
        "import time\n"
        "from tests.postgres_server import running_postgres\n"
        "with running_postgres() as server:\n"
        "    print(server.socket_dir, server.port, flush=True)\n"
        "    time.sleep(120)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        folder, port = child.stdout.readline().split()
        assert Path(folder).is_dir() and _listening(int(port))
        child.kill()
    deadline = time.monotonic() + 30
    while (Path(folder).exists() or _listening(int(port))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(folder).exists()
    assert not _listening(int(port))


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_missing_binaries_fail_with_the_package_to_install(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "initdb").touch()
    with pytest.raises(PostgresUnavailable) as raised:
        find_bindir([tmp_path / "bin", tmp_path / "nowhere"])
    message = str(raised.value)
    assert "(initdb, pg_ctl, postgres) not found" in message
    assert f"{tmp_path / 'bin'}, {tmp_path / 'nowhere'}" in message
    assert "apt-get install postgresql-15" in message


def test_binaries_are_found_here() -> None:
    """This machine has them (CI's too): the Postgres tests run, never skip."""
    assert (find_bindir() / "initdb").is_file()

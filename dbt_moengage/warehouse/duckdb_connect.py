"""Opening the DuckDB database file a dbt-duckdb profile points at: the file's path as
dbt-duckdb resolves it, the memory and threads the runner gives DuckDB, and the bounded
wait for a file another process holds (DuckDB lets one process write a file at a time).
Paths and DuckDB's text about them are shown redacted (redact.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb

from ..errors import LockTimeout, ProfileError
from .profiles import ProfileTarget
from .redact import redact_path

# DuckDB's own memory (hash tables, the delta, checkpoints not yet in the file) is capped
# here and spills to disk past it, so a sync's memory stays flat whatever the audience's
# size. The runner's own statements all spill; a model view doing something that cannot
# (a huge list() say) gets an error saying how to raise the cap. Each DuckDB thread keeps
# buffers of its own that cannot spill (writing the snapshot of a 10M-uid model needs
# about 40MB a thread): the runner uses at most THREADS of them and caps memory at
# MEMORY_PER_THREAD_MB for each (64MB in all ran out on 2 threads at 10M uids).
THREADS = max(2, min(os.cpu_count() or 2, 4))
MEMORY_PER_THREAD_MB = 48
DEFAULT_MEMORY_LIMIT = f"{MEMORY_PER_THREAD_MB * THREADS}MB"

# dbt-duckdb paths of MotherDuck databases. Opening one needs the network and DuckDB's
# motherduck extension, which the runner never downloads at run time.
MOTHERDUCK = ("md:", "motherduck:")


def open_database(
    path: str, read_only: bool, wait_seconds: float, memory_limit: str
) -> duckdb.DuckDBPyConnection:
    """The database file, set up for the runner; LockTimeout once another process has held
    it for `wait_seconds`, ProfileError if it cannot be opened at all."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            conn = duckdb.connect(path, read_only=read_only)
            # Its progress bar would draw over the runner's own output.
            conn.execute("set enable_progress_bar = false")
            # Row order is never needed, and dropping it lets DuckDB stream and spill.
            conn.execute("set preserve_insertion_order = false")
            conn.execute(f"set threads = {THREADS}")
            # The state rows of each accepted request are durable once in the WAL.
            # DuckDB folding the WAL into the file every 16MB (its default) stalled the
            # stream 0.1-0.3 s each time; every 64MB costs less in all (bench/).
            conn.execute("set checkpoint_threshold = '64MB'")
            # Bounded memory: the distinct and anti-join spill to disk past this, so the
            # runner's memory stays flat as audiences grow.
            conn.execute(f"set memory_limit = '{memory_limit.replace(chr(39), '')}'")
            return conn
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise ProfileError(
                    redact_path(f"cannot open DuckDB database {path!r}: {exc}")
                ) from None
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    redact_path(
                        f"DuckDB database {path!r} is held by another process (another "
                        f"dbt-moengage sync, or dbt itself) and stayed locked for "
                        f"{wait_seconds:g} s; let it finish, or raise "
                        f"MOENGAGE_LOCK_WAIT_SECONDS ({exc})"
                    )
                ) from None
            time.sleep(0.25)
        except duckdb.Error as exc:
            raise ProfileError(
                redact_path(
                    f"cannot open DuckDB database {path!r}: {exc}; check the profile's `path`"
                )
            ) from None


def database_path(target: ProfileTarget, project_dir: Path) -> Path:
    """The database file a dbt-duckdb target points at, as dbt-duckdb resolves it;
    ProfileError for MotherDuck, an in-memory database, or a file that does not exist."""
    path = str(target.credentials.path or ":memory:")
    where = f"profile '{target.profile_name}' target '{target.target_name}'"
    # A MotherDuck path carries its token (`md:db?motherduck_token=...`): shown redacted.
    shown = redact_path(path)
    if path.lower().startswith(MOTHERDUCK):
        raise ProfileError(
            f"{where}: path {shown!r} is a MotherDuck database, which the runner cannot "
            "open: MotherDuck needs the network and DuckDB's motherduck extension, which "
            "the runner does not download at run time. Point `path` at a local .duckdb "
            "file (e.g. a copy of the database), or wait for MotherDuck support"
        )
    if not path or path.startswith(":memory:"):
        raise ProfileError(
            f"{where}: path {shown!r} is an in-memory database, gone when dbt exits; "
            "point `path` at a .duckdb file"
        )
    resolved = Path(path).expanduser()
    if not resolved.is_absolute() and not resolved.exists():
        # dbt-duckdb resolves against the folder dbt ran in, usually the project folder.
        resolved = project_dir / resolved
    if not resolved.exists():
        raise ProfileError(
            f"DuckDB database {shown!r} ({where}) does not exist: run `dbt build` first"
        )
    return resolved


def profile_memory_limit(target: ProfileTarget) -> str:
    """DuckDB's memory cap: the profile's `settings: {memory_limit: ...}` (as dbt-duckdb
    reads it), else MOENGAGE_DUCKDB_MEMORY_LIMIT, else DEFAULT_MEMORY_LIMIT."""
    settings = target.credentials.settings or {}
    return str(
        settings.get("memory_limit")
        or os.environ.get("MOENGAGE_DUCKDB_MEMORY_LIMIT")
        or DEFAULT_MEMORY_LIMIT
    )

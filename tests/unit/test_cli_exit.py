"""The command's quick exit (cli.leave): no byte written is lost, the exit code is kept,
atexit handlers run, and a non-daemon thread still working is waited for; it is the process
entry points' only, and a caller running the command in its own process goes on after it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    # Buffered, as a user's shell runs it: the last writes wait in the buffer at exit.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_buffered_output_and_the_exit_code_survive() -> None:
    done = _python(
        """
        import atexit, sys
        from dbt_moengage.cli import leave
        atexit.register(lambda: print("atexit ran", file=sys.stderr))
        for _ in range(20_000):
            print("x" * 9)  # small writes: the last few KB wait in the buffer
        print("last words", file=sys.stderr, end="")
        leave(3)
        """
    )
    assert done.returncode == 3
    assert done.stdout == ("x" * 9 + "\n") * 20_000
    assert done.stderr == "last wordsatexit ran\n"


def test_a_thread_still_working_is_waited_for(tmp_path: Path) -> None:
    marker = tmp_path / "written"
    done = _python(
        f"""
        import threading, time
        from pathlib import Path
        from dbt_moengage.cli import leave

        def late() -> None:
            time.sleep(0.5)
            Path({str(marker)!r}).write_text("done")

        threading.Thread(target=late).start()
        leave(0)
        """
    )
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "done"


def test_the_entry_point_exits_with_the_command_code(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dbt_moengage", "sync", "--project-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "no dbt manifest" in done.stderr


def test_a_caller_in_the_same_process_goes_on_after_the_command(tmp_path: Path) -> None:
    # As click's own main(): the command ends in SystemExit, never in the process's end.
    done = _python(
        f"""
        import sys
        from dbt_moengage.cli import main, run

        for command, args in [
            (run, ["--version"]),
            (run, ["sync", "--project-dir", {str(tmp_path)!r}]),
            (main, ["--help"]),
        ]:
            sys.argv = ["dbt-moengage", *args]
            try:
                command()
            except SystemExit as done:
                print("exit", done.code)
        print("after")
        """
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("dbt-moengage, version ")
    assert [line for line in lines if line.startswith("exit ")] == ["exit 0", "exit 2", "exit 0"]
    assert lines[-1] == "after"
    assert "no dbt manifest" in done.stderr


def test_the_console_script_exits_quickly_with_the_command_code(tmp_path: Path) -> None:
    # What pip writes into bin/dbt-moengage, for the entry point pyproject.toml names.
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["dbt-moengage"].partition(":")
    done = _python(
        f"""
        import sys
        from {module} import {name}
        sys.argv = ["dbt-moengage", "sync", "--project-dir", {str(tmp_path)!r}]
        try:
            sys.exit({name}())
        finally:
            print("unwound")  # never: the quick exit ends the process where it stands
        """
    )
    assert done.returncode == 2
    assert "no dbt manifest" in done.stderr
    assert "unwound" not in done.stdout

"""The command line as a user runs it: the emulator command and sync, both as subprocesses."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest

from dbt_moengage.cli import expand_selectors

from ..conftest import API_KEY, COHORTS, WORKSPACE, BuiltProject, run_cli, sync_args


@pytest.fixture
def emulator_process() -> Iterator[str]:
    """`dbt-moengage emulator --port 0` in a subprocess; yields its URL."""
    env = {"MOENGAGE_WORKSPACE_ID": WORKSPACE, "MOENGAGE_API_KEY": API_KEY, "PATH": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbt_moengage", "emulator", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert match, line
        assert API_KEY not in line
        yield match.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_sync_against_the_emulator_command(project: BuiltProject, emulator_process: str) -> None:
    env = {
        **project.env,
        "MOENGAGE_WORKSPACE_ID": WORKSPACE,
        "MOENGAGE_API_KEY": API_KEY,
        "MOENGAGE_BASE_URL": emulator_process,
    }
    done = run_cli(sync_args(project), env, process=True)
    assert done.returncode == 0, done.stdout + done.stderr
    with urllib.request.urlopen(emulator_process + "/cohorts", timeout=5) as response:
        cohorts = json.load(response)["cohorts"]
    for cohort_id in COHORTS:
        assert cohorts[cohort_id]["members"] == len(project.expected_members(cohort_id))
    with urllib.request.urlopen(emulator_process + "/cohorts/high_value_users") as response:
        members = set(json.load(response)["members"])
    assert members == project.expected_members("high_value_users")


def test_emulator_rate_limit_option_answers_429(project: BuiltProject) -> None:
    env = {"MOENGAGE_WORKSPACE_ID": WORKSPACE, "MOENGAGE_API_KEY": API_KEY}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbt_moengage", "emulator", "--port", "0", "--rate-limit", "2"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline())
        assert url
        statuses = []
        for _ in range(3):
            request = urllib.request.Request(
                url.group(0) + "/v1/integrations/cohortsync", data=b"{}", method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    statuses.append(response.status)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
        assert statuses[2] == 429
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_help_lists_the_commands() -> None:
    done = run_cli(["--help"], {"PATH": ""})
    assert done.returncode == 0
    assert "sync" in done.stdout and "emulator" in done.stdout
    done = run_cli(["sync", "--help"], {"PATH": ""})
    assert "--dry-run" in done.stdout and "--select" in done.stdout


@pytest.mark.parametrize(
    ("args", "expanded"),
    [
        (["--select", "a", "b"], ["--select", "a", "--select", "b"]),
        (
            ["-s", "a", "b", "--exclude", "c", "d"],
            ["-s", "a", "-s", "b", "--exclude", "c", "--exclude", "d"],
        ),
        (["--select=a", "b"], ["--select=a", "--select", "b"]),
        (["--select", "a", "--target", "dev"], ["--select", "a", "--target", "dev"]),
        (["--dry-run", "--select", "tag:x"], ["--dry-run", "--select", "tag:x"]),
    ],
)
def test_several_selectors_follow_one_flag(args: list[str], expanded: list[str]) -> None:
    assert expand_selectors(args) == expanded

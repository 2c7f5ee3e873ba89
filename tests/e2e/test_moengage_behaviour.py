"""End to end: MoEngage as it really behaves, and a real user's habits (issue 11).

Late joiners (unknown users dropped, then re-sent), state per endpoint, state from before
endpoints upgraded, renames, both cohort-name forms, the mirror guard, a data center that
does not exist, shared ids and names, and what `validate` and `ls` flag. The runner runs as
a subprocess against the emulator, which knows only some users where a test says so.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dbt_moengage.pipeline import SyncOptions, discover_cohorts, run_sync, validate
from dbt_moengage.report.progress import Progress, result_text
from dbt_moengage.report.results import stacked_summary
from dbt_moengage.state import SCHEMA_VERSION, StateStore
from dbt_moengage.state.store import Change
from dbt_moengage.testing.emulator import Emulator, EmulatorConfig

from ..conftest import (
    API_KEY,
    COHORTS,
    WORKSPACE,
    BuiltProject,
    ok,
    results,
    run_cli,
    sync,
    sync_env,
)

HIGH = "high_value_users"
ENTERPRISE = "enterprise_accounts"
ACTIVE = "recently_active_30d"
MESSY = "messy_signups"
MODEL = {HIGH: HIGH, ENTERPRISE: ENTERPRISE, ACTIVE: "recently_active", MESSY: MESSY}
ACTIVE_MODEL = MODEL[ACTIVE]
NODE = "model.moengage_integration_tests.{}"


# -- helpers -------------------------------------------------------------------------------


def query(project: BuiltProject, sql: str, params: list[Any] | None = None) -> list[Any]:
    with duckdb.connect(str(project.database)) as conn:
        return conn.execute(sql, params or []).fetchall()


def edit_meta(project: BuiltProject, model: str, **changes: Any) -> None:
    """Change a model's meta.moengage in the copied manifest, as its dbt config would."""
    path = project.target_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    node = manifest["nodes"][NODE.format(model)]
    for meta in ((node.get("config") or {}).get("meta") or {}, node.get("meta") or {}):
        if "moengage" in meta:
            for key, value in changes.items():
                if value is None:
                    meta["moengage"].pop(key, None)
                else:
                    meta["moengage"][key] = value
    path.write_text(json.dumps(manifest))


def dbt_in(project_dir: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run dbt from the virtualenv in another project folder."""
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    return subprocess.run(
        [str(Path(sys.executable).with_name("dbt")), *args, "--profiles-dir", str(project_dir)],
        cwd=project_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def age_state(project: BuiltProject, seconds: int) -> None:
    """Move every member's last acceptance `seconds` into the past, as time passing would."""
    query(
        project,
        "update main.moengage_cohort_members set synced_at = synced_at - to_seconds(?)",
        [seconds],
    )


def delete_rows(project: BuiltProject, cohort_id: str, keep: int) -> None:
    """Keep only the first `keep` rows (by uid) of a cohort's model."""
    table, column = COHORTS[cohort_id]
    query(
        project,
        f'delete from main.{table} where cast("{column}" as varchar) not in (select '
        f'cast("{column}" as varchar) from main.{table} order by 1 limit {keep})',
    )


@pytest.fixture
def every_user(project: BuiltProject) -> set[str]:
    """Every valid uid of every cohort model: the users a MoEngage workspace may know."""
    return set().union(*(project.expected_members(c) for c in COHORTS))


# -- 1. late joiners -----------------------------------------------------------------------


def test_late_joiners_join_once_known_and_due(project: BuiltProject, every_user: set[str]) -> None:
    high = project.expected_members(HIGH)
    late = set(sorted(high)[:25])
    config = EmulatorConfig(
        workspace_id=WORKSPACE,
        api_key=API_KEY,
        rate_limit_per_min=None,
        known_users=frozenset(every_user - late),
    )
    with Emulator(config) as emulator:
        env = {"MOENGAGE_RESEND_AFTER": "1d"}
        first = sync(project, emulator, "--select", HIGH, **env)
        assert first.returncode == 0, ok(first)
        # Accepted (200) and silently dropped, as MoEngage does with users it does not know.
        assert emulator.members(HIGH) == high - late
        assert results(project)[HIGH]["added"] == len(high)
        assert emulator.cohorts()[HIGH]["unmatched"] == len(late)

        # Their profiles appear; an unchanged run before the re-send is due sends nothing.
        emulator.add_users(late)
        before = len(emulator.requests())
        again = sync(project, emulator, "--select", HIGH, **env)
        assert again.returncode == 0, ok(again)
        assert len(emulator.requests()) == before
        row = results(project)[HIGH]
        assert (row["added"], row["resent"], row["requests"]) == (0, 0, 0)

        # A dry run shows what the re-send will cost once it is due.
        age_state(project, 86_400)
        dry = sync(project, emulator, "--select", HIGH, "--dry-run", **env)
        assert dry.returncode == 0, ok(dry)
        planned = results(project)[HIGH]
        assert planned["planned_resend"] == len(high) and planned["planned_add"] == 0
        assert planned["planned_requests"] >= 1
        assert len(emulator.requests()) == before

        # Due: every member is sent again, packed as adds are; the late joiners join.
        due = sync(project, emulator, "--select", HIGH, **env)
        assert due.returncode == 0, ok(due)
        assert emulator.members(HIGH) == high
        row = results(project)[HIGH]
        assert (row["added"], row["resent"], row["removed"]) == (0, len(high), 0)
        assert "resent" in due.stdout and f"{len(high):,}" in due.stdout
        history = query(
            project,
            "select resent from main.moengage_sync_runs where cohort_id = ? order by started_at",
            [HIGH],
        )
        assert [r for (r,) in history] == [0, 0, len(high)]
        # Each re-send was recorded as a newer row; the run's end compacted the older ones.
        rows = query(
            project,
            "select count(*), count(distinct uid), count(distinct run_id) "
            "from main.moengage_cohort_members where cohort_id = ?",
            [HIGH],
        )
        assert rows == [(len(high), len(high), 1)]

        # And then nothing again until the next round comes due.
        after = len(emulator.requests())
        quiet = sync(project, emulator, "--select", HIGH, **env)
        assert quiet.returncode == 0, ok(quiet)
        assert len(emulator.requests()) == after


def test_resend_after_per_cohort_and_add_mode_never_removes(
    project: BuiltProject, emulator: Emulator
) -> None:
    edit_meta(project, ENTERPRISE, resend_after="off")
    edit_meta(project, HIGH, resend_after="2h")
    select = ("--select", f"{HIGH} {ENTERPRISE}")
    first = sync(project, emulator, *select)
    assert first.returncode == 0, ok(first)
    gone = sorted(project.expected_members(HIGH))[:10]
    table, column = COHORTS[HIGH]
    query(
        project,
        f'delete from main.{table} where "{column}" in (select unnest(?::varchar[]))',
        [gone],
    )
    age_state(project, 30 * 86_400)
    done = sync(project, emulator, *select)
    assert done.returncode == 0, ok(done)
    report = results(project)
    # resend_after: off never re-sends; 2h re-sends the members still in the model only.
    assert report[ENTERPRISE]["resent"] == 0 and report[ENTERPRISE]["requests"] == 0
    assert report[HIGH]["resent"] == len(project.expected_members(HIGH))
    assert report[HIGH]["left_but_kept"] == len(gone) and report[HIGH]["removed"] == 0
    assert set(gone) <= emulator.members(HIGH)
    assert all(r.action == "add_members" for r in emulator.requests())


def test_bad_resend_after_is_named(project: BuiltProject, emulator: Emulator) -> None:
    edit_meta(project, HIGH, resend_after="weekly")
    done = sync(project, emulator)
    assert done.returncode == 1
    assert "model 'high_value_users': meta.moengage.resend_after = 'weekly': not a duration" in (
        done.stdout
    )
    assert emulator.members(ENTERPRISE) == project.expected_members(ENTERPRISE)
    bad_env = sync(project, emulator, MOENGAGE_RESEND_AFTER="7 days")
    assert bad_env.returncode == 2
    assert "MOENGAGE_RESEND_AFTER = '7 days'" in bad_env.stderr


# -- 2. state per endpoint -----------------------------------------------------------------


def test_emulator_then_production_sends_everything(
    project: BuiltProject, emulator: Emulator
) -> None:
    # A user tries the emulator with their real workspace id, then points at production.
    first = sync(project, emulator)
    assert first.returncode == 0, ok(first)
    config = EmulatorConfig(workspace_id=WORKSPACE, api_key=API_KEY, rate_limit_per_min=None)
    with Emulator(config) as production:
        production_url = production.url
        done = sync(project, production)
        assert done.returncode == 0, ok(done)
        for cohort_id in COHORTS:
            assert production.members(cohort_id) == project.expected_members(cohort_id)
        again = sync(project, production)
        assert again.returncode == 0, ok(again)
        assert all(row["requests"] == 0 for row in results(project).values())
    endpoints = query(project, "select distinct endpoint from main.moengage_cohort_members")
    assert {e for (e,) in endpoints} == {emulator.url, production_url}


def test_version_1_state_is_upgraded_and_resent(project: BuiltProject, emulator: Emulator) -> None:
    first = sync(project, emulator)
    assert first.returncode == 0, ok(first)
    # The state as dbt-moengage kept it before endpoints (version 1).
    for table in ("moengage_cohort_members", "moengage_sync_runs", "moengage_sync_locks"):
        query(project, f"alter table main.{table} drop column endpoint")
    query(project, "alter table main.moengage_sync_runs drop column resent")
    query(project, "alter table main.moengage_sync_runs drop column renamed")
    query(project, "drop table main.moengage_cohorts")
    query(project, "drop table main.moengage_state_version")
    emulator.reset()

    done = sync(project, emulator)
    assert done.returncode == 0, ok(done)
    assert f"upgraded the sync state in schema 'main' from version 1 to {SCHEMA_VERSION}" in (
        done.stdout
    )
    assert "sent again" in done.stdout
    report = results(project)
    for cohort_id in COHORTS:
        expected = project.expected_members(cohort_id)
        # The safe side: every old member is sent again to the endpoint now in use.
        assert emulator.members(cohort_id) == expected
        assert report[cohort_id]["resent"] == len(expected)
    again = sync(project, emulator)
    assert again.returncode == 0, ok(again)
    assert "upgraded" not in again.stdout
    assert all(row["requests"] == 0 for row in results(project).values())


# -- 3, 4. renames and both name forms -----------------------------------------------------


def test_a_rename_reaches_moengage(project: BuiltProject, emulator: Emulator) -> None:
    first = sync(project, emulator)
    assert first.returncode == 0, ok(first)
    assert emulator.cohorts()[HIGH]["cohort_name"] == ".High Value Users"

    edit_meta(project, HIGH, cohort_name="High Value Users (LTV over 500)")
    edit_meta(project, ENTERPRISE, description="Every enterprise account")
    before = len(emulator.requests())
    done = sync(project, emulator)
    assert done.returncode == 0, ok(done)
    new = emulator.requests()[before:]
    # One small add of current members carries each change; nothing else is sent.
    assert sorted(r.cohort_id or "" for r in new) == [ENTERPRISE, HIGH]
    assert all(r.status == 200 and r.action == "add_members" and r.members <= 100 for r in new)
    cohorts = emulator.cohorts()
    assert cohorts[HIGH]["cohort_name"] == "High Value Users (LTV over 500)"
    assert cohorts[ENTERPRISE]["cohort_description"] == "Every enterprise account"
    report = results(project)
    assert report[HIGH]["renamed"] and report[ENTERPRISE]["renamed"]
    assert not report[ACTIVE]["renamed"]
    assert "renamed" in done.stdout
    assert emulator.members(HIGH) == project.expected_members(HIGH)

    after = len(emulator.requests())
    again = sync(project, emulator)
    assert again.returncode == 0, ok(again)
    assert len(emulator.requests()) == after
    assert not any(row["renamed"] for row in results(project).values())


def in_process(project: BuiltProject, emulator: Emulator, **options: Any) -> SyncOptions:
    """Options for run_sync and validate in this process, against the emulator."""
    return SyncOptions(
        project_dir=project.project_dir,
        profiles_dir=project.project_dir,
        environ=sync_env(project, emulator),
        **options,
    )


def test_a_run_with_only_resends_due_runs_no_anti_join_for_new_uids(
    project: BuiltProject, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan counted no new uid: the run streams the re-sends alone, not the model
    against the state again for nothing (about a sixth of a 10M re-send run on DuckDB)."""
    select = {"select": (HIGH,)}
    assert run_sync(in_process(project, emulator, **select)).ok
    age_state(project, 30 * 86_400)
    streamed: list[Change] = []
    real = StateStore.stream

    def stream(self: StateStore, cohort: Any, key: Any, change: Change, **kw: Any) -> Any:
        streamed.append(change)
        return real(self, cohort, key, change, **kw)

    monkeypatch.setattr(StateStore, "stream", stream)
    done = {r.model: r for r in run_sync(in_process(project, emulator, **select)).results}[HIGH]
    assert done.added == 0 and done.resent == len(project.expected_members(HIGH))
    assert streamed == [Change.DUE]
    assert emulator.members(HIGH) == project.expected_members(HIGH)


def test_a_rename_dry_run_counts_the_members_it_resends(
    project: BuiltProject, emulator: Emulator
) -> None:
    assert run_sync(in_process(project, emulator)).ok
    edit_meta(project, HIGH, cohort_name="High Value Users (LTV over 500)")
    before = len(emulator.requests())
    dry = {r.model: r for r in run_sync(in_process(project, emulator, dry_run=True)).results}
    assert len(emulator.requests()) == before
    planned = dry[HIGH]
    # A rename re-sends a small batch of current members, to carry the name.
    assert planned.renamed and planned.planned_add == 0 and planned.planned_resend > 0
    assert f"re-send {planned.planned_resend:,}" in str(result_text(planned))
    done = {r.model: r for r in run_sync(in_process(project, emulator)).results}[HIGH]
    assert done.renamed and done.resent == planned.planned_resend
    assert done.requests == planned.planned_requests
    assert sum(r.members for r in emulator.requests()[before:]) == planned.planned_resend


def test_an_invalid_cohort_is_shown_in_its_configured_mode(
    project: BuiltProject, emulator: Emulator
) -> None:
    edit_meta(project, ACTIVE_MODEL, mode="mirror", uid_colum="user_id")
    report = run_sync(in_process(project, emulator))
    invalid = {r.model: r for r in report.results}[ACTIVE_MODEL]
    assert invalid.status == "invalid" and invalid.mode == "mirror"
    assert "did you mean 'uid_column'" in (invalid.error or "")
    heads = [str(line) for line in stacked_summary(report)]
    assert f"{ACTIVE_MODEL} -> - (mirror): invalid" in heads, heads


def test_names_with_and_without_a_leading_period(project: BuiltProject, emulator: Emulator) -> None:
    edit_meta(project, HIGH, cohort_name="High Value Users")
    done = sync(project, emulator)
    assert done.returncode == 0, ok(done)
    assert emulator.cohorts()[HIGH]["cohort_name"] == "High Value Users"
    assert emulator.cohorts()[ENTERPRISE]["cohort_name"] == ".Enterprise Accounts"
    for cohort_id in COHORTS:
        assert emulator.members(cohort_id) == project.expected_members(cohort_id)


# -- 5. guards -----------------------------------------------------------------------------


def test_a_broken_model_cannot_empty_a_mirror_cohort(
    project: BuiltProject, emulator: Emulator
) -> None:
    edit_meta(project, HIGH, mode="mirror")
    edit_meta(project, ENTERPRISE, mode="mirror")
    first = sync(project, emulator)
    assert first.returncode == 0, ok(first)
    high = project.expected_members(HIGH)

    # An upstream outage: high_value_users keeps 10%, enterprise_accounts builds empty.
    delete_rows(project, HIGH, keep=len(high) // 10)
    query(project, "delete from main.enterprise_accounts")
    before = len(emulator.requests())
    done = sync(project, emulator)
    assert done.returncode == 1, ok(done)
    report = results(project)
    for cohort_id in (HIGH, ENTERPRISE):
        assert report[cohort_id]["status"] == "guarded"
        assert report[cohort_id]["requests"] == 0
    assert "max_remove_fraction = 0.5" in report[HIGH]["error"]
    assert f"of {len(high):,} members" in report[HIGH]["error"]
    assert "no valid uid" in report[ENTERPRISE]["error"]
    assert "--allow-large-removal" in report[HIGH]["error"]
    assert "guarded" in done.stdout
    # Nothing was sent for them; the other cohorts still synced.
    assert all(r.cohort_id not in (HIGH, ENTERPRISE) for r in emulator.requests()[before:])
    assert emulator.members(HIGH) == high
    assert report[ACTIVE]["status"] == "synced"
    statuses = query(
        project,
        "select status from main.moengage_sync_runs where cohort_id = ? order by started_at",
        [HIGH],
    )
    assert [s for (s,) in statuses] == ["synced", "guarded"]

    # The user checked: the removal is real.
    allowed = sync(project, emulator, "--allow-large-removal")
    assert allowed.returncode == 0, ok(allowed)
    assert emulator.members(HIGH) == project.expected_members(HIGH)
    assert emulator.members(ENTERPRISE) == set()


def test_small_removals_pass_and_the_fraction_is_per_cohort(
    project: BuiltProject, emulator: Emulator
) -> None:
    edit_meta(project, HIGH, mode="mirror", max_remove_fraction=0.05)
    edit_meta(project, ENTERPRISE, mode="mirror")
    select = ("--select", f"{HIGH} {ENTERPRISE}")
    first = sync(project, emulator, *select)
    assert first.returncode == 0, ok(first)
    high, enterprise = (project.expected_members(c) for c in (HIGH, ENTERPRISE))
    delete_rows(project, HIGH, keep=len(high) - 60)  # 10% > 5%
    delete_rows(project, ENTERPRISE, keep=len(enterprise) - 60)  # 20% < 50%
    done = sync(project, emulator, *select)
    assert done.returncode == 1, ok(done)
    report = results(project)
    assert report[HIGH]["status"] == "guarded"
    assert report[ENTERPRISE]["status"] == "synced" and report[ENTERPRISE]["removed"] == 60
    assert emulator.members(ENTERPRISE) == project.expected_members(ENTERPRISE)


# -- 6. fail fast --------------------------------------------------------------------------


def test_a_data_center_that_does_not_exist_fails_every_cohort_at_once(
    project: BuiltProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing may leave the machine: the resolver answers "no such host" for MoEngage's API.
    lookups: list[str] = []
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".moengage.com"):
            lookups.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    env = {
        **project.env,
        "MOENGAGE_WORKSPACE_ID": WORKSPACE,
        "MOENGAGE_API_KEY": API_KEY,
        "MOENGAGE_DATA_CENTER": "99",
    }
    options = SyncOptions(
        project_dir=project.project_dir, profiles_dir=project.project_dir, environ=env
    )
    started = time.monotonic()
    report = run_sync(options)
    elapsed = time.monotonic() - started
    assert report.exit_code == 1
    assert lookups == ["api-99.moengage.com"]
    first, *rest = report.results
    assert first.status == "failed" and "does not resolve" in (first.error or "")
    assert "MOENGAGE_DATA_CENTER" in (first.error or "")
    assert rest and all(r.status == "skipped" for r in rest)
    # Seconds, not minutes of retries (generous: a shared 2-core machine).
    assert elapsed < 60


def test_validate_warns_on_an_undocumented_data_center(project: BuiltProject) -> None:
    env = {**project.env, "MOENGAGE_WORKSPACE_ID": WORKSPACE, "MOENGAGE_API_KEY": API_KEY}
    args = ["validate", "--project-dir", str(project.project_dir)]
    args += ["--profiles-dir", str(project.project_dir)]
    done = run_cli(args, {**env, "MOENGAGE_DATA_CENTER": "99"})
    assert done.returncode == 0, ok(done)
    assert "warning" in done.stdout and "MOENGAGE_DATA_CENTER = '99'" in done.stdout
    assert "01, 02, 03, 04, 05, 06, 101" in done.stdout
    documented = run_cli(args, {**env, "MOENGAGE_DATA_CENTER": "101"})
    assert documented.returncode == 0 and "warning" not in documented.stdout


# -- 7. config traps -----------------------------------------------------------------------


def test_a_newcomer_reusing_a_live_cohort_id_is_refused_alone(
    project: BuiltProject, emulator: Emulator
) -> None:
    first = sync(project, emulator)
    assert first.returncode == 0, ok(first)
    edit_meta(project, MESSY, cohort_id=HIGH)
    table, column = COHORTS[HIGH]
    query(project, f"insert into main.{table} ({column}) values ('still-live-1')")
    done = sync(project, emulator)
    assert done.returncode == 1, ok(done)
    assert (
        "model 'messy_signups': meta.moengage.cohort_id = 'high_value_users': is already used "
        "in the workspace by model high_value_users, which keeps syncing"
    ) in done.stdout
    report = results(project)
    assert report[HIGH]["status"] == "synced" and report[HIGH]["added"] == 1
    assert "still-live-1" in emulator.members(HIGH)
    assert report[MESSY]["status"] == "invalid"


def test_validate_gives_the_verdict_sync_gives_on_a_shared_cohort_id(
    project: BuiltProject, emulator: Emulator
) -> None:
    assert run_sync(in_process(project, emulator)).ok
    edit_meta(project, MESSY, cohort_id=HIGH)
    # With the state read, one rule: the live cohort keeps syncing, the newcomer is refused.
    checked = validate(in_process(project, emulator), check_warehouse=True)
    assert HIGH in [s.model for s in checked.specs] and checked.unsettled == []
    assert [p.split(":")[0] for p in checked.problems] == [f"model '{MESSY}'"]
    synced = {r.model: r.status for r in run_sync(in_process(project, emulator)).results}
    assert synced[HIGH] == "synced" and synced[MESSY] == "invalid"
    assert {s.model for s in checked.specs} == {m for m, s in synced.items() if s == "synced"}
    # Without the state, neither is called invalid: which keeps syncing, the state says.
    plain = validate(in_process(project, emulator))
    assert plain.problems == [] and HIGH not in [s.model for s in plain.specs]
    assert sorted(u.split(":")[0] for u in plain.unsettled) == [
        f"model '{HIGH}'",
        f"model '{MESSY}'",
    ]
    assert all("depends on the sync state" in u and "--warehouse" in u for u in plain.unsettled)
    base = ["--project-dir", str(project.project_dir), "--profiles-dir", str(project.project_dir)]
    shown = run_cli(["validate", *base], sync_env(project, emulator))
    assert shown.returncode == 1, ok(shown)
    assert "invalid" not in shown.stdout and shown.stdout.count("unsettled model") == 2


def test_a_shared_cohort_name_is_refused(project: BuiltProject, emulator: Emulator) -> None:
    edit_meta(project, MESSY, cohort_name=".High Value Users")
    done = sync(project, emulator)
    assert done.returncode == 1, ok(done)
    report = results(project)
    assert report[MESSY]["status"] == "invalid" and report[HIGH]["status"] == "invalid"
    assert "cohort_name = '.High Value Users': is shared with model(s)" in done.stdout
    assert emulator.members(HIGH) == set() and emulator.members(MESSY) == set()
    assert emulator.members(ENTERPRISE) == project.expected_members(ENTERPRISE)


def misspell_namespace(project: BuiltProject, model: str, key: str) -> None:
    path = project.target_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    node = manifest["nodes"][NODE.format(model)]
    for meta in (node["config"].get("meta") or {}, node.get("meta") or {}):
        if "moengage" in meta:
            meta[key] = meta.pop("moengage")
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("key", ["moengange", "MoEngage", "moengage_cohort"])
def test_a_misspelt_namespace_is_flagged(project: BuiltProject, key: str) -> None:
    misspell_namespace(project, HIGH, key)
    base = ["--project-dir", str(project.project_dir), "--profiles-dir", str(project.project_dir)]
    env = {**project.env, "MOENGAGE_WORKSPACE_ID": WORKSPACE, "MOENGAGE_API_KEY": API_KEY}
    env["MOENGAGE_DATA_CENTER"] = "01"
    for command in ("validate", "ls"):
        done = run_cli([command, *base], env)
        assert done.returncode == 0, ok(done)
        said = " ".join(done.stdout.split())
        # Named once, where it was written (dbt copies config.meta into the node's meta).
        assert said.count("looks like a misspelt") == 1, done.stdout
        assert f"model 'high_value_users': config.meta.{key} looks like a misspelt" in said


def test_a_misspelt_namespace_is_named_once_by_sync(
    project: BuiltProject, emulator: Emulator
) -> None:
    # A new model whose namespace is misspelt: the sync exits 0, and says why it is no cohort.
    misspell_namespace(project, HIGH, "MoEngage")
    named = "model 'high_value_users': config.meta.MoEngage looks like a misspelt `moengage`"
    done = sync(project, emulator)
    assert done.returncode == 0, ok(done)
    lines = [line for line in done.stdout.splitlines() if "looks like a misspelt" in line]
    assert len(lines) == 1 and lines[0].startswith(f"warning {named}"), done.stdout
    kept = json.loads((project.target_dir / "moengage_sync_results.json").read_text())
    assert [w for w in kept["warnings"] if "misspelt" in w] == [lines[0].removeprefix("warning ")]

    done = sync(project, emulator, "--log-format", "json")
    assert done.returncode == 0, ok(done)
    events = [json.loads(line) for line in done.stdout.splitlines()]
    warned = [e["text"] for e in events if e["event"] == "warning" and "misspelt" in e["text"]]
    assert len(warned) == 1 and warned[0].startswith(named), warned
    assert emulator.members(HIGH) == set()


def test_validate_with_and_without_the_warehouse(project: BuiltProject) -> None:
    base = ["--project-dir", str(project.project_dir), "--profiles-dir", str(project.project_dir)]
    env = {**project.env, "MOENGAGE_WORKSPACE_ID": WORKSPACE, "MOENGAGE_API_KEY": API_KEY}
    env["MOENGAGE_DATA_CENTER"] = "01"
    edit_meta(project, HIGH, uid_column="no_such_column")
    plain = run_cli(["validate", *base], env)
    assert plain.returncode == 0, ok(plain)
    assert "relations and uid columns were not checked" in plain.stdout
    checked = run_cli(["validate", "--warehouse", *base], env)
    assert checked.returncode == 1, ok(checked)
    assert "meta.moengage.uid_column = 'no_such_column': no such column" in checked.stdout
    assert "not checked" not in checked.stdout
    assert "3 cohort(s) valid" in checked.stdout


def test_missing_credentials_exit_2_in_validate_and_sync(project: BuiltProject) -> None:
    base = ["--project-dir", str(project.project_dir), "--profiles-dir", str(project.project_dir)]
    env = {k: v for k, v in project.env.items() if not k.startswith("MOENGAGE_")}
    env["MOENGAGE_IT_DUCKDB_PATH"] = str(project.database)
    for command in (["validate"], ["sync"]):
        done = run_cli([*command, *base], env)
        assert done.returncode == 2, ok(done)
        assert "missing MOENGAGE_WORKSPACE_ID and MOENGAGE_API_KEY" in done.stderr


def test_a_model_block_replaces_the_folder_block_and_anchors_share_keys(
    tmp_path: Path,
) -> None:
    # The pattern docs/configuration.md gives, parsed by dbt itself: dbt merges meta one level deep.
    (tmp_path / "models" / "f").mkdir(parents=True)
    (tmp_path / "dbt_project.yml").write_text(
        "name: shallow\nversion: '1.0'\nconfig-version: 2\nprofile: shallow\n"
        "models:\n  shallow:\n    f:\n      +meta:\n        moengage:\n"
        "          uid_column: customer_number\n          cohort_name: Folder\n"
    )
    (tmp_path / "profiles.yml").write_text(
        "shallow:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        f"      path: {tmp_path / 'shallow.duckdb'}\n"
    )
    for name in ("a", "b"):
        (tmp_path / "models" / "f" / f"{name}.sql").write_text("select 1 as customer_number")
    (tmp_path / "models" / "f" / "_f.yml").write_text(
        "anchors:\n  - &shared\n    uid_column: customer_number\n\n"
        "models:\n"
        "  - name: a\n    config:\n      meta:\n"
        '        moengage: {<<: *shared, cohort_name: "A"}\n'
        "  - name: b\n    config:\n      meta:\n        moengage:\n"
        '          cohort_name: "B"\n'
    )
    parsed = dbt_in(tmp_path, ["parse"])
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr
    options = SyncOptions(project_dir=tmp_path, environ={})
    found = {spec.model: spec for spec in discover_cohorts(options).specs}
    assert found["a"].uid_column == "customer_number"
    # b's own block replaced the folder's: its uid_column is the default again.
    assert found["b"].uid_column == "uid"


def test_select_takes_several_selectors_after_one_flag(
    project: BuiltProject, emulator: Emulator
) -> None:
    done = sync(project, emulator, "--select", HIGH, ENTERPRISE, "--exclude", "tag:none")
    assert done.returncode == 0, ok(done)
    assert set(results(project)) == {HIGH, ENTERPRISE}
    assert emulator.members(ACTIVE) == set()


# -- removals a workspace refuses ------------------------------------------------------------


def test_refused_removals_never_hold_back_newcomers(
    project: BuiltProject, emulator: Emulator
) -> None:
    """A workspace answering remove_members with a 400 ("User dissociation is not supported")
    still gets every newcomer; the cohort fails naming the refusal and the way out, and
    each later run retries the removals until the workspace takes them."""
    table, column = COHORTS[ENTERPRISE]
    edit_meta(project, ENTERPRISE, mode="mirror")
    everyone = sorted(project.expected_members(ENTERPRISE))
    newcomers, leavers = everyone[-30:], everyone[:20]
    as_text = f'cast("{column}" as varchar)'
    query(
        project,
        f"create table main.held as select * from main.{table} where {as_text} in "
        f"(select unnest(?))",
        [newcomers],
    )
    query(project, f"delete from main.{table} where {as_text} in (select unnest(?))", [newcomers])
    first = sync(project, emulator)
    assert first.returncode == 0, ok(first)
    assert emulator.members(ENTERPRISE) == set(everyone[:-30])

    query(project, f"insert into main.{table} select * from main.held")
    query(project, f"delete from main.{table} where {as_text} in (select unnest(?))", [leavers])
    emulator.config.removals = False
    refused = sync(project, emulator)
    assert refused.returncode == 1, ok(refused)
    report = results(project)[ENTERPRISE]
    assert report["status"] == "failed"
    assert (report["added"], report["removed"]) == (30, 0)
    assert "User dissociation is not supported" in report["error"]
    assert "mode: add" in report["error"] and "removals enabled" in report["error"]
    assert "refused the removals" in refused.stdout
    assert emulator.members(ENTERPRISE) == set(everyone)

    again = sync(project, emulator)
    assert again.returncode == 1, ok(again)
    assert results(project)[ENTERPRISE]["added"] == 0
    removals = [r for r in emulator.requests() if r.action == "remove_members"]
    assert len(removals) == 2 and all(r.status == 400 for r in removals)

    emulator.config.removals = True
    taken = sync(project, emulator)
    assert taken.returncode == 0, ok(taken)
    assert results(project)[ENTERPRISE]["removed"] == 20
    assert emulator.members(ENTERPRISE) == set(everyone[20:])


class Said(Progress):
    """What a run says, kept."""

    def __init__(self) -> None:
        self.said: list[str] = []

    def message(self, text: str) -> None:
        self.said.append(text)


def test_an_oversized_uid_is_dropped_counted_and_the_rest_sent(
    project: BuiltProject, emulator: Emulator
) -> None:
    """Hardening round three, 15: a uid too long fails nothing; it is left out and counted."""
    expected = project.expected_members(MESSY)
    # 140 KB: more than one request may hold; twice, as a duplicate. And one of 300.
    huge, long = "u" + "x" * 140_000, "L" * 300
    query(
        project,
        "insert into main.messy_signups (user_ref) values (?), (?), (?)",
        [huge] * 2 + [long],
    )
    # Over the cohort's max_uid_length: left out in the warehouse, every row counted.
    edit_meta(project, MESSY, max_uid_length=200)
    checked = validate(in_process(project, emulator), check_warehouse=True)
    assert checked.problems == [] and MESSY in [s.model for s in checked.specs]
    assert any(
        f"model '{MESSY}': 2 uids (3 rows) are longer than meta.moengage.max_uid_length = 200" in w
        for w in checked.warnings
    ), checked.warnings
    dry = {r.model: r for r in run_sync(in_process(project, emulator, dry_run=True)).results}
    assert dry[MESSY].dropped["too_long"] == 3 and dry[MESSY].planned_add == len(expected)
    report = run_sync(in_process(project, emulator))
    assert report.ok, report.failure_summary()
    messy = {r.model: r for r in report.results}[MESSY]
    assert messy.dropped["too_long"] == 3 and messy.added == len(expected)
    assert emulator.members(MESSY) == expected
    # With no limit, the 300-character uid goes; the 140 KB one fits no request: it is left
    # out of the bodies, counted once (its second row is a duplicate) and named.
    edit_meta(project, MESSY, max_uid_length=None)
    before, said = len(emulator.requests()), Said()
    report = run_sync(in_process(project, emulator), said)
    assert report.ok, report.failure_summary()
    messy = {r.model: r for r in report.results}[MESSY]
    assert (messy.added, messy.planned_add, messy.dropped["too_long"]) == (1, 1, 1)
    assert messy.uids_total == len(expected) + 1
    assert emulator.members(MESSY) == expected | {long}
    sent = emulator.requests()[before:]
    assert len(sent) == 1 and sent[0].members == 1
    assert [m for m in said.said if "too long" in m] == [
        f"{MESSY}: 1 uids not sent: each is too long for one request of at most 128,000 "
        "bytes (the first takes 140,011 encoded bytes and starts 'uxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxx'); set meta.moengage.max_uid_length to leave them out in the warehouse"
    ]
    # The next run is a no-op that counts it again.
    again = {r.model: r for r in run_sync(in_process(project, emulator)).results}[MESSY]
    assert len(emulator.requests()) == before + 1
    assert (again.planned_add, again.requests, again.dropped["too_long"]) == (0, 0, 1)


def test_a_member_too_long_to_remove_fails_its_cohort_after_the_rest(
    project: BuiltProject, emulator: Emulator
) -> None:
    long = "L" * 900
    query(project, "insert into main.messy_signups (user_ref) values (?)", [long])
    assert run_sync(in_process(project, emulator)).ok
    assert long in emulator.members(MESSY)
    # The member leaves, one other joins, and requests shrink below what it takes alone.
    query(project, "update main.messy_signups set user_ref = 'joined-1' where user_ref = ?", [long])
    edit_meta(project, MESSY, mode="mirror")
    options = in_process(project, emulator)
    options = replace(options, environ={**options.environ, "MOENGAGE_MAX_BODY_BYTES": "800"})
    messy = {r.model: r for r in run_sync(options).results}[MESSY]
    assert messy.status == "failed" and messy.added == 1
    assert messy.error == (
        f"model '{MESSY}': 1 members who left the model cannot be removed: each is too long "
        "for one request of at most 800 bytes (the first takes 910 encoded bytes and starts "
        f"'{'L' * 40}'); raise MOENGAGE_MAX_BODY_BYTES"
    )
    assert emulator.members(MESSY) == project.expected_members(MESSY) | {long}

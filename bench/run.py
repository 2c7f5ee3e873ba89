"""`make bench`: dbt-moengage measured against the emulator over loopback, on DuckDB, on
Postgres and on BigQuery's emulator.

Every figure is a ratio of two measurements taken in the same run, so a shared, noisy
machine moves both sides alike. Sizes scale with --scale (CI uses a small one as a smoke
test; no threshold is asserted there). `dbt-moengage sync` always runs as a user runs it,
in a process of its own; so does the emulator (bench/emulator_server.py), so neither's CPU
competes with the other's or with the bench's. Each engine's figures are taken on its own
copies of the bench project's audience (bench/audiences.py); Postgres runs on a throwaway
local server started for the bench, BigQuery on an in-memory emulator (bqemulator) started
for it. An emulator says nothing of BigQuery's own speed, so BigQuery's figures are reported
without a target (UNTARGETED). Quota use and packing never touch the warehouse: they are
measured on the first engine only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any, NamedTuple, cast

from audiences import ENGINES, PROJECT, Audiences, Copy, PostgresAudiences, audiences

HERE = Path(__file__).resolve().parent
WORKSPACE = "BENCH_WORKSPACE"
API_KEY = "bench-key-not-secret"
# The limit the runner is told when the emulator does not limit: never the bottleneck.
UNLIMITED = "100000000"
MOENGAGE_QUOTA = 300  # requests per minute, MoEngage's documented limit
BODY_LIMIT = 128_000  # the runner's default MOENGAGE_MAX_BODY_BYTES: "128 KB"
NAIVE_BATCH = 1_000
OVERHEAD_REPEATS = 5
# The fixed-cost figures' cohort: one uid (an audience built at that size, never scaled).
ONE_UID = 1
# The project-size figure's manifests: models in all, the cohort's among them.
SMALL_PROJECT = 10
LARGE_PROJECT = 5_000
# The re-send figure: a cohort re-sent every RESEND_AFTER_DAYS, one member in DUE_EVERY due.
RESEND_AFTER_DAYS = 7
DUE_EVERY = 7
# The DuckDB cap the re-send figure falls back on when the runner's default runs out.
DUCKDB_MEMORY_LIMIT = "1GB"
# The reads figure's change before its mirror run: the uids of about 1 row in 256 replaced.
CHANGED_ROWS = "left(uid, 2) = '00'"
# Engines whose figures are reported without a target, and what the target column says.
UNTARGETED = {"bigquery": "n/a (emulator)"}
# Engines whose sizes are capped: they run at most this scale's. On the BigQuery emulator a
# sync takes about a minute per 500,000 uids, so at scale 1 most figures would take 10 to 30
# minutes each (overhead: ten runs on 1M; peak RSS: a sync of 5M; re-send: a state of 10M);
# at 0.1 the longest takes about 3.
MAX_SCALE = {"bigquery": 0.1}
# What an engine's section says before its figures.
ABOUT = {
    "bigquery": (
        "BigQuery here is its emulator (dbt_moengage.testing.bigquery): bqemulator answering "
        "BigQuery's REST API from an in-memory DuckDB on the same machine, reached through the "
        "bench profile's `bigquery` target (method oauth-secrets, api_endpoint); dbt builds the "
        "audiences, one dataset per size, and each copy gets empty datasets for the runner's "
        "state and the bare client's (google-cloud-bigquery itself, one DML job per accepted "
        "request, its uids one ARRAY<STRING> parameter). Its figures are reported without a "
        "target: the emulator runs every job to its end before answering, returns rows as "
        "JSON pages over loopback and shares the machine's CPUs with the runner and the API "
        "emulator, so its times say nothing of BigQuery's own. Model reads per sync is not "
        "measured on it: the figure counts Postgres's table statistics (pg_stat_user_tables), "
        "which the emulator has no counterpart of."
    ),
}


@dataclass
class Figure:
    """One benchmark figure: a ratio, what it compares, and the target it should meet
    (`met` None: reported without a target, UNTARGETED)."""

    name: str
    engine: str
    ratio: float
    target: str
    met: bool | None
    how: str
    detail: dict[str, Any] = field(default_factory=dict)


class Record(NamedTuple):
    """One request as the emulator saw it."""

    at: float
    status: int
    body_bytes: int
    members: int
    cohort_id: str | None = None


@dataclass
class ChildRun:
    """A finished child process: wall and CPU seconds, peak RSS, output."""

    seconds: float
    cpu_seconds: float
    max_rss_mb: float
    stdout: str
    stderr: str
    returncode: int


def run_child(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> ChildRun:
    """Run a command to its end and measure it.

    os.wait4 reports the rusage of that one child: its own peak RSS (ru_maxrss) and CPU
    time, not a maximum over every child the bench has run, as RUSAGE_CHILDREN would.
    Linux counts the parent's RSS at fork in a child's peak, so the bench process itself
    never loads an audience: every measured step runs in a child.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildRun(
            seconds=seconds,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            max_rss_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            returncode=proc.returncode,
        )


def base_env(**extra: str) -> dict[str, str]:
    """The bench's environment: the user's MOENGAGE_* settings never leak into a figure."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOENGAGE_")}
    env.update(MOENGAGE_WORKSPACE_ID=WORKSPACE, MOENGAGE_API_KEY=API_KEY, **extra)
    return env


class EmulatorProcess:
    """bench/emulator_server.py as a child process; its request log is read when it stops."""

    def __init__(self, work: Path, rate_limit_per_min: int | None) -> None:
        self.log = Path(tempfile.mkstemp(dir=work, prefix="emulator-", suffix=".json")[1])
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "emulator_server.py"),
                "--rate-limit",
                str(rate_limit_per_min or 0),
                "--log",
                str(self.log),
            ],
            env=base_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = cast(IO[str], self.proc.stdout).readline().strip()
        if not self.url.startswith("http://"):
            self.proc.kill()
            raise RuntimeError(f"the emulator did not start (first line {self.url!r})")
        self.records: list[Record] = []
        self.nagle_fixed_here = False

    def cpu_seconds(self) -> float:
        """CPU seconds the emulator has used so far (Linux /proc; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> list[Record]:
        """Stop serving; return every request it answered."""
        if self.proc.poll() is None:
            cast(IO[str], self.proc.stdin).close()
            self.proc.wait(timeout=60)
            log = json.loads(self.log.read_text())
            self.records = [Record(*r) for r in log["requests"]]
            self.nagle_fixed_here = log["nagle_fixed_here"]
        return self.records

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.proc.kill()
            self.proc.wait()
        self.stop()


@dataclass
class Sync:
    """One `dbt-moengage sync` run: the process measures and its cohort's report."""

    run: ChildRun
    cohort: dict[str, Any]


@dataclass
class Bench:
    """One engine's figures: its audiences, a way to run the CLI, syncs shared by figures."""

    scale: float
    work: Path
    audiences: Audiences
    memo: dict[int, tuple[Sync, list[Record]]] = field(default_factory=dict)
    # Unchanged re-runs of the memo's syncs, for the sizes a figure asked one of.
    reruns: dict[int, Sync] = field(default_factory=dict)
    # The memo's sizes synced with DUCKDB_MEMORY_LIMIT (the runner's default ran out).
    limits: dict[int, str] = field(default_factory=dict)
    # Every sync's bytes billed, as its cohort's report gives them (BigQuery's; None else).
    billed: list[int | None] = field(default_factory=list)

    @property
    def engine(self) -> str:
        """The engine these figures are taken on."""
        return self.audiences.engine

    def members(self, full: int) -> int:
        """A size scaled down for smoke runs, never below 1,000."""
        return max(1_000, int(full * self.scale))

    def copy(self, members: int, mode: str = "add") -> Copy:
        """A fresh copy of the audience of `members` uids (built first if need be)."""
        self.audiences.build(members, base_env(), mode)
        return self.audiences.copy(members, mode)

    def sync(
        self,
        copy: Copy,
        base_url: str,
        rate_limit: str,
        *args: str,
        settings: dict[str, str] | None = None,
    ) -> Sync:
        """Run `dbt-moengage sync` as a user would, told `rate_limit` requests a minute
        (and any other MOENGAGE_* `settings`)."""
        env = base_env(
            MOENGAGE_BASE_URL=base_url,
            MOENGAGE_RATE_LIMIT_PER_MIN=rate_limit,
            **copy.env,
            **(settings or {}),
        )
        run = run_child(
            [
                sys.executable,
                "-m",
                "dbt_moengage",
                "sync",
                "--project-dir",
                str(PROJECT),
                "--profiles-dir",
                str(PROJECT),
                *args,
            ],
            env,
        )
        if run.returncode != 0:
            raise RuntimeError(f"sync failed:\n{run.stdout}\n{run.stderr}")
        report = json.loads((copy.folder / "target" / "moengage_sync_results.json").read_text())
        cohort = report["cohorts"][0]
        self.billed.append(cohort.get("bytes_billed"))
        return Sync(run, cohort)

    def emulator(self, rate_limit_per_min: int | None = None) -> EmulatorProcess:
        """A fresh emulator process; None: unlimited."""
        return EmulatorProcess(self.work, rate_limit_per_min)

    def unlimited_sync(self, members: int, rerun: bool = False) -> tuple[Sync, list[Record]]:
        """One sync of a fresh copy against an unlimited emulator, shared by the figures.

        `rerun`: an unchanged re-run of the same copy follows it, against the same emulator,
        kept in `reruns`. The copy is discarded after its runs, so a size's re-run is taken
        with its first sync: the figures run in FIGURES' order, which puts the one asking
        for a re-run before the others sharing its size (else its size is synced again).
        On DuckDB, a size whose sync the runner's default cap (64MB) cannot hold is synced
        again, on a fresh copy, with DUCKDB_MEMORY_LIMIT, as the re-send figure does; the
        figures sharing it say so (memory_limits).
        """
        if members not in self.memo or (rerun and members not in self.reruns):
            try:
                self._unlimited(members, rerun, {})
            except RuntimeError as error:
                if self.engine != "duckdb" or "Out of Memory" not in str(error):
                    raise
                self.limits[members] = f"{DUCKDB_MEMORY_LIMIT} (the default ran out of memory)"
                settings = {"MOENGAGE_DUCKDB_MEMORY_LIMIT": DUCKDB_MEMORY_LIMIT}
                self._unlimited(members, rerun, settings)
        return self.memo[members]

    def _unlimited(self, members: int, rerun: bool, settings: dict[str, str]) -> None:
        """unlimited_sync's runs, with these MOENGAGE_* `settings`, into the memo."""
        copy = self.copy(members)
        try:
            with self.emulator() as emulator:
                done = self.sync(copy, emulator.url, UNLIMITED, settings=settings)
                if rerun:
                    again = self.sync(copy, emulator.url, UNLIMITED, settings=settings)
                    self.reruns[members] = again
        finally:
            self.audiences.discard(copy)
        assert done.cohort["added"] == members
        self.memo[members] = (done, emulator.records)

    def memory_limits(self, *sizes: int) -> dict[str, Any]:
        """For a figure's detail: the DuckDB memory limit of those of its sizes whose
        shared sync needed more than the runner's default (none: nothing)."""
        found = {members: self.limits[members] for members in sizes if members in self.limits}
        return {"duckdb_memory_limit": found} if found else {}

    def unlimited_bare(self, members: int) -> ChildRun:
        """The bare client on a fresh copy against an unlimited emulator of its own, as
        unlimited_sync runs the runner."""
        copy = self.copy(members)
        with self.emulator() as emulator:
            run = bare_client(copy, emulator.url)
        self.audiences.discard(copy)
        return run

    def figure(
        self, name: str, ratio: float, target: str, met: bool, how: str, **detail: Any
    ) -> Figure:
        """A figure of this engine; an UNTARGETED engine's has no target, met or not."""
        if self.engine in UNTARGETED:
            return Figure(name, self.engine, ratio, UNTARGETED[self.engine], None, how, detail)
        return Figure(name, self.engine, ratio, target, met, how, detail)


def quota_use(bench: Bench) -> Figure:
    """Requests a minute achieved on an API-bound sync, over the limit the server enforces.

    At MoEngage's 300/min the runner's pacer sends a burst of 300, waits for the sliding
    60 s window to free, and so on. Rates taken from the first to the last request, or over
    the whole sync, include a final partial burst and so read above the limit; the ratio
    therefore counts the requests that arrived in the whole minutes from the first arrival
    on (two of them at scale 1), which can never exceed the quota.
    """
    members = bench.members(2_000_000)
    copy = bench.copy(members)
    with bench.emulator(MOENGAGE_QUOTA) as emulator:
        done = bench.sync(copy, emulator.url, str(MOENGAGE_QUOTA))
    bench.audiences.discard(copy)
    arrivals = sorted(r.at for r in emulator.records if r.status == 200)
    throttled = sum(1 for r in emulator.records if r.status == 429)
    first, last = arrivals[0], arrivals[-1]
    span = last - first
    minutes = int(span // 60)
    if minutes >= 1:
        counted = sum(1 for t in arrivals if t < first + 60 * minutes)
        ratio = counted / (minutes * MOENGAGE_QUOTA)
    else:  # smoke scale: fewer requests than one minute's quota
        counted = len(arrivals)
        ratio = counted / MOENGAGE_QUOTA
    busiest = max(bisect_left(arrivals, start + 60) - i for i, start in enumerate(arrivals))
    assert done.cohort["added"] == members
    return bench.figure(
        "quota use: requests/min / limit",
        ratio,
        ">= 0.95, no 429",
        ratio >= 0.95 and throttled == 0 and minutes >= 1,
        f"{members:,} uids at {MOENGAGE_QUOTA}/min (emulator enforces it, runner told it); "
        "requests arriving in the whole minutes after the first / (minutes x limit)",
        members=members,
        limit_per_min=MOENGAGE_QUOTA,
        requests=len(arrivals),
        responses_429=throttled,
        whole_minutes=minutes,
        requests_in_whole_minutes=counted,
        busiest_60s_window=busiest,
        first_to_last_per_min=round((len(arrivals) - 1) / span * 60, 1) if span else None,
        whole_sync_per_min=round(len(arrivals) / done.run.seconds * 60, 1),
        sync_s=round(done.run.seconds, 1),
    )


def packing(bench: Bench) -> Figure:
    """Mean body bytes over the 128 KB limit, on the large cohort."""
    members = bench.members(1_000_000)
    _, records = bench.unlimited_sync(members)
    sizes = [r.body_bytes for r in records if r.status == 200]
    mean = statistics.fmean(sizes)
    full = sizes[:-1] or sizes
    ratio = mean / BODY_LIMIT
    return bench.figure(
        "packing: mean body / 128 KB",
        ratio,
        ">= 0.97",
        ratio >= 0.97,
        f"{members:,} 36-character uids; mean bytes of the request bodies the emulator "
        f"accepted / {BODY_LIMIT:,} (the runner's default limit)",
        members=members,
        requests=len(sizes),
        mean_body_bytes=round(mean),
        smallest_but_last=min(full),
        last_body_bytes=sizes[-1],
        uids_per_request=round(members / len(sizes)),
        mean_over_131072=round(mean / 131_072, 3),
        **bench.memory_limits(members),
    )


def runner_overhead(bench: Bench) -> Figure:
    """Wall time of `dbt-moengage sync` over a bare script doing the same job.

    The bare script (bench/bare_client.py) runs one query, packs with orjson, posts from as
    many threads as the runner keeps requests in flight, and records each accepted
    request's uids in a state table of the same engine, one insert per request: the
    runner's guarantee, with nothing else (no distinct, no delta against the state, no
    retries, no lock, no run rows). Each run gets a fresh copy of the audience; both run
    in turn against one unlimited emulator in its own process, OVERHEAD_REPEATS times
    each; the ratio compares the medians.
    """
    members = bench.members(1_000_000)
    bare: list[ChildRun] = []
    runner: list[Sync] = []
    emulator_cpu: dict[str, float] = {"bare": 0.0, "runner": 0.0}
    with bench.emulator() as emulator:
        for _ in range(OVERHEAD_REPEATS):
            copy = bench.copy(members)
            before = emulator.cpu_seconds()
            bare.append(bare_client(copy, emulator.url))
            bench.audiences.discard(copy)
            middle = emulator.cpu_seconds()
            copy = bench.copy(members)
            runner.append(bench.sync(copy, emulator.url, UNLIMITED))
            bench.audiences.discard(copy)
            emulator_cpu["bare"] += middle - before
            emulator_cpu["runner"] += emulator.cpu_seconds() - middle
    bare_out = [json.loads(r.stdout) for r in bare]
    writes = state_writes(bench, members, runner[0].cohort["requests"])
    dbt_s = dbt_profile_seconds(bench)
    bare_s = statistics.median(r.seconds for r in bare)
    runner_s = statistics.median(s.run.seconds for s in runner)
    ratio = runner_s / bare_s
    return bench.figure(
        "runner overhead: sync / bare client",
        ratio,
        "<= 1.2",
        ratio <= 1.2,
        f"{members:,} uids, unlimited emulator in its own process; median wall seconds of "
        f"{OVERHEAD_REPEATS} runs each, taken in turn, each on a fresh copy; both record every "
        "accepted request's uids in a state table (the bare client: one insert per request). "
        "runner_cohort_s: the cohort's own time in the runner's report; "
        "runner_outside_cohort_s: the rest (start-up: Python, dbt rendering the profile, the "
        "manifest, the state tables; the report); cohort_over_bare: the median of "
        "runner_cohort_s / the bare client's median. bare_state_write_s: the bare "
        "client's inserts; state_writes_alone: the runner's state writes of the same uids (and "
        "the close that folds them into the file), timed alone. dbt_profile_s: importing dbt "
        "and rendering the profile with it, which every run does and the bare client does not "
        "(bench/dbt_profile.py); floor_with_dbt_profile: (bare client + dbt_profile_s) / bare "
        "client, the ratio of a runner doing only the bare client's work and that",
        members=members,
        runner_s=[round(s.run.seconds, 2) for s in runner],
        bare_s=[round(r.seconds, 2) for r in bare],
        runner_requests=runner[0].cohort["requests"],
        bare_requests=bare_out[0]["requests"],
        runner_cohort_s=[round(s.cohort["seconds"], 2) for s in runner],
        runner_outside_cohort_s=round(
            statistics.median(s.run.seconds - s.cohort["seconds"] for s in runner), 2
        ),
        cohort_over_bare=round(statistics.median(s.cohort["seconds"] for s in runner) / bare_s, 2),
        runner_cpu_s=round(statistics.median(s.run.cpu_seconds for s in runner), 2),
        bare_cpu_s=round(statistics.median(r.cpu_seconds for r in bare), 2),
        bare_state_write_s=round(statistics.median(o["state_write_seconds"] for o in bare_out), 2),
        emulator_cpu_s_per_run={k: round(v / OVERHEAD_REPEATS, 2) for k, v in emulator_cpu.items()},
        emulator_nagle_fixed_by_bench=emulator.nagle_fixed_here,
        state_writes_alone_s=round(json.loads(writes.stdout)["seconds"], 2),
        state_writes_alone_cpu_s=round(writes.cpu_seconds, 2),
        dbt_profile_s=round(dbt_s, 2),
        floor_with_dbt_profile=round((bare_s + dbt_s) / bare_s, 2),
    )


def bare_client(copy: Copy, url: str) -> ChildRun:
    """bench/bare_client.py on `copy`, posting to `url`, in a process of its own."""
    run = run_child(
        [
            sys.executable,
            str(HERE / "bare_client.py"),
            *copy.source,
            "--table",
            copy.table,
            "--state-table",
            copy.bare_state_table,
            "--url",
            url,
            "--threads",
            "4",  # the runner's default MOENGAGE_MAX_IN_FLIGHT
        ],
        base_env(),
    )
    if run.returncode != 0:
        raise RuntimeError(f"bare client failed:\n{run.stderr}")
    return run


def dbt_profile(copy: Copy) -> ChildRun:
    """bench/dbt_profile.py (dbt imported, the profile of `copy` rendered), in a process of
    its own; its stdout gives its own seconds, from before the import."""
    run = run_child(
        [sys.executable, str(HERE / "dbt_profile.py"), str(PROJECT)], base_env(**copy.env)
    )
    if run.returncode != 0:
        raise RuntimeError(f"rendering the profile failed:\n{run.stderr}")
    return run


def dbt_profile_seconds(bench: Bench) -> float:
    """Median seconds of bench/dbt_profile.py (dbt imported, the profile rendered)."""
    copy = bench.copy(bench.members(1_000))
    runs = [json.loads(dbt_profile(copy).stdout)["seconds"] for _ in range(OVERHEAD_REPEATS)]
    bench.audiences.discard(copy)
    return statistics.median(runs)


def marginal_cost(bench: Bench) -> Figure:
    """What each uid costs the runner beyond the first 1M, over what it costs the bare client.

    (runner at 5M - runner at 1M) / (bare client at 5M - bare client at 1M): what is paid
    once per run (start-up, dbt rendering the profile, the manifest, the state tables, the
    report; the bare client's own start-up) cancels out, so the ratio is that of the work
    that grows with the audience. Wall seconds of each process, as the overhead figure
    compares (cohort_ratio: the same with the runner's cohort seconds, its report's, over
    the bare client's wall seconds, as the overhead figure's cohort_over_bare). The runner's
    syncs are Bench.unlimited_sync's (shared with packing, peak RSS, naive requests); the
    bare client runs as there, on a fresh copy against an unlimited emulator of its own,
    once at each size.
    """
    small, large = bench.members(1_000_000), bench.members(5_000_000)
    runner = {members: bench.unlimited_sync(members)[0] for members in (small, large)}
    bare = {members: bench.unlimited_bare(members) for members in (small, large)}
    bare_out = {members: json.loads(run.stdout) for members, run in bare.items()}
    bare_growth = bare[large].seconds - bare[small].seconds
    wall_growth = runner[large].run.seconds - runner[small].run.seconds
    cohort_growth = runner[large].cohort["seconds"] - runner[small].cohort["seconds"]
    # A smoke run's sizes are small enough for noise to swamp the bare client's growth.
    ratio = wall_growth / bare_growth if bare_growth > 0 else math.inf
    cohort_ratio = cohort_growth / bare_growth if bare_growth > 0 else math.inf
    return bench.figure(
        "marginal cost: runner / bare client, 1M to 5M uids",
        ratio,
        "<= 1.2",
        ratio <= 1.2,
        f"(sync at {large:,} uids - sync at {small:,}) / (bare client at {large:,} - bare "
        f"client at {small:,}), wall seconds of each process (as the overhead figure "
        "compares), each on a fresh copy against an unlimited emulator of its own, once at "
        "each size: what is paid once per run cancels out. cohort_ratio: the growth of the "
        "runner's cohort seconds (its report's, start-up left out) over the bare client's "
        "wall growth",
        small=small,
        large=large,
        runner_s={
            small: round(runner[small].run.seconds, 2),
            large: round(runner[large].run.seconds, 2),
        },
        runner_cohort_s={
            small: round(runner[small].cohort["seconds"], 2),
            large: round(runner[large].cohort["seconds"], 2),
        },
        bare_s={small: round(bare[small].seconds, 2), large: round(bare[large].seconds, 2)},
        runner_growth_s=round(wall_growth, 2),
        runner_cohort_growth_s=round(cohort_growth, 2),
        bare_growth_s=round(bare_growth, 2),
        wall_ratio=round(ratio, 3),
        cohort_ratio=round(cohort_ratio, 3),
        runner_requests={
            small: runner[small].cohort["requests"],
            large: runner[large].cohort["requests"],
        },
        bare_requests={small: bare_out[small]["requests"], large: bare_out[large]["requests"]},
        **bench.memory_limits(small, large),
    )


def one_uid_cohort(bench: Bench, url: str, models: int | None = None) -> tuple[Copy, int]:
    """A fresh copy of the one-uid audience, synced once against `url`, and its manifest's
    bytes: the cohort holds its one uid, so a re-run has nothing to do.

    The audience is built at ONE_UID members (bench.copy, not bench.members, which floors
    at 1,000). `models`: the copy's target/manifest.json (where the runner reads it: the
    copy's DBT_TARGET_PATH) first padded to that many models (bench/padded_manifest.py).
    """
    copy = bench.copy(ONE_UID)
    manifest = copy.folder / "target" / "manifest.json"
    if models is not None:
        padded = run_child(
            [
                sys.executable,
                str(HERE / "padded_manifest.py"),
                str(manifest),
                "--models",
                str(models),
                "--out",
                str(manifest),
            ],
            base_env(),
        )
        if padded.returncode != 0:
            raise RuntimeError(f"padding the manifest failed:\n{padded.stderr}")
        assert json.loads(padded.stdout)["models"] == models
    first = bench.sync(copy, url, UNLIMITED)
    assert first.cohort["added"] == ONE_UID and first.cohort["requests"] == 1, first.cohort
    return copy, manifest.stat().st_size


def noop(bench: Bench, copy: Copy, url: str) -> Sync:
    """A re-run of `copy`'s cohort with nothing changed: it must send nothing."""
    done = bench.sync(copy, url, UNLIMITED)
    assert done.cohort["requests"] == 0 and done.cohort["added"] == 0, done.cohort
    return done


def sent_members(records: list[Record]) -> int:
    """The members of every request the emulator accepted."""
    return sum(r.members for r in records if r.status == 200)


def fixed_cost(bench: Bench) -> Figure:
    """What a run costs when it has nothing to do, over the least any dbt-reading tool pays.

    A one-uid cohort, synced once; then `dbt-moengage sync` re-runs it with nothing
    changed: start-up, the profile, the manifest, the state, one cohort found unchanged, the
    report. The yardstick is bench/dbt_profile.py's whole process (Python, importing dbt,
    rendering the same profile), its wall seconds taken by run_child as the sync's are,
    not the seconds it reports itself (dbt_profile_internal_s). Both run in turn,
    OVERHEAD_REPEATS times each, against one unlimited emulator; the ratio compares the
    medians.
    """
    runs: list[Sync] = []
    profiles: list[ChildRun] = []
    with bench.emulator() as emulator:
        copy, manifest_bytes = one_uid_cohort(bench, emulator.url)
        for _ in range(OVERHEAD_REPEATS):
            runs.append(noop(bench, copy, emulator.url))
            profiles.append(dbt_profile(copy))
    bench.audiences.discard(copy)
    assert sent_members(emulator.records) == ONE_UID
    noop_s = statistics.median(r.run.seconds for r in runs)
    profile_s = statistics.median(p.seconds for p in profiles)
    ratio = noop_s / profile_s
    return bench.figure(
        "fixed cost: no-op run / dbt import and profile",
        ratio,
        "<= 1.3",
        ratio <= 1.3,
        f"a {ONE_UID}-uid cohort (its audience built at that size), synced once, then "
        "re-run with nothing changed; wall seconds of the `dbt-moengage sync` process / of a "
        "process that only imports dbt and renders the same profile (bench/dbt_profile.py, "
        f"its whole process), medians of {OVERHEAD_REPEATS} runs each, taken in turn, against "
        "an unlimited emulator. noop_cohort_s: the cohort's own seconds in the runner's "
        "report; dbt_profile_internal_s: the seconds dbt_profile.py reports (import and "
        "render, without Python's start-up)",
        members=ONE_UID,
        noop_s=[round(r.run.seconds, 2) for r in runs],
        dbt_profile_process_s=[round(p.seconds, 2) for p in profiles],
        noop_cohort_s=round(statistics.median(r.cohort["seconds"] for r in runs), 3),
        noop_outside_cohort_s=round(
            statistics.median(r.run.seconds - r.cohort["seconds"] for r in runs), 2
        ),
        dbt_profile_internal_s=round(
            statistics.median(json.loads(p.stdout)["seconds"] for p in profiles), 2
        ),
        noop_cpu_s=round(statistics.median(r.run.cpu_seconds for r in runs), 2),
        dbt_profile_cpu_s=round(statistics.median(p.cpu_seconds for p in profiles), 2),
        noop_rss_mb=round(statistics.median(r.run.max_rss_mb for r in runs)),
        dbt_profile_rss_mb=round(statistics.median(p.max_rss_mb for p in profiles)),
        manifest_mb=round(manifest_bytes / 1e6, 2),
    )


def project_size(bench: Bench) -> Figure:
    """A no-op run's start-up with a large project's manifest, over a small project's.

    The fixed-cost figure's run (a one-uid cohort, synced once, re-run with nothing
    changed) on two copies whose target/manifest.json was replaced by one generated from
    the copy's own (bench/padded_manifest.py): the cohort's node as dbt wrote it plus
    ordinary models of about 10 KB each (SQL, columns, config, depends_on), LARGE_PROJECT
    models in all in one, SMALL_PROJECT in the other. Each is synced once with its
    manifest, then both re-run in turn, OVERHEAD_REPEATS times each, against one unlimited
    emulator; the ratio compares the medians of the sync processes' wall seconds.
    """
    runs: dict[int, list[Sync]] = {SMALL_PROJECT: [], LARGE_PROJECT: []}
    copies: dict[int, Copy] = {}
    sizes: dict[int, int] = {}
    with bench.emulator() as emulator:
        for models in runs:
            copies[models], sizes[models] = one_uid_cohort(bench, emulator.url, models)
        for _ in range(OVERHEAD_REPEATS):
            for models, done in runs.items():
                done.append(noop(bench, copies[models], emulator.url))
    for copy in copies.values():
        bench.audiences.discard(copy)
    assert sent_members(emulator.records) == ONE_UID * len(copies)
    seconds = {
        models: statistics.median(r.run.seconds for r in done) for models, done in runs.items()
    }
    ratio = seconds[LARGE_PROJECT] / seconds[SMALL_PROJECT]
    return bench.figure(
        f"project size: start-up with a {LARGE_PROJECT:,}-model manifest / a "
        f"{SMALL_PROJECT}-model one",
        ratio,
        "<= 1.5",
        ratio <= 1.5,
        f"the fixed-cost figure's no-op re-run of a {ONE_UID}-uid cohort, its copy's "
        "target/manifest.json replaced by a generated one (bench/padded_manifest.py: the "
        "cohort's node and ordinary models of about 10 KB each, with SQL, columns, config "
        f"and depends_on; dbt's macros kept) of {LARGE_PROJECT:,} models / of "
        f"{SMALL_PROJECT}; wall seconds of the sync process, medians of {OVERHEAD_REPEATS} "
        "runs each, taken in turn, against an unlimited emulator",
        manifest_mb={models: round(size / 1e6, 1) for models, size in sizes.items()},
        noop_s={models: [round(r.run.seconds, 2) for r in done] for models, done in runs.items()},
        noop_cohort_s={
            models: round(statistics.median(r.cohort["seconds"] for r in done), 3)
            for models, done in runs.items()
        },
        noop_cpu_s={
            models: round(statistics.median(r.run.cpu_seconds for r in done), 2)
            for models, done in runs.items()
        },
        noop_rss_mb={
            models: round(statistics.median(r.run.max_rss_mb for r in done))
            for models, done in runs.items()
        },
    )


def state_writes(bench: Bench, members: int, requests: int) -> ChildRun:
    """bench/state_writes.py on a fresh copy: the runner's state writes alone, in a process."""
    copy = bench.copy(members)
    run = run_child(
        [
            sys.executable,
            str(HERE / "state_writes.py"),
            *copy.source,
            "--table",
            copy.table,
            "--state-schema",
            copy.state_schema,
            "--requests",
            str(requests),
        ],
        base_env(),
    )
    bench.audiences.discard(copy)
    if run.returncode != 0:
        raise RuntimeError(f"state writes failed:\n{run.stderr}")
    return run


def noop_rerun(bench: Bench) -> Figure:
    """A re-run with nothing changed, as a fraction of the first sync of the same cohort.

    The first sync runs as in production: at MoEngage's 300 requests/min, against an
    emulator that enforces it. The same pair against an unlimited emulator is reported too.
    """
    members = bench.members(1_000_000)
    copy = bench.copy(members)
    with bench.emulator(MOENGAGE_QUOTA) as emulator:
        first = bench.sync(copy, emulator.url, str(MOENGAGE_QUOTA))
        noop = bench.sync(copy, emulator.url, str(MOENGAGE_QUOTA))
    bench.audiences.discard(copy)
    throttled = sum(1 for r in emulator.records if r.status == 429)
    assert first.cohort["added"] == members
    assert noop.cohort["added"] == 0 and noop.cohort["requests"] == 0
    copy = bench.copy(members)
    with bench.emulator() as emulator:
        first_fast = bench.sync(copy, emulator.url, UNLIMITED)
        noop_fast = bench.sync(copy, emulator.url, UNLIMITED)
    bench.audiences.discard(copy)
    ratio = noop.run.seconds / first.run.seconds
    return bench.figure(
        "no-op re-run / first sync",
        ratio,
        "<= 0.1",
        ratio <= 0.1,
        f"{members:,} uids; first sync at {MOENGAGE_QUOTA}/min, then a re-run, wall seconds",
        members=members,
        first_sync_s=round(first.run.seconds, 2),
        first_sync_requests=first.cohort["requests"],
        responses_429=throttled,
        noop_rerun_s=round(noop.run.seconds, 2),
        noop_rerun_requests=noop.cohort["requests"],
        unlimited_api_first_sync_s=round(first_fast.run.seconds, 2),
        unlimited_api_noop_s=round(noop_fast.run.seconds, 2),
        unlimited_api_ratio=round(noop_fast.run.seconds / first_fast.run.seconds, 3),
    )


def noop_at_10m(bench: Bench) -> Figure:
    """An unchanged re-run of a 10M-member cohort over its first sync, cohorts' own seconds.

    Bench.unlimited_sync's sync at that size (shared with the peak-RSS figure) and the
    re-run that follows it on the same copy, against the same unlimited emulator. At this
    size a no-op's work is reading the model into its snapshot and finding nothing new
    against the state; the ratio compares the cohorts' seconds (the runner's report,
    start-up left out), as the re-send figure does.
    """
    members = bench.members(10_000_000)
    first, _ = bench.unlimited_sync(members, rerun=True)
    again = bench.reruns[members]
    assert again.cohort["requests"] == 0 and again.cohort["added"] == 0, again.cohort
    ratio = again.cohort["seconds"] / first.cohort["seconds"]
    return bench.figure(
        "no-op at 10M: unchanged re-run / first sync, cohort time",
        ratio,
        "<= 0.25",
        ratio <= 0.25,
        f"{members:,} uids, unlimited emulator, one fresh copy: the cohort's seconds (the "
        "runner's report, start-up left out) of a re-run with nothing changed / of the "
        "first sync just before it; wall_ratio: the same with the processes' wall seconds",
        members=members,
        first_sync_cohort_s=round(first.cohort["seconds"], 2),
        noop_cohort_s=round(again.cohort["seconds"], 2),
        first_sync_run_s=round(first.run.seconds, 2),
        noop_run_s=round(again.run.seconds, 2),
        wall_ratio=round(again.run.seconds / first.run.seconds, 3),
        first_sync_requests=first.cohort["requests"],
        first_sync_rss_mb=round(first.run.max_rss_mb),
        noop_rss_mb=round(again.run.max_rss_mb),
        **bench.memory_limits(members),
    )


def rss_ratio(bench: Bench, name: str, small: int, large: int, target: float, why: str) -> Figure:
    """Peak RSS of the sync process at `large` members over the same at `small`.

    Each sync is one child process, on a fresh copy, against an unlimited emulator;
    os.wait4 gives that child's own ru_maxrss.
    """
    runs = {members: bench.unlimited_sync(members)[0] for members in (small, large)}
    ratio = runs[large].run.max_rss_mb / runs[small].run.max_rss_mb
    return bench.figure(
        name,
        ratio,
        f"<= {target:g}",
        ratio <= target,
        f"peak RSS of the sync process at {large:,} uids / at {small:,} (unlimited emulator, "
        f"fresh copies): {why}",
        small=small,
        large=large,
        small_rss_mb=round(runs[small].run.max_rss_mb),
        large_rss_mb=round(runs[large].run.max_rss_mb),
        small_sync_s=round(runs[small].run.seconds, 1),
        large_sync_s=round(runs[large].run.seconds, 1),
        large_requests=runs[large].cohort["requests"],
        **bench.memory_limits(small, large),
    )


def peak_memory(bench: Bench) -> Figure:
    """Peak RSS at 5M members over 100k: memory does not grow with the audience."""
    small, large = bench.members(100_000), bench.members(5_000_000)
    why = "memory does not grow with the audience"
    return rss_ratio(bench, "peak RSS: 5M / 100k members", small, large, 1.5, why)


def flat_memory(bench: Bench) -> Figure:
    """Peak RSS at 10M members over 1M: flat once the engine's buffers are full."""
    small, large = bench.members(1_000_000), bench.members(10_000_000)
    why = "memory stays flat once the engine's buffers are full"
    return rss_ratio(bench, "peak RSS: 10M / 1M members", small, large, 1.15, why)


def naive_requests(bench: Bench) -> Figure:
    """Requests the runner made over those of a script posting fixed batches of 1,000."""
    members = bench.members(1_000_000)
    done, _ = bench.unlimited_sync(members)
    made = done.cohort["requests"]
    naive = math.ceil(members / NAIVE_BATCH)
    ratio = made / naive
    return bench.figure(
        "requests / naive 1,000-uid batches",
        ratio,
        "lower is better",
        ratio < 1,
        f"{members:,} uids; requests the runner made / ceil(uids / {NAIVE_BATCH:,}); "
        f"minutes each takes at {MOENGAGE_QUOTA}/min",
        members=members,
        runner_requests=made,
        naive_requests=naive,
        runner_minutes_at_300=round(made / MOENGAGE_QUOTA, 2),
        naive_minutes_at_300=round(naive / MOENGAGE_QUOTA, 2),
        **bench.memory_limits(members),
    )


def model_reads(bench: Bench) -> Figure:
    """How many times a sync reads its cohort's model, on Postgres: once, into the snapshot.

    The model is a table: the bench audience, its cohort in mirror mode (an audience of
    its own, as the figure changes its rows). Its reads are pg_stat_user_tables' seq_scan
    + idx_scan, read before and after each run once they settle (the runner's sessions
    report theirs as they end; PostgresAudiences.table_stats). Three runs against one
    unlimited emulator: a first sync, an unchanged re-run, and a mirror run after the uids
    of about 1 row in 256 were replaced by new ones (it removes and adds that many). The
    state's members table is analyzed before each re-run, as autovacuum would have.
    `passes`: the rows those scans read (seq_tup_read + idx_tup_fetch) / the table's rows.
    """
    audiences = bench.audiences
    assert isinstance(audiences, PostgresAudiences), "pg_stat_user_tables is Postgres's"
    members = bench.members(1_000_000)
    copy = bench.copy(members, mode="mirror")
    scans: dict[str, int] = {}
    passes: dict[str, float] = {}
    runs: dict[str, Sync] = {}
    changed = 0
    with bench.emulator() as emulator:
        for run in ("first_sync", "noop_rerun", "mirror_run"):
            if run != "first_sync":
                # As autovacuum would have, between two daily runs: unanalyzed after the
                # first sync, the state reads as empty to the planner, which then anti-joins
                # it with the snapshot by a nested loop (quadratic in the members).
                audiences.execute(f"analyze {copy.state_schema}.moengage_cohort_members")
            if run == "mirror_run":
                changed = audiences.execute(
                    f"update {copy.table} set uid = "
                    f"cast(cast(md5('changed-' || uid) as uuid) as text) where {CHANGED_ROWS}"
                )
            before = audiences.table_stats(copy.table)
            runs[run] = bench.sync(copy, emulator.url, UNLIMITED)
            after = audiences.table_stats(copy.table)
            delta = {k: after[k] - before[k] for k in after}
            scans[run] = delta["seq_scan"] + delta["idx_scan"]
            read = delta["seq_tup_read"] + delta["idx_tup_fetch"]
            passes[run] = round(read / members, 2)
    bench.audiences.discard(copy)
    first, noop, mirror = (
        runs["first_sync"].cohort,
        runs["noop_rerun"].cohort,
        runs["mirror_run"].cohort,
    )
    assert first["added"] == members
    assert noop["requests"] == 0
    assert mirror["added"] == changed and mirror["removed"] == changed and changed > 0
    most = max(scans.values())
    return bench.figure(
        "model reads per sync",
        most,
        "= 1",
        all(n == 1 for n in scans.values()),
        f"{members:,} uids in a table (the model; its cohort in mirror mode), unlimited "
        "emulator; scans of the table (pg_stat_user_tables: seq_scan + idx_scan, read once "
        "settled) during a first sync, an unchanged re-run, and a mirror run after the uids "
        "of about 1 row in 256 changed (the state analyzed before each re-run, as autovacuum "
        "would have); the figure is the most of the three. passes: rows those scans read / "
        "the table's rows",
        members=members,
        scans=scans,
        passes=passes,
        changed_rows=changed,
        mirror_added=mirror["added"],
        mirror_removed=mirror["removed"],
        sync_s={run: round(done.run.seconds, 2) for run, done in runs.items()},
    )


def resend_run(bench: Bench) -> Figure:
    """A run re-sending the due share of a large cohort, over a first sync of as many uids.

    The state is written directly (bench/resend_state.py): every uid of the audience as
    a member, one in DUE_EVERY accepted RESEND_AFTER_DAYS + 1 days ago, the others now; so
    under resend_after: 7d (MOENGAGE_RESEND_AFTER) exactly ceil(members / DUE_EVERY) are
    due and nothing else changes. The runner then re-sends them against an unlimited
    emulator. The comparison: a first sync, with no state, of an audience of as many uids,
    with the same settings. The ratio compares the cohorts' own seconds (the runner's
    report, start-up left out). Each accepted re-send appends its uids' rows to the state,
    and the run deletes their older rows once at the cohort's end: the state it leaves holds
    one row per member again (checked).
    """
    members = bench.members(10_000_000)
    due = math.ceil(members / DUE_EVERY)
    resend_env = {"MOENGAGE_RESEND_AFTER": f"{RESEND_AFTER_DAYS}d"}
    memory_limit = "default"
    copy = bench.copy(members)
    manifest = json.loads((copy.folder / "target" / "manifest.json").read_text())
    description = manifest["nodes"]["model.moengage_bench.audience"]["description"]
    state_args = [
        *copy.source,
        "--table",
        copy.table,
        "--state-schema",
        copy.state_schema,
        "--workspace",
        WORKSPACE,
        "--due-every",
        str(DUE_EVERY),
        "--due-days-ago",
        str(RESEND_AFTER_DAYS + 1),
    ]
    members_table = f"{copy.state_schema}.moengage_cohort_members"
    postgres = bench.audiences if isinstance(bench.audiences, PostgresAudiences) else None
    state: dict[str, int] = {}
    with bench.emulator() as emulator:
        state_args += ["--base-url", emulator.url]
        written = resend_state("write", state_args, "--description", description)
        if postgres is not None:
            before = postgres.table_stats(members_table)
        try:
            resend = bench.sync(copy, emulator.url, UNLIMITED, settings=resend_env)
        except RuntimeError as error:
            # The runner's DuckDB cap (64MB) may not hold the model's snapshot: measured
            # again (on the same state: nothing was sent) with the cap its error suggests.
            if bench.engine != "duckdb" or "Out of Memory" not in str(error):
                raise
            memory_limit = f"{DUCKDB_MEMORY_LIMIT} (the default ran out of memory)"
            resend_env["MOENGAGE_DUCKDB_MEMORY_LIMIT"] = DUCKDB_MEMORY_LIMIT
            resend = bench.sync(copy, emulator.url, UNLIMITED, settings=resend_env)
        if postgres is not None:
            after = postgres.table_stats(members_table)
            state = {k: after[k] - before[k] for k in after}
    alone = resend_state("checkpoints", state_args, "--requests", str(resend.cohort["requests"]))
    bench.audiences.discard(copy)

    copy = bench.copy(due)
    with bench.emulator() as emulator:
        first = bench.sync(copy, emulator.url, UNLIMITED, settings=resend_env)
    bench.audiences.discard(copy)
    assert first.cohort["added"] == due
    assert written["rows"] == members
    done = resend.cohort
    assert done["resent"] == due and done["added"] == 0, done
    assert alone["rows"] == due
    # The run compacted its re-sends: one member row per uid again.
    assert alone["state_rows"] == members, alone
    ratio = done["seconds"] / first.cohort["seconds"]
    extra: dict[str, Any] = {}
    if bench.engine == "duckdb":
        extra["duckdb_memory_limit"] = memory_limit
    if state:
        # What the run did to the state's members table (the snapshot is a table of its own).
        extra["state_seq_scans"] = state["seq_scan"]
        extra["state_idx_scans"] = state["idx_scan"]
        extra["state_rows_updated"] = state["n_tup_upd"]
    return bench.figure(
        "re-send 1/7 of 10M members / first sync of as many",
        ratio,
        "<= 1.3 (issue #24)",
        ratio <= 1.3,
        f"a state of {members:,} members, {due:,} of them due (written directly: accepted "
        f"{RESEND_AFTER_DAYS + 1} days ago, the others now; resend_after {RESEND_AFTER_DAYS}d), "
        f"the model holding the same {members:,} uids; the cohort's seconds (the runner's "
        f"report) of the run re-sending them / of a first sync of {due:,} new uids, both "
        "against an unlimited emulator. resend_checkpoints_alone_s: the run's checkpoint "
        "writes (record_resent, one insert per request) again, timed alone on the state it "
        "left (which holds one row per member: checked); resend_compaction_alone_s: then "
        "what the run does once at its cohort's end (the planner's statistics on Postgres, "
        "then deleting the older rows of the re-sent uids); "
        "state_write_s: writing the state (setup, not timed in the figure); "
        f"duckdb_memory_limit: both runs' MOENGAGE_DUCKDB_MEMORY_LIMIT ({DUCKDB_MEMORY_LIMIT} "
        "when the runner's default of 64MB ran out of memory)",
        members=members,
        resent=done["resent"],
        resend_cohort_s=round(done["seconds"], 2),
        first_sync_cohort_s=round(first.cohort["seconds"], 2),
        resend_run_s=round(resend.run.seconds, 2),
        first_sync_run_s=round(first.run.seconds, 2),
        wall_ratio=round(resend.run.seconds / first.run.seconds, 2),
        resend_requests=done["requests"],
        first_sync_requests=first.cohort["requests"],
        resend_checkpoints_alone_s=round(alone["seconds"], 2),
        resend_compaction_alone_s=round(alone["compact_seconds"], 2),
        resend_rss_mb=round(resend.run.max_rss_mb),
        first_sync_rss_mb=round(first.run.max_rss_mb),
        state_write_s=round(written["seconds"], 1),
        **extra,
    )


def resend_state(action: str, args: list[str], *more: str) -> dict[str, Any]:
    """bench/resend_state.py in a process of its own; its JSON output."""
    run = run_child(
        [sys.executable, str(HERE / "resend_state.py"), action, *args, *more], base_env()
    )
    if run.returncode != 0:
        raise RuntimeError(f"resend_state.py {action} failed:\n{run.stderr}")
    return cast(dict[str, Any], json.loads(run.stdout))


def shared_quota(bench: Bench, runners: int) -> Figure:
    """Runners of one workspace sending at once: their rate while all of them send, over
    the quota.

    `runners` processes start together, each syncing a cohort of its own (the bench
    audience under a cohort id per runner) into one workspace and one state, against an
    emulator that enforces the quota; each is told the whole quota, as a user's would be.
    They share it through the state (dbt_moengage/state/peers.py). The ratio: their
    requests a minute while every runner was sending (from the last runner's first request
    to the first runner's last), over the quota: the mean of the 60 s windows opening at
    each of those requests (paced to a sliding window, requests come in bursts, so a single
    window's count depends on where it opens). Met
    when it is >= 0.9, no request was answered 429, and no 60 s window held more than the
    quota. The audience is sized for about 3 minutes of the quota in all.
    """
    members = bench.members(1_200_000 * 2 // runners)
    copies = [bench.copy(members) for _ in range(runners)]
    state_schema = copies[0].state_schema
    for number, copy in enumerate(copies):
        manifest_path = copy.folder / "target" / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        node = manifest["nodes"]["model.moengage_bench.audience"]
        node["config"]["meta"]["moengage"]["cohort_id"] = f"bench_shared_{number}"
        manifest_path.write_text(json.dumps(manifest))
    shared = [replace(c, env={**c.env, "MOENGAGE_STATE_SCHEMA": state_schema}) for c in copies]
    with bench.emulator(MOENGAGE_QUOTA) as emulator, ThreadPoolExecutor(runners) as pool:
        jobs = [pool.submit(bench.sync, c, emulator.url, str(MOENGAGE_QUOTA)) for c in shared]
        done = [job.result() for job in jobs]
    for copy in copies:
        bench.audiences.discard(copy)
    assert all(d.cohort["added"] == members for d in done)
    records = emulator.records
    throttled = sum(1 for r in records if r.status == 429)
    arrivals = sorted(r.at for r in records if r.status == 200)
    busiest = max(bisect_left(arrivals, start + 60) - i for i, start in enumerate(arrivals))
    by_runner: dict[str | None, list[float]] = {}
    for r in records:
        if r.status == 200:
            by_runner.setdefault(r.cohort_id, []).append(r.at)
    all_sending = max(min(ats) for ats in by_runner.values())
    first_done = min(max(ats) for ats in by_runner.values())
    # The 60 s windows opening at each request while all were sending, closing before the
    # first runner's last request. Paced to a sliding window, requests come in bursts: one
    # window's count depends on where it opens, their mean does not.
    first = bisect_left(arrivals, all_sending)
    windows = [
        bisect_left(arrivals, t + 60) - i
        for i, t in enumerate(arrivals[first:], start=first)
        if t + 60 <= first_done
    ]
    if windows:
        ratio = statistics.mean(windows) / MOENGAGE_QUOTA
    else:  # smoke scale: the runners finish within their first minute
        ratio = sum(1 for t in arrivals if all_sending <= t <= first_done) / MOENGAGE_QUOTA
    met = ratio >= 0.9 and throttled == 0 and busiest <= MOENGAGE_QUOTA and bool(windows)
    return bench.figure(
        f"{runners} runners of one workspace: requests/min while all send / limit",
        ratio,
        ">= 0.9, no 429, no window over the limit",
        met,
        f"{runners} runner processes started together, {members:,} uids each, one workspace "
        f"and one state, at {MOENGAGE_QUOTA}/min (emulator enforces it, each runner told "
        "it); mean requests in the 60 s windows opening at each request while all were "
        "sending / limit",
        runners=runners,
        members_each=members,
        limit_per_min=MOENGAGE_QUOTA,
        requests=len(arrivals),
        responses_429=throttled,
        busiest_60s_window=busiest,
        busiest_window_over_limit=round(busiest / MOENGAGE_QUOTA, 3),
        all_sending_s=round(first_done - all_sending, 1),
        windows=len(windows),
        fewest_in_a_window=min(windows, default=0),
        runs_s=[round(d.run.seconds, 1) for d in done],
        # Each runner's first and last request and request count, seconds from the first.
        runners_first_last_requests=[
            (round(min(ats) - arrivals[0], 1), round(max(ats) - arrivals[0], 1), len(ats))
            for ats in by_runner.values()
        ],
        requests_per_15s=[
            sum(1 for t in arrivals if start <= t - arrivals[0] < start + 15)
            for start in range(0, int(arrivals[-1] - arrivals[0]) + 1, 15)
        ],
    )


# Run in this order whatever --only's: a figure asking Bench.unlimited_sync for a re-run
# (noop10m) comes before the others sharing its size (flat), so they share its first sync.
FIGURES: dict[str, Callable[[Bench], Figure]] = {
    "quota": quota_use,
    "packing": packing,
    "overhead": runner_overhead,
    "marginal": marginal_cost,
    "fixed": fixed_cost,
    "manifest": project_size,
    "noop": noop_rerun,
    "noop10m": noop_at_10m,
    "memory": peak_memory,
    "flat": flat_memory,
    "naive": naive_requests,
    "reads": model_reads,
    "resend": resend_run,
    "shared2": lambda bench: shared_quota(bench, 2),
    "shared4": lambda bench: shared_quota(bench, 4),
}
# The pacer and the packer never touch the warehouse: measured on the first engine only.
ENGINE_FREE = ("quota", "packing")
# Figures that only some engines can give (reads counts Postgres's table statistics).
ENGINE_ONLY = {
    "reads": ("postgres",),
    # A DuckDB sync holds its database file: runners of one file never send at once.
    "shared2": ("postgres",),
    "shared4": ("postgres",),
}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


LABELS = {"duckdb": "DuckDB", "postgres": "Postgres", "bigquery": "BigQuery"}


def verdict(f: Figure) -> str:
    """A figure's ratio and whether it met its target, for the summary table."""
    if f.met is None:
        return f"{f.ratio:.3f} (no target)"
    return f"{f.ratio:.3f} {'met' if f.met else '**not met**'}"


def markdown(
    figures: list[Figure],
    engines: dict[str, dict[str, Any]],
    info: dict[str, Any],
    scale: float,
    seconds: float,
    only_on: dict[str, tuple[str, ...]] | None = None,
    billed: dict[str, list[int | None]] | None = None,
) -> str:
    """The results: one table of every figure on every engine, then a section per engine.

    `only_on`: figure name -> the engines it is measured on, for figures some engines
    cannot give. `billed`: engine -> the bytes billed of each of its syncs, as the runner
    reported them, shown for the engines that bill (BigQuery).
    """
    only_on = only_on or {}
    billed = billed or {}
    lines = [
        "# Benchmark results",
        "",
        f"Measured by `make bench` (scale {scale:g}) on {info['platform']}, "
        f"{info['cpus']} CPUs, Python {info['python']}, {info['date']}; "
        f"load average at start {info['load_average_at_start']}; "
        f"the whole bench took {seconds / 60:.1f} min.",
        "",
        "| figure | target | " + " | ".join(LABELS[e] for e in engines) + " |",
        "| --- | --- |" + " ---: |" * len(engines),
    ]
    first = next(iter(engines), "")
    names = list(dict.fromkeys(f.name for f in figures))
    for name in names:
        cells = []
        target = ""
        for engine in engines:
            found = [f for f in figures if f.name == name and f.engine == engine]
            if found:
                f = found[0]
                if f.met is not None or not target:
                    target = f.target
                cells.append(verdict(f))
            elif name in only_on:
                cells.append(f"({' and '.join(LABELS[e] for e in only_on[name])} only)")
            else:
                cells.append(f"(engine-free: see {LABELS[first]})")
        lines.append(f"| {name} | {target} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Quota use and packing do not depend on the engine (the pacer and the packer never "
        f"touch the warehouse): they are measured on {LABELS[first]} only.",
    ]
    for name, where in only_on.items():
        shown = " and ".join(LABELS[e] for e in where)
        lines[-1] += f" {name[0].upper()}{name[1:]} is measured on {shown} only."
    for engine in engines:
        if engine in UNTARGETED:
            lines[-1] += (
                f" {LABELS[engine]} on its emulator is reported too, without a target "
                "(its section says why)."
            )

    for engine, about in engines.items():
        shown = ", ".join(f"{k} {v}" for k, v in about.items())
        lines += ["", f"## {LABELS[engine]}", "", f"{shown}."]
        lines += engine_notes(engine, scale, billed.get(engine, []))
        lines += [
            "",
            "| figure | ratio | target | met | detail |",
            "| --- | ---: | --- | --- | --- |",
        ]
        for f in figures:
            if f.engine != engine:
                continue
            detail = ", ".join(f"{k}={v}" for k, v in f.detail.items())
            met = "n/a" if f.met is None else "yes" if f.met else "NO"
            lines.append(f"| {f.name} | {f.ratio:.3f} | {f.target} | {met} | {detail} |")
    lines += ["", "How each figure is measured:", ""]
    hows: dict[str, str] = {}
    for f in figures:
        if hows.setdefault(f.name, f.how) != f.how:  # other sizes on a capped engine
            hows[f"{f.name} ({LABELS[f.engine]})"] = f.how
    lines += [f"- {name}: {how}." for name, how in hows.items()]
    return "\n".join(lines) + "\n"


def engine_scale(engine: str, scale: float) -> float:
    """The scale an engine's sizes are taken at: `scale`, or its cap (MAX_SCALE)."""
    return min(scale, MAX_SCALE.get(engine, scale))


def engine_notes(engine: str, scale: float, billed: list[int | None]) -> list[str]:
    """What an engine's section says before its table: what the engine is, its size cap,
    the bytes its syncs billed."""
    notes = [ABOUT[engine]] if engine in ABOUT else []
    if engine_scale(engine, scale) < scale:
        notes.append(
            f"Its sizes are capped at those of scale {engine_scale(engine, scale):g} (each "
            "row's detail gives them): on the emulator a sync takes about a minute per "
            "500,000 uids, so at scale 1 most figures would take 10 to 30 minutes each."
        )
    if engine == "bigquery":
        counts = Counter("none" if b is None else f"{b:,} bytes" for b in billed)
        found = ", ".join(f"{value} in {n}" for value, n in counts.items()) or "no syncs"
        notes.append(
            "The emulator reports no bytes billed (its jobs carry none), so these figures say "
            "nothing of what a sync costs on BigQuery. The runner's per-cohort `bytes_billed` "
            f"(target/moengage_sync_results.json) over this engine's {len(billed)} syncs: "
            f"{found}."
        )
    return [line for note in notes for line in ("", note)]


def main(argv: list[str] | None = None) -> int:
    """Run the selected figures on each engine and write results.json and RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="shrink sizes (e.g. 0.01)")
    parser.add_argument("--only", nargs="*", choices=list(FIGURES), help="figures to run")
    parser.add_argument(
        "--engines", nargs="*", choices=ENGINES, default=list(ENGINES), help="engines to run on"
    )
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the results")
    args = parser.parse_args(argv)

    info = machine()
    started = time.perf_counter()
    figures: list[Figure] = []
    engines: dict[str, dict[str, Any]] = {}
    only_on: dict[str, tuple[str, ...]] = {}
    billed: dict[str, list[int | None]] = {}
    with tempfile.TemporaryDirectory(prefix="moengage-bench-") as tmp:
        for index, engine in enumerate(args.engines):
            with audiences(engine, Path(tmp)) as found:
                engines[engine] = found.describe()
                scale = engine_scale(engine, args.scale)
                if scale < args.scale:
                    engines[engine]["scale"] = f"{scale:g} (capped)"
                bench = Bench(scale=scale, work=Path(tmp), audiences=found)
                billed[engine] = bench.billed
                for name in [n for n in FIGURES if not args.only or n in args.only]:
                    if index > 0 and name in ENGINE_FREE:
                        continue
                    if engine not in ENGINE_ONLY.get(name, ENGINES):
                        continue
                    print(f"running {name} on {found.label} ...", flush=True)
                    figures.append(FIGURES[name](bench))
                    f = figures[-1]
                    if name in ENGINE_ONLY:
                        only_on[f.name] = ENGINE_ONLY[name]
                    met = "" if f.met is None else ": met" if f.met else ": NOT met"
                    print(
                        f"  {f.name}: {f.ratio:.3f} (target {f.target}{met}) {f.detail}",
                        flush=True,
                    )
    seconds = time.perf_counter() - started
    # A child's peak RSS counts the bench's own at fork: it must stay well below a sync's.
    info["bench_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "scale": args.scale,
                "machine": info,
                "seconds": round(seconds, 1),
                "engines": engines,
                "engine_free": {"figures": list(ENGINE_FREE), "measured_on": args.engines[:1]},
                "engine_only": {name: list(where) for name, where in ENGINE_ONLY.items()},
                "untargeted": [e for e in args.engines if e in UNTARGETED],
                "bytes_billed": {e: b for e, b in billed.items() if e == "bigquery"},
                "figures": [asdict(f) for f in figures],
            },
            indent=2,
        )
        + "\n"
    )
    text = markdown(figures, engines, info, args.scale, seconds, only_on, billed)
    (args.out / "RESULTS.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: dbt-moengage measured against the emulator over loopback.

Every figure is a ratio of two timings taken in the same run, so a shared, noisy
machine moves both sides alike. Sizes scale with --scale (CI uses a small one as a
smoke test; no threshold is asserted there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbt_moengage.emulator import Emulator, EmulatorConfig

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "project"
WORKSPACE = "BENCH_WORKSPACE"
API_KEY = "bench-key-not-secret"


@dataclass
class Figure:
    """One benchmark figure: a ratio, what it compares, and the target it should meet."""

    name: str
    ratio: float
    target: str
    met: bool
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Bench:
    """Shared set-up: a work folder, built audiences, a way to run the CLI."""

    scale: float
    work: Path
    built: dict[int, Path] = field(default_factory=dict)

    def members(self, full: int) -> int:
        """A size scaled down for smoke runs, never below 1,000."""
        return max(1_000, int(full * self.scale))

    def audience(self, members: int) -> Path:
        """A dbt build of the bench project with `members` uids; returns its target dir."""
        if members in self.built:
            return self.built[members]
        folder = self.work / f"audience-{members}"
        folder.mkdir()
        env = self.env(folder)
        dbt = Path(sys.executable).with_name("dbt")
        subprocess.run(
            [
                str(dbt),
                "build",
                "--profiles-dir",
                str(PROJECT),
                "--project-dir",
                str(PROJECT),
                "--vars",
                json.dumps({"members": members}),
                "--quiet",
            ],
            env=env,
            check=True,
            cwd=PROJECT,
        )
        self.built[members] = folder
        return folder

    def fresh_copy(self, members: int) -> Path:
        """A copy of a built audience with no sync state yet."""
        source = self.audience(members)
        folder = Path(tempfile.mkdtemp(dir=self.work, prefix=f"run-{members}-"))
        shutil.copytree(source / "target", folder / "target")
        shutil.copy(source / "bench.duckdb", folder / "bench.duckdb")
        return folder

    @staticmethod
    def env(folder: Path, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "BENCH_DUCKDB_PATH": str(folder / "bench.duckdb"),
            "DBT_TARGET_PATH": str(folder / "target"),
            "DBT_LOG_PATH": str(folder / "logs"),
            "MOENGAGE_WORKSPACE_ID": WORKSPACE,
            "MOENGAGE_API_KEY": API_KEY,
            **extra,
        }

    def sync(
        self, folder: Path, base_url: str, *args: str, **extra: str
    ) -> tuple[float, dict[str, Any]]:
        """Run `dbt-moengage sync` as a user would; return wall seconds and the cohort report."""
        env = self.env(folder, MOENGAGE_BASE_URL=base_url, **extra)
        started = time.perf_counter()
        done = subprocess.run(
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
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"sync failed:\n{done.stdout}\n{done.stderr}")
        report = json.loads((folder / "target" / "moengage_sync_results.json").read_text())
        return seconds, report["cohorts"][0]


def unlimited_emulator() -> Emulator:
    return Emulator(
        EmulatorConfig(workspace_id=WORKSPACE, api_key=API_KEY, rate_limit_per_min=None)
    ).start()


def quota_emulator(per_minute: int = 300) -> Emulator:
    return Emulator(
        EmulatorConfig(workspace_id=WORKSPACE, api_key=API_KEY, rate_limit_per_min=per_minute)
    ).start()


def noop_rerun(bench: Bench) -> Figure:
    """A re-run with nothing changed, as a fraction of the first sync of the same cohort.

    The first sync runs as in production: at MoEngage's 300 requests/min, against an
    emulator that enforces it. The same pair against an unlimited emulator is reported too.
    """
    members = bench.members(1_000_000)
    folder = bench.fresh_copy(members)
    with quota_emulator() as emulator:
        first_s, first = bench.sync(folder, emulator.url)
        noop_s, noop = bench.sync(folder, emulator.url)
        throttled = sum(1 for r in emulator.requests() if r.status == 429)
    assert first["added"] == members and noop["added"] == 0 and noop["requests"] == 0
    folder = bench.fresh_copy(members)
    with unlimited_emulator() as emulator:
        fast = {"MOENGAGE_RATE_LIMIT_PER_MIN": "1000000"}
        first_fast_s, _ = bench.sync(folder, emulator.url, **fast)
        noop_fast_s, _ = bench.sync(folder, emulator.url, **fast)
    ratio = noop_s / first_s
    return Figure(
        name="no-op re-run / first sync",
        ratio=ratio,
        target="<= 0.1",
        met=ratio <= 0.1,
        detail={
            "members": members,
            "first_sync_s": round(first_s, 2),
            "first_sync_requests": first["requests"],
            "responses_429": throttled,
            "noop_rerun_s": round(noop_s, 2),
            "noop_rerun_requests": noop["requests"],
            "unlimited_api_first_sync_s": round(first_fast_s, 2),
            "unlimited_api_noop_s": round(noop_fast_s, 2),
            "unlimited_api_ratio": round(noop_fast_s / first_fast_s, 3),
        },
    )


FIGURES: dict[str, Callable[[Bench], Figure]] = {
    "noop": noop_rerun,
}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def markdown(figures: list[Figure], info: dict[str, Any], scale: float) -> str:
    """The results as a readable table."""
    lines = [
        "# Benchmark results",
        "",
        f"Measured by `make bench` (scale {scale:g}) on {info['platform']}, "
        f"{info['cpus']} CPUs, Python {info['python']}, {info['date']}.",
        "",
        "| figure | ratio | target | met | detail |",
        "| --- | ---: | --- | --- | --- |",
    ]
    for f in figures:
        detail = ", ".join(f"{k}={v}" for k, v in f.detail.items())
        lines.append(
            f"| {f.name} | {f.ratio:.3f} | {f.target} | {'yes' if f.met else 'NO'} | {detail} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the selected figures and write bench/results.json and bench/RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="shrink sizes (e.g. 0.01)")
    parser.add_argument("--only", nargs="*", choices=sorted(FIGURES), help="figures to run")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the results")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="moengage-bench-") as tmp:
        bench = Bench(scale=args.scale, work=Path(tmp))
        figures = []
        for name in args.only or list(FIGURES):
            print(f"running {name} ...", flush=True)
            figures.append(FIGURES[name](bench))
            f = figures[-1]
            print(f"  {f.name}: {f.ratio:.3f} (target {f.target}) {f.detail}", flush=True)

    info = machine()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps(
            {"scale": args.scale, "machine": info, "figures": [f.__dict__ for f in figures]},
            indent=2,
        )
        + "\n"
    )
    text = markdown(figures, info, args.scale)
    (args.out / "RESULTS.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# `make demo`: build integration_tests on DuckDB, start the emulator, sync, show what landed.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/.venv/bin"
PROJECT=integration_tests
WORK="$(mktemp -d)"
EMULATOR_PID=""

cleanup() {
    if [[ -n "$EMULATOR_PID" ]]; then kill "$EMULATOR_PID" 2>/dev/null || true; wait "$EMULATOR_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "==> dbt build ($PROJECT on DuckDB, a fresh database each demo)"
rm -f "$PROJECT/target/integration_tests.duckdb" "$PROJECT/target/integration_tests.duckdb.wal"
(cd "$PROJECT" && "$BIN/dbt" deps --profiles-dir . --quiet && "$BIN/dbt" build --profiles-dir .)

echo "==> starting the MoEngage emulator on 127.0.0.1"
"$BIN/dbt-moengage" emulator --port 0 >"$WORK/emulator.log" 2>&1 &
EMULATOR_PID=$!
for _ in $(seq 1 100); do
    URL="$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/emulator.log" | head -1 || true)"
    [[ -n "$URL" ]] && break
    sleep 0.1
done
[[ -n "${URL:-}" ]] || { cat "$WORK/emulator.log"; echo "emulator did not start" >&2; exit 1; }
echo "    $URL"

export MOENGAGE_BASE_URL="$URL"
echo "==> dbt-moengage sync"
"$BIN/dbt-moengage" sync --project-dir "$PROJECT" --profiles-dir "$PROJECT"

echo "==> dbt-moengage sync (again: nothing changed, so nothing is sent)"
"$BIN/dbt-moengage" sync --project-dir "$PROJECT" --profiles-dir "$PROJECT"

echo "==> members per cohort, as the emulator holds them"
"$BIN/python" - "$URL" <<'PY'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/cohorts") as response:
    cohorts = json.load(response)["cohorts"]
for cohort_id, info in sorted(cohorts.items()):
    print(f"    {cohort_id:<24} {info['cohort_name']:<22} {info['members']:>6} members")
PY

echo "==> sync history, as analysts see it in dbt (model moengage_cohort_status)"
# The package's views were built before the first sync made the state, so they were empty;
# building them again makes them read it.
(cd "$PROJECT" && "$BIN/dbt" run --profiles-dir . --select package:moengage --quiet \
    && "$BIN/dbt" show --profiles-dir . --select moengage_cohort_status --quiet)

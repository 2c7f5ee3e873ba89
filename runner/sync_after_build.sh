#!/usr/bin/env bash
# Build the dbt project, then sync to MoEngage the cohorts whose models built.
#
#   DBT_PROJECT_DIR=analytics runner/sync_after_build.sh [dbt build arguments...]
#
# The sync runs even when `dbt build` fails: with --only-built it sends the cohorts whose
# model built and passed its tests, and skips the others. The script exits with the worse of
# the two exit codes, so cron and CI still see a failed build.
#
# Environment:
#   DBT_PROJECT_DIR      the dbt project (default: the current folder)
#   RUN_DBT_DEPS         1 to run `dbt deps` first (default: 0)
#   MOENGAGE_SYNC_ARGS   extra `dbt-moengage sync` arguments, e.g. "--target prod"
#   DBT, DBT_MOENGAGE    the commands to run (default: dbt, dbt-moengage)
#   MOENGAGE_WORKSPACE_ID, MOENGAGE_API_KEY, MOENGAGE_DATA_CENTER, ...  as for the sync;
#   DBT_PROFILES_DIR, DBT_TARGET_PATH  read by both dbt and dbt-moengage.
set -euo pipefail

project_dir="${DBT_PROJECT_DIR:-.}"
dbt_cmd="${DBT:-dbt}"
sync_cmd="${DBT_MOENGAGE:-dbt-moengage}"
read -r -a sync_args <<< "${MOENGAGE_SYNC_ARGS:-}"

if [[ ! -f "$project_dir/dbt_project.yml" ]]; then
    echo "sync_after_build: no dbt_project.yml in '$project_dir'; set DBT_PROJECT_DIR" >&2
    exit 2
fi

# dbt's target folder, resolved as dbt-moengage resolves it.
target_dir="${DBT_TARGET_PATH:-target}"
if [[ "$target_dir" != /* ]]; then
    target_dir="$project_dir/$target_dir"
fi
# A build that stops before writing run results must not leave the last run's behind:
# the sync would then trust an old build.
rm -f "$target_dir/run_results.json"

if [[ "${RUN_DBT_DEPS:-0}" == "1" ]]; then
    (cd "$project_dir" && "$dbt_cmd" deps)
fi

build_status=0
(cd "$project_dir" && "$dbt_cmd" build "$@") || build_status=$?

sync_status=0
"$sync_cmd" sync --only-built --project-dir "$project_dir" ${sync_args[@]+"${sync_args[@]}"} \
    || sync_status=$?

echo "sync_after_build: dbt build exited $build_status, dbt-moengage sync exited $sync_status" >&2
if (( build_status > sync_status )); then
    exit "$build_status"
fi
exit "$sync_status"

#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs every fuzz target in turn, each from its committed corpus (new inputs go to a scratch
# directory, the committed corpus is only read), and prints one line per target: executions, crashes,
# coverage (libFuzzer's cov: edges and ft: features at the end). libFuzzer stops a target at its first
# crash, sanitizer report or leak, and writes the input to the artifact directory; the script then
# exits 1.
#
#   tests/fuzz/run.sh [--runs N] [--max-time SECONDS] [--artifacts DIR] [TARGET...]
#
# At least one of --runs and --max-time; with both, a target stops at whichever comes first. Builds in
# $AUTOBALLOON_FUZZ_BUILD (default build/fuzz) with clang, ASan and UBSan.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${AUTOBALLOON_FUZZ_BUILD:-$top/build/fuzz}
runs=-1
max_time=0
artifacts=
targets=()
while [ $# -gt 0 ]; do
        case $1 in
        --runs) runs=$2; shift 2 ;;
        --max-time) max_time=$2; shift 2 ;;
        --artifacts) artifacts=$2; shift 2 ;;
        -*) echo "fuzz/run.sh: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
        esac
done
[ "$runs" != -1 ] || [ "$max_time" != 0 ] || { echo "fuzz/run.sh: give --runs or --max-time" >&2; exit 2; }
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cd "$top/tests/fuzz/corpus" && ls)

[ -d "$build" ] || CC=clang meson setup "$build" "$top" --werror -Dfuzz=true -Dtests=disabled \
        -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
ninja -C "$build" >/dev/null

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
artifacts=${artifacts:-$tmp/artifacts}
mkdir -p "$artifacts"

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
failed=0
printf '%-18s %12s %8s %6s %7s %s\n' target executions crashes cov ft seconds
for t in "${targets[@]}"; do
        mkdir -p "$tmp/new/$t"
        log=$tmp/$t.log
        begin=$(date +%s)
        rc=0
        "$build/tests/fuzz/$t" -runs="$runs" -max_total_time="$max_time" -print_final_stats=1 \
                -artifact_prefix="$artifacts/$t-" "$tmp/new/$t" "$top/tests/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        last=$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -1 || true)
        cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
        ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
        crashes=0
        if [ $rc -ne 0 ]; then
                crashes=1
                failed=1
        fi
        printf '%-18s %12s %8s %6s %7s %s\n' "$t" "${execs:-?}" "$crashes" "${cov:-?}" "${ft:-?}" $(($(date +%s) - begin))
        if [ $rc -ne 0 ]; then
                echo "--- $t exited $rc; the input is in $artifacts; its log:"
                grep -v '^#' "$log" | tail -40
        fi
done
exit $failed

#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Benchmark, not a test: the cost of one policy decision over 10, 100, 1,000 and 10,000 synthetic VMs
# in every mode, through the replay simulator on synthetic traces (ab-synth --pressure=always: every
# decision has host pressure, so every mode does its full work). Prints a Markdown table:
# instructions per decision (valgrind --tool=callgrind, counting policy_decide() and what it calls,
# stable on a shared machine) and wall time per decision (the mean over the trace, each decision
# repeated so that a measurement lasts tens of milliseconds; noisy on a loaded machine).
#
#   tests/bench/scale.sh [SIZES...]      default sizes: 10 100 1000 10000
#
# Builds in $AUTOBALLOON_BENCH_BUILD (default build/bench). Needs valgrind.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${AUTOBALLOON_BENCH_BUILD:-$top/build/bench}
records=${AUTOBALLOON_BENCH_RECORDS:-5}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10 100 1000 10000)
modes=(autoballoon none rfc proxmox)

command -v valgrind >/dev/null || { echo "scale.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
[ -d "$build" ] || meson setup "$build" "$top" >/dev/null
ninja -C "$build" tests/bench/ab-replay tests/bench/ab-synth >/dev/null
replay=$build/tests/bench/ab-replay
synth=$build/tests/bench/ab-synth

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "One decision, $records decisions per size 10 s apart, host pressure at every one ($(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg))."
echo
echo "| VMs | policy | instructions/decision | instructions/VM | wall time/decision |"
echo "|--:|---|--:|--:|--:|"
for n in "${sizes[@]}"; do
        "$synth" --vms="$n" --records="$records" --interval=10 --pressure=always >"$tmp/trace"
        repeat=$((20000 / n > 0 ? 20000 / n : 1))
        for m in "${modes[@]}"; do
                valgrind --tool=callgrind --instr-atstart=no --toggle-collect=policy_decide \
                        --callgrind-out-file="$tmp/callgrind.out" \
                        "$replay" --policy="$m" --tsv "$tmp/trace" >/dev/null 2>"$tmp/valgrind.log" ||
                        { cat "$tmp/valgrind.log" >&2; exit 1; }
                ir=$(awk '/^totals:/ { print $2 }' "$tmp/callgrind.out")
                nsec=$("$replay" --policy="$m" --repeat="$repeat" --tsv "$tmp/trace" | awk -F'\t' 'NR == 2 { print $13 }')
                awk -v n="$n" -v m="$m" -v ir="$ir" -v r="$records" -v ns="$nsec" 'BEGIN {
                        t = ns >= 1e6 ? sprintf("%.1f ms", ns / 1e6) : sprintf("%.1f µs", ns / 1e3);
                        printf("| %d | %s | %.0f | %.0f | %s |\n", n, m, ir / r, ir / r / n, t);
                }'
        done
done

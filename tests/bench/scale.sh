#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Benchmark, not a test: the cost of one policy decision over 10, 100, 1,000 and 10,000 synthetic VMs
# in every mode, through the replay simulator on synthetic traces (ab-synth --pressure=always: every
# decision has host pressure, so every mode does its full work). Prints a Markdown table:
# instructions per decision (valgrind --tool=callgrind, counting policy_decide() and what it calls,
# stable on a shared machine) and wall time per decision (the mean over the trace, each decision
# repeated so that a measurement lasts tens of milliseconds; noisy on a loaded machine).
#
# Before the figures, it checks that the policy still decides what it decided when the baselines in
# tests/bench/decisions/ were written: every mode's decisions that act (targets, memory.high,
# reasons) and summaries on synthetic traces, open and closed loop (ab-replay --decisions). An
# optimization of the policy must leave them the same; a change of what it decides writes them anew
# with --write-decisions, in the commit that changes them. reaction3.trace.xz was recorded by
# autoballoond --record during tests/bench/reaction.py --events 40 (three TCG guests, host pressure
# rounds).
#
#   tests/bench/scale.sh [--write-decisions] [SIZES...]      default sizes: 10 100 1000 10000
#
# Builds in $AUTOBALLOON_BENCH_BUILD (default build/bench). Needs valgrind.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${AUTOBALLOON_BENCH_BUILD:-$top/build/bench}
records=${AUTOBALLOON_BENCH_RECORDS:-5}
write_decisions=false
if [ "${1:-}" = --write-decisions ]; then
        write_decisions=true
        shift
fi
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

# NAME|ab-synth options, or recorded:FILE (an xz-compressed trace of autoballoond --record in
# tests/bench/decisions/)|ab-replay options. The largest trace's decisions (11 MB) are kept as a
# digest.
cases=(
        "reaction3|recorded:reaction3.trace.xz|"
        "reaction3-closed|recorded:reaction3.trace.xz|--closed-loop"
        "wave16|--vms=16 --records=600|"
        "wave16-closed|--vms=16 --records=600|--closed-loop"
        "wave300-closed|--vms=300 --records=300 --seed=2|--closed-loop"
        "always1000|--vms=1000 --records=5 --interval=10 --pressure=always|"
        "always10000|--vms=10000 --records=5 --interval=10 --pressure=always|"
)
baselines=$top/tests/bench/decisions
for c in "${cases[@]}"; do
        IFS='|' read -r name synth_args replay_args <<<"$c"
        if [ "${synth_args#recorded:}" != "$synth_args" ]; then
                xzcat "$baselines/${synth_args#recorded:}"
        else
                # shellcheck disable=SC2086 # the options are words
                "$synth" $synth_args
        fi | "$replay" $replay_args --decisions - >"$tmp/$name.tsv"
        base=$baselines/$name.tsv.xz
        [ "$name" != always10000 ] || base=$baselines/$name.sha256
        if $write_decisions; then
                if [ "${base%.xz}" != "$base" ]; then
                        xz -9 <"$tmp/$name.tsv" >"$base"
                else
                        sha256sum <"$tmp/$name.tsv" | cut -d' ' -f1 >"$base"
                fi
                echo "decisions: $name written to ${base#"$top"/}"
        elif [ "${base%.xz}" != "$base" ] && ! xzcat "$base" | cmp -s - "$tmp/$name.tsv"; then
                echo "decisions: $name differs from ${base#"$top"/}:" >&2
                diff <(xzcat "$base") "$tmp/$name.tsv" | head -20 >&2
                exit 1
        elif [ "${base%.xz}" = "$base" ] && [ "$(sha256sum <"$tmp/$name.tsv" | cut -d' ' -f1)" != "$(cat "$base")" ]; then
                echo "decisions: $name differs from ${base#"$top"/}" >&2
                exit 1
        else
                echo "decisions: $name identical to the baseline ($(wc -l <"$tmp/$name.tsv") lines)"
        fi
done
echo

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

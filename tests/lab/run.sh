#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The lab tier: builds the lab (cached, build.sh), boots L1 under TCG, follows the scenario that
# runs inside it (scenario.py, on L1's second serial port) and exits non-zero if any check failed,
# the scenario did not finish, or the time budget ran out (L1 is killed then).
#
#   run.sh [--shell]
#     --shell          boot L1 with a root shell on this terminal instead of the scenario
# Environment: LAB_RELEASE (bookworm, the default, or trixie: L1's Debian release), AUTOBALLOON_CACHE,
# LAB_TIMEOUT (seconds for build + run, default 900, 1500 for trixie), LAB_L1_MEM (default 2G),
# LAB_RUN_DIR (default <lab cache>/run: disks, logs, out/; the lab cache is <cache>/lab for
# bookworm, <cache>/lab-RELEASE otherwise).
set -euo pipefail

shell=0
for arg; do
        case $arg in
        --shell) shell=1 ;;
        *) echo "usage: $0 [--shell]" >&2; exit 2 ;;
        esac
done

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RELEASE=${LAB_RELEASE:-bookworm}
# As build.sh keeps it.
LAB=${AUTOBALLOON_CACHE:-/var/cache/autoballoon}/lab
[[ $RELEASE == bookworm ]] || LAB+=-$RELEASE
RUN=${LAB_RUN_DIR:-$LAB/run}
# Debian 13's scenario also boots a libvirt domain cold (minutes of nested TCG) and has three more phases.
default_timeout=900
[[ $RELEASE == bookworm ]] || default_timeout=1500
TIMEOUT=${LAB_TIMEOUT:-$default_timeout}
L1_MEM=${LAB_L1_MEM:-2G}

. "$SRC_DIR/../lib/common.sh" "lab($RELEASE)"

fail() {
        log "FAIL: $*"
        exit 1
}

left() {
        echo $((TIMEOUT - SECONDS))
}

need_root "QEMU, the lab's cache"
# One lab at a time: the build and the run share $RUN.
lock_cache "$LAB"
mkdir -p "$RUN"
export AUTOBALLOON_LAB_LOCKED=1 LAB_RUN_DIR=$RUN LAB_RELEASE=$RELEASE

log "build (cached parts are reused; budget ${TIMEOUT}s for build + run)"
rc=0
timeout "$(left)" "$SRC_DIR/build.sh" || rc=$?
((rc != 124)) || fail "time budget of ${TIMEOUT}s ran out during the build"
((rc == 0)) || fail "the lab build failed ($rc)"
build_seconds=$SECONDS

append="root=/dev/vda rw console=ttyS0 panic=1 mitigations=off systemd.unified_cgroup_hierarchy=1 psi=1"
append+=" systemd.firstboot=off"
qemu=(qemu-system-x86_64 -name lab-l1 -accel tcg -m "$L1_MEM" -smp 2
      -nodefaults -no-user-config -no-reboot -display none
      -kernel "$RUN/vmlinuz" -initrd "$RUN/initrd.img"
      -drive "file=$RUN/root.img,format=raw,if=virtio,cache=unsafe"
      -drive "file=$RUN/swap.img,format=raw,if=virtio,cache=unsafe")

if ((shell)); then
        log "L1 with a root shell on this terminal (the scenario is masked); poweroff to leave"
        exec "${qemu[@]}" -append "$append systemd.mask=lab-scenario.service" -serial mon:stdio
fi

rm -f "$RUN/console.log" "$RUN/scenario.out"
rm -rf "$RUN/out"
: >"$RUN/scenario.out"
log "booting L1 (TCG, -m $L1_MEM -smp 2); console: $RUN/console.log"
"${qemu[@]}" -append "$append" -serial "file:$RUN/console.log" -serial "file:$RUN/scenario.out" \
        </dev/null >"$RUN/qemu.log" 2>&1 &
qpid=$!
boot_start=$SECONDS

# Follow the scenario's lines until L1 powers off (tail exits with QEMU) or the budget runs out.
timed_out=0
last_output=$SECONDS
exec 3< <(tail -n +1 -F --pid="$qpid" "$RUN/scenario.out" 2>/dev/null)
while :; do
        if IFS= read -r -t 5 line <&3; then
                line=${line%$'\r'}
                [[ -n $line ]] && log "L1: $line"
                last_output=$SECONDS
                continue
        elif (($? <= 128)); then
                break # EOF: QEMU exited
        fi
        if (($(left) <= 0)); then
                timed_out=1
                break
        fi
        if ((SECONDS - last_output >= 30)); then
                log "L1 running ($((SECONDS - boot_start))s); console: $(tail -n 1 "$RUN/console.log" 2>/dev/null |
                        tr -d '\r' | cut -c1-100)"
                last_output=$SECONDS
        fi
done
exec 3<&-

if ((timed_out)); then
        kill -KILL "$qpid" 2>/dev/null || true
fi
wait "$qpid" && qrc=0 || qrc=$?
run_seconds=$((SECONDS - boot_start))

# The scenario's logs, read back from L1's disk (consistent after a clean poweroff).
if ((!timed_out)) && debugfs -R "rdump /var/lib/autoballoon-lab/out $RUN" "$RUN/root.img" >/dev/null 2>&1; then
        log "L1 logs: $RUN/out (journal.txt, autoballoond.verbose, scenario.log, L2 consoles)"
fi

result=$(tr -d '\r' <"$RUN/scenario.out" | grep '^LAB-RESULT ' | tail -n 1 || true)
echo
echo "=== lab summary, $RELEASE (build ${build_seconds}s, L1 ${run_seconds}s, total ${SECONDS}s)"
tr -d '\r' <"$RUN/scenario.out" | sed -n 's/^LAB-CHECK //p' | sed 's/^/  /'
tr -d '\r' <"$RUN/scenario.out" | sed -n 's/^LAB-TIMING /  seconds per phase: /p'
if ((timed_out)); then
        echo "--- L1 console (last 30 lines)"
        tail -n 30 "$RUN/console.log" | tr -d '\r'
        fail "time budget of ${TIMEOUT}s ran out: L1 killed after ${run_seconds}s (scenario log: $RUN/scenario.out)"
fi
if [[ -z $result ]]; then
        echo "--- L1 console (last 30 lines)"
        tail -n 30 "$RUN/console.log" | tr -d '\r'
        echo "--- QEMU (exit $qrc)"
        tail -n 10 "$RUN/qemu.log"
        fail "L1 stopped without a scenario result (see $RUN/console.log, $RUN/scenario.out)"
fi
log "$result"
[[ $result == "LAB-RESULT PASS"* ]] || fail "lab checks failed"
log "PASS"

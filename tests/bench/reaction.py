# SPDX-License-Identifier: LGPL-2.1-or-later
"""Benchmark, not a test: prints figures and gates nothing.

1. The daemon's reaction: PSI trigger fd readable -> balloon command sent (daemon-internal, from its
   debug log), p50/p99 over at least --events host trigger firings that led to an inflation. The
   balloons are put back to full size from the harness monitor every few rounds so that the floors
   never stop the inflations.
2. The daemon's cost with the three guests idle: CPU time and RSS over --idle seconds.
With --guests N (say 16, of --guest-mem 160M each: they fit in 24 GiB), only the idle cost, with N
guests.

Run as root after tests/demo.sh or tests/run.sh built everything:
    /usr/bin/python3 tests/bench/reaction.py [--events 100] [--idle 60] [--guests 16 [--guest-mem 160M]]
The machine's other load does not matter much: the latency is measured inside the daemon.
"""

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from ab.cache import build_image  # noqa: E402
from ab.measure import percentile, proc_rss_kib, proc_stat  # noqa: E402
from ab.scenario import MIB, GUEST_MEM, VMS, ClosedLoop, make_config  # noqa: E402
from ab.util import make_run_dir, parse_size, wait_until  # noqa: E402


def bench_config(vms):
    # Every trigger counts, and small steps so that many rounds fit between two resets.
    return make_config(vms, reclaim_step="96M", extra="ReclaimSettleSec=0\n")


def measure_reaction(loop, events):
    """Host pressure rounds until the daemon logged events trigger->balloon latencies."""
    loop.host_pressure_on()
    start = time.monotonic()
    seen, quiet_since = 0, time.monotonic()
    while len(loop.daemon.latencies_usec) < events:
        time.sleep(2)
        if len(loop.daemon.latencies_usec) > seen:
            seen, quiet_since = len(loop.daemon.latencies_usec), time.monotonic()
        elif time.monotonic() - quiet_since > 6:
            # The reclaim relieved the host: give the guests their memory back and make it
            # resident again (outside the limit: no swap here, so the limit's OOM killer would
            # take a QEMU), then squeeze again for the next rounds.
            # The daemon is stopped meanwhile: the host trigger watches the whole machine and
            # may fire for someone else's stalls, and would inflate the guests being refilled.
            loop.host_pressure_off()
            os.kill(loop.daemon.proc.pid, signal.SIGSTOP)
            for g in loop.guests.values():
                g.balloon(loop.guest_mem)
            for g in loop.guests.values():
                wait_until(lambda: g.query_balloon() == loop.guest_mem, 30, what="a full guest")
                g.cmd_ok("prefault 80", timeout=120)
            os.kill(loop.daemon.proc.pid, signal.SIGCONT)
            loop.host_pressure_on()
            quiet_since = time.monotonic()
        print(f"  {len(loop.daemon.latencies_usec)} events after {time.monotonic() - start:.0f} s",
              flush=True)
    loop.host_pressure_off()

    lat = loop.daemon.latencies_usec
    print(f"trigger fd readable -> balloon command sent: {len(lat)} events, "
          f"p50 {percentile(lat, 50)} us, p99 {percentile(lat, 99)} us, max {max(lat)} us")
    print(f"daemon RSS after the run: {proc_rss_kib(loop.daemon.proc.pid)} KiB; inflations "
          f"{len(loop.daemon.decisions_for(action='inflate'))}, balloons now "
          f"{', '.join(f'{vm} {loop.actual(vm) // MIB}M' for vm, _ in loop.vms)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100)
    ap.add_argument("--idle", type=int, default=60)
    ap.add_argument("--guests", type=int, help="only the idle cost, with this many guests")
    ap.add_argument("--guest-mem", help="with --guests: their memory (default 160M)")
    args = ap.parse_args()
    if args.guest_mem and not args.guests:
        ap.error("--guest-mem goes with --guests")

    vms, mem = VMS, GUEST_MEM
    if args.guests:
        vms, mem = tuple((f"vm{i + 1}", 100) for i in range(args.guests)), parse_size(args.guest_mem or "160M")
    run_dir = make_run_dir("abbench-")
    with ClosedLoop(run_dir, image=build_image(), config=bench_config(vms), log=print, vms=vms,
                    guest_mem=mem) as loop:
        # Many guests boot slowly side by side on two cores; idle guests need no resident memory.
        loop.start_guests(prefault=not args.guests, timeout=90 + 20 * len(vms))
        loop.start_daemon()
        pid = loop.daemon.proc.pid

        cpu0, t0 = proc_stat(pid)[1], time.monotonic()
        time.sleep(args.idle)
        cpu = proc_stat(pid)[1] - cpu0
        idle_seconds = time.monotonic() - t0
        print(f"idle: {len(vms)} guests of {mem // MIB} MiB, {idle_seconds:.0f} s: daemon CPU {cpu:.3f} s "
              f"({100 * cpu / idle_seconds:.3f}%), RSS {proc_rss_kib(pid)} KiB")
        if not args.guests:
            measure_reaction(loop, args.events)
    shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

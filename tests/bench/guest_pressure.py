# SPDX-License-Identifier: LGPL-2.1-or-later
"""Benchmark, not a test: prints figures and gates nothing.

How fast a guest pressure message gives memory back through autoballoond: a patched 6.12 guest
(guest/) on the patched QEMU 10.0 (qemu/, guest-pressure=on), the daemon watching it; the device
forwards the message as BALLOON_GUEST_PRESSURE and decides nothing, the daemon deflates a step
(DeflateStep, 32 MiB here) on medium and critical. p50/p99 over --events messages the daemon
deflated on.

Each round starts a daemon on the guest at its base size (320M: the harness inflates it from its
own monitor while no daemon runs; the daemon adopts the size it finds, so it has nothing in flight
and a target of its own), then a worker in the guest keeps touching 24 MiB more than the guest has
free (a worker already holds most of the rest; zram swap). The guest stalls in direct reclaim:
the driver reports low at once, medium in the next second as the stalls go on; the daemon holds
on low (nothing to cancel) and deflates a step on medium or critical. The round's figure is the
message the daemon deflated on (the last BALLOON_GUEST_PRESSURE before its decision); then the
worker and the daemon stop. The daemon is restarted each round because a harness inflation is
one it did not ask for: it keeps its own target, and a step up to it would be "in flight".

Clocks. Every timestamp is the host's CLOCK_REALTIME:
* t0: the "timestamp" QEMU puts on BALLOON_GUEST_PRESSURE (gettimeofday when the queue handler
  emits it, right after it popped the guest's message). Under TCG the guest's notify write
  signals an ioeventfd from the vCPU thread and QEMU's main loop runs the handler, so t0 is the
  kick plus one main-loop wake-up. What the guest does before its kick (reclaim -> work item ->
  virtqueue_kick) happens on the guest's clock, which the host cannot compare with its own
  without guest instrumentation, and is not included.
* Daemon decision: its "decision ... reason=\"... guest driver event ..." line, timestamped by
  this script when it reads it from the daemon's stderr pipe (time.monotonic() mapped to the
  realtime clock once at start).
* Balloon command: QEMU's virtio_balloon_to_target trace (log backend, -msg timestamp=on:
  gettimeofday) for the daemon's new target.
* Deflate start: the first virtio_balloon_set_config trace after t0 with fewer pages in the
  balloon than before, i.e. the guest took the config interrupt, handed back its first batch
  (256 pages, 1 MiB) over the deflate queue and updated "actual". Deflate done: the set_config
  that reaches the daemon's new target.

Run as root after tests/run.sh (or guest/build-kernel.sh, qemu/build-qemu.sh and a meson build)
built everything:
    /usr/bin/python3 tests/bench/guest_pressure.py [--events 60] [--keep]
"""

import argparse
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "patches"))

from ab.cache import build_image, build_kernels, build_qemu  # noqa: E402
from ab.cgroup import TestCgroup  # noqa: E402
from ab.guest import Guest  # noqa: E402
from ab.measure import percentile  # noqa: E402
from ab.scenario import Daemon  # noqa: E402
from ab.util import MiB, make_run_dir, wait_until  # noqa: E402
import gpq  # noqa: E402

VM = "vm1"
SLICE = f"balloon.slice/balloon-{VM}.slice"
BASE = 320 * MiB
STEP = 32 * MiB
# The daemon only reacts to the events here: no host pressure (reserve 0, a trigger that needs 95 %
# stalls), no stats-based guest pressure (stats once an hour), no stall handling, no give-back (it
# would deflate the harness's base size at adoption: the host has room).
CONFIG = f"""\
[Daemon]
HostPressure=system
HostReserve=0
HostTriggerStallSec=1.9
StatsIntervalSec=3600
BalloonStallSec=3600
HysteresisSec=60
DeflateStep={STEP // MiB}M
GuestPressureIntervalSec=1
RefillRate=0

[VM {VM}]
MinMemory=128M
"""
TRACE_RE = re.compile(r"^\d+@(\d+)\.(\d{6}):(virtio_balloon_\w+) (.*)$")
TO_TARGET_RE = re.compile(r"balloon target: 0x([0-9a-f]+)")
SET_CONFIG_RE = re.compile(r"actual: (\d+) oldactual: (\d+)")


def traces(path):
    """(realtime, event name, arguments) of QEMU's trace lines."""
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            m = TRACE_RE.match(line.strip())
            if m:
                out.append((int(m.group(1)) + int(m.group(2)) / 1e6, m.group(3), m.group(4)))
    return out


def stamp(event):
    """QEMU's realtime stamp of a QMP event."""
    return event["timestamp"]["seconds"] + event["timestamp"]["microseconds"] / 1e6


def set_base(guest):
    guest.balloon(BASE)
    wait_until(lambda: guest.query_balloon() == BASE, 20, 0.05, what="the balloon at its base size")


def report(name, values_s):
    if not values_s:
        print(f"  {name:<44} n=  0")
        return
    ms = [v * 1000 for v in values_s]
    print(f"  {name:<44} n={len(ms):3d}  min {min(ms):8.2f}  p50 {percentile(ms, 50):8.2f}  "
          f"p90 {percentile(ms, 90):8.2f}  p99 {percentile(ms, 99):8.2f}  max {max(ms):8.2f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=60)
    ap.add_argument("--max-rounds", type=int, default=400, help="give up after this many rounds")
    ap.add_argument("--max-seconds", type=int, default=3600, help="or after this long")
    ap.add_argument("--keep", action="store_true", help="keep the logs (daemon, QEMU trace)")
    args = ap.parse_args()

    kernels, qemu, image = build_kernels(), build_qemu(), build_image()
    offset = time.time() - time.monotonic()
    run_dir = make_run_dir("abbench-")
    cgroup = TestCgroup()
    daemon = Daemon(run_dir, cgroup.unified_root, CONFIG)
    guest = Guest.start(
        VM, run_dir, mem="512M", qmp_path=daemon.qmp_path(VM), cgroups=cgroup.procs_paths(SLICE),
        image=image, free_page_reporting=False,
        extra_args=["-msg", "timestamp=on", "-trace", "virtio_balloon_to_target",
                    "-trace", "virtio_balloon_set_config"],
        **gpq.guest_kwargs(kernels, qemu, "patched", "on"))
    try:
        guest.wait_ready(90)
        guest.qmp_events()

        rounds = []  # (the event the daemon deflated on, its decision), or (None, None)
        levels = {}
        acted = {}
        start = time.monotonic()
        while sum(1 for e, _ in rounds if e) < args.events and len(rounds) < args.max_rounds:
            if time.monotonic() - start > args.max_seconds:
                print(f"  stopped after {args.max_seconds} s")
                break
            set_base(guest)
            # A worker holds all but 40 MiB, made anew each round (reclaim moved the last one's
            # memory to zram): the round's worker then overflows into reclaim at once.
            guest.cmd("free base")
            guest.cmd_ok(f"alloc base {guest.meminfo()['MemFree'] // 1024 - 40}", timeout=120)
            daemon = Daemon(run_dir, cgroup.unified_root, CONFIG).start()
            try:
                wait_until(lambda: daemon.saw(rf"{VM}: adopted"), 30, what="the daemon to adopt the VM")
                guest.qmp_events().clear()
                mark = time.monotonic()
                guest.cmd_ok(f"thrash round {guest.meminfo()['MemFree'] // 1024 + 24}", timeout=60)
                try:
                    decided = wait_until(lambda: [d for d in daemon.decisions_for(VM, "deflate", since=mark)
                                                  if "guest driver event" in d.reason], 15, 0.01)[0]
                except TimeoutError:
                    decided = None
                guest.qmp("query-status")  # reads the events QEMU sent meanwhile
                events = [e for e in guest.qmp_events() if e["event"] == gpq.EVENT]
                for e in events:
                    level = gpq.check_event(e, 512 * MiB)["level"]
                    levels[level] = levels.get(level, 0) + 1
                for d in daemon.decisions_for(VM, since=mark):
                    acted[d.action] = acted.get(d.action, 0) + 1
                if decided:
                    before = [e for e in events if stamp(e) <= decided.when + offset]
                    rounds.append((before[-1], decided) if before else (None, None))
                    wait_until(lambda: guest.query_balloon() >= decided.target, 10, 0.05,
                               what="the step to complete")
                else:
                    print(f"  a round without a deflate: skipped (levels {[gpq.check_event(e, 512 * MiB)['level'] for e in events]})", flush=True)
                    rounds.append((None, None))
            finally:
                guest.cmd("free round")
                daemon.stop()
            if len(rounds) % 10 == 0:
                print(f"  {len(rounds)} rounds after {time.monotonic() - start:.0f} s", flush=True)
        time.sleep(1)

        trace = traces(guest.qemu_log)
        to_daemon, to_command, to_start, to_done = [], [], [], []
        measured = [(e, d) for e, d in rounds if e]
        ends = [stamp(e) for e, _ in measured[1:]] + [float("inf")]
        for (event, decided), end in zip(measured, ends):
            t0 = stamp(event)
            to_daemon.append(decided.when + offset - t0)
            target_pages = (512 * MiB - decided.target) // 4096
            command = next((t for t, n, a in trace if n == "virtio_balloon_to_target" and t0 <= t < end
                            and int(TO_TARGET_RE.search(a).group(1), 16) == decided.target), None)
            if command is not None:
                to_command.append(command - t0)
            started = False
            for t, n, a in trace:
                if n != "virtio_balloon_set_config" or t < t0 or t >= end:
                    continue
                actual, old = (int(x) for x in SET_CONFIG_RE.search(a).groups())
                if actual < old and not started:
                    to_start.append(t - t0)
                    started = True
                if actual <= target_pages:
                    to_done.append(t - t0)
                    break

        print(f"\n{len(rounds)} rounds, {len(measured)} measured; events by level {levels}; "
              f"the daemon's decisions {acted}")
        print("BALLOON_GUEST_PRESSURE emitted by QEMU (its QMP timestamp) ->")
        report("daemon decision (read from its stderr)", to_daemon)
        report("balloon command at QEMU (trace)", to_command)
        report("balloon starts to deflate (first 1 MiB back)", to_start)
        report(f"deflate step done ({STEP // MiB} MiB back)", to_done)
    finally:
        guest.stop()
        if daemon.alive():
            daemon.stop()
        cgroup.cleanup()
    if args.keep:
        print(f"logs in {run_dir}: autoballoond.log, {VM}.qemu.log (trace)")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

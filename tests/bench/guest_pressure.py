# SPDX-License-Identifier: LGPL-2.1-or-later
"""Benchmark, not a test: prints figures and gates nothing.

How fast a guest pressure message gives memory back through autoballoond: a patched 6.12 guest
(guest/) on the patched QEMU 10.0 (qemu/, guest-pressure=on), the daemon watching it; the device
forwards the message as BALLOON_GUEST_PRESSURE and decides nothing, the daemon deflates a step
(DeflateStep, 32 MiB here) on medium and critical. p50/p99 over --events messages the daemon
deflated on.

Each round: the harness inflates the balloon back to 320M from its own monitor and waits 2.1 s,
then the guest allocates 24 MiB more than it has free (a worker already holds most of the rest;
zram swap), its allocation stalls in direct reclaim, the driver sends a message, and the guest
frees it again. Only the first message of a round counts, and only when the daemon deflated on it
(a low message with nothing in flight is a hold: counted apart, not measured). The wait keeps the
round clear of the one-second limits of the driver, the daemon (GuestPressureIntervalSec=1) and
QMP's event throttle (an event within a second of the previous one is held back until the second
is over, which would add up to a second to what the daemon sees).

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
# stalls), no stats-based guest pressure (stats once an hour), no stall handling.
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
        daemon.start()
        wait_until(lambda: daemon.saw(rf"{VM}: adopted"), 30, what="the daemon to adopt the VM")
        set_base(guest)
        # A worker holds all but 40 MiB: each round's allocation then overflows into reclaim at once.
        guest.cmd_ok(f"alloc base {guest.meminfo()['MemFree'] // 1024 - 40}", timeout=120)

        rounds = []  # (the round's first event, the daemon's decision on it or None)
        levels = {}
        start = time.monotonic()
        while sum(1 for _, d in rounds if d and d.action == "deflate") < args.events:
            if len(rounds) >= args.max_rounds:
                print(f"  gave up after {len(rounds)} rounds")
                break
            set_base(guest)
            time.sleep(2.1)
            guest.qmp_events().clear()
            mark = time.monotonic()
            # Over the rounds, reclaim moves the base worker's memory to zram and MemFree grows:
            # overflow what is free now.
            guest.cmd_ok(f"alloc round {guest.meminfo()['MemFree'] // 1024 + 24}", timeout=60)
            try:
                event = guest.wait_qmp_event(gpq.EVENT, 15)
            except TimeoutError:
                print("  a round without a message: skipped")
                guest.cmd_ok("free round")
                continue
            data = gpq.check_event(event, 512 * MiB)
            levels[data["level"]] = levels.get(data["level"], 0) + 1
            try:
                decided = wait_until(lambda: [d for d in daemon.decisions_for(VM, since=mark)
                                              if "guest driver event" in d.reason], 5, 0.01)[0]
            except TimeoutError:
                decided = None  # a repeated hold is not logged again
            if decided and decided.action == "deflate":
                wait_until(lambda: guest.query_balloon() >= decided.target, 10, 0.05,
                           what="the step to complete")
            guest.cmd_ok("free round")
            rounds.append((event, decided))
            if len(rounds) % 10 == 0:
                print(f"  {len(rounds)} rounds after {time.monotonic() - start:.0f} s")
        time.sleep(1)

        trace = traces(guest.qemu_log)
        to_daemon, to_command, to_start, to_done = [], [], [], []
        ends = [e["timestamp"]["seconds"] + e["timestamp"]["microseconds"] / 1e6 for e, _ in rounds[1:]]
        for (event, decided), end in zip(rounds, ends + [float("inf")]):
            if not decided or decided.action != "deflate":
                continue
            t0 = event["timestamp"]["seconds"] + event["timestamp"]["microseconds"] / 1e6
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

        acted = {}
        for _, d in rounds:
            acted[d.action if d else "not logged"] = acted.get(d.action if d else "not logged", 0) + 1
        print(f"\n{len(rounds)} rounds; levels {levels}; the daemon's decisions {acted}")
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

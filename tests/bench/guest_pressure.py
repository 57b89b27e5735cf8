# SPDX-License-Identifier: LGPL-2.1-or-later
"""Benchmark, not a test: prints figures and gates nothing.

How fast the guest pressure queue gives memory back: a patched guest (guest/) on the patched QEMU
(qemu/, guest-pressure=on) under autoballoond, p50/p99 over --events guest pressure messages.

Each round: the harness inflates the balloon back to 320M from its own monitor and waits 2.1 s,
then the guest allocates 24 MiB more than it has free (a worker already holds most of the rest;
zram swap), its allocation stalls in direct reclaim, the driver sends a message, the device
deflates one step (32 MiB), and the guest frees it again.
Only the first message of a round counts, and only when the device deflated (not cancelled nor
rate-limited). The wait keeps it clear of the one-second limits of the driver and the device, and
of QMP's event rate limit: an event within a second of the previous one is held back until the
second is over (and the limit re-arms while events keep coming), which would add up to a second
to what the daemon sees. Later messages of an episode do pay that (the device acts at once).

Clocks. Every timestamp is the host's CLOCK_REALTIME:
* t0, the guest's message as the host sees it: QEMU's trace event virtio_balloon_guest_pressure
  (log backend, -msg timestamp=on: gettimeofday), written by the queue handler right after the
  device acted. Under TCG the guest's notify write signals an ioeventfd from the vCPU thread and
  QEMU's main loop runs the handler, so t0 is the kick plus one main-loop wake-up. What the guest
  does before its kick (reclaim -> work item -> virtqueue_kick) happens on the guest's clock, which
  the host cannot compare with its own without guest instrumentation, and is not included.
* QMP event: the "timestamp" QEMU puts on BALLOON_GUEST_PRESSURE (gettimeofday when emitted).
* Deflate start: the first virtio_balloon_set_config trace after t0 with fewer pages in the
  balloon than before, i.e. the guest took the config interrupt, handed back its first batch
  (256 pages, 1 MiB) over the deflate queue and updated "actual". Deflate done: the set_config
  that reaches the device's new target.
* Daemon decision: the daemon's "decision ... reason=\"guest driver event ..." line, timestamped by
  this script when it reads it from the daemon's stderr pipe (time.monotonic() mapped to the
  realtime clock once at start); the daemon's own log stamp (milliseconds, truncated: counted as
  the middle of its millisecond) is shown next to it.

Run as root after tests/run.sh (or guest/build-kernel.sh, qemu/build-qemu.sh and a meson build)
built everything:
    /usr/bin/python3 tests/bench/guest_pressure.py [--events 60] [--keep]
"""

import argparse
import datetime
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
from ab.scenario import DECISION_RE, Daemon  # noqa: E402
from ab.util import MiB, make_run_dir, wait_until  # noqa: E402
import gpq  # noqa: E402

VM = "vm1"
SLICE = f"balloon.slice/balloon-{VM}.slice"
BASE = 320 * MiB
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

[VM {VM}]
MinMemory=128M
"""
TRACE_RE = re.compile(r"^\d+@(\d+)\.(\d{6}):(virtio_balloon_\w+) (.*)$")
PRESSURE_RE = re.compile(r"num_pages: (\d+) action: (\w+)")
SET_CONFIG_RE = re.compile(r"actual: (\d+) oldactual: (\d+)")
STAMP_RE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) ")


def traces(path):
    """(realtime, event name, arguments) of QEMU's trace lines."""
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            m = TRACE_RE.match(line.strip())
            if m:
                out.append((int(m.group(1)) + int(m.group(2)) / 1e6, m.group(3), m.group(4)))
    return out


def stamp_to_realtime(stamp, near):
    """The daemon's local "HH:MM:SS.mmm" as realtime, on the day that puts it closest to near."""
    h, mi, s, ms = (int(x) for x in stamp.groups())
    day = datetime.datetime.fromtimestamp(near).replace(hour=h, minute=mi, second=s,
                                                        microsecond=ms * 1000 + 500)
    candidates = [(day + datetime.timedelta(days=d)).timestamp() for d in (-1, 0, 1)]
    return min(candidates, key=lambda t: abs(t - near))


def daemon_event_decisions(daemon, offset):
    """(received realtime, daemon's stamp realtime) of its decisions on a device deflate."""
    out = []
    decisions = iter(daemon.decisions)
    for line in list(daemon.lines):
        if not DECISION_RE.search(line):
            continue
        d = next(decisions)
        if d.vm == VM and d.reason.startswith("guest driver event") and \
                "the device's action deflate" in d.reason:
            received = d.when + offset
            stamp = STAMP_RE.match(line)
            out.append((received, stamp_to_realtime(stamp, received) if stamp else received))
    return out


def set_base(guest):
    """Inflates back to BASE; the device refuses while its hysteresis (1 s here) lasts."""
    for _ in range(10):
        guest.balloon(BASE)
        try:
            wait_until(lambda: guest.query_balloon() == BASE, 3, 0.05)
            return
        except TimeoutError:
            time.sleep(1.5)
    raise RuntimeError("the balloon does not go back to its base size")


def report(name, values_s):
    ms = [v * 1000 for v in values_s]
    print(f"  {name:<44} n={len(ms):3d}  min {min(ms):8.2f}  p50 {percentile(ms, 50):8.2f}  "
          f"p90 {percentile(ms, 90):8.2f}  p99 {percentile(ms, 99):8.2f}  max {max(ms):8.2f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=60)
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
        extra_args=["-msg", "timestamp=on", "-trace", "virtio_balloon_guest_pressure",
                    "-trace", "virtio_balloon_set_config"],
        **gpq.guest_kwargs(kernels, qemu, "patched", "on", **{"guest-pressure-hysteresis": 1}))
    try:
        guest.wait_ready(90)
        guest.qmp_events()
        daemon.start()
        wait_until(lambda: daemon.saw(rf"{VM}: adopted"), 30, what="the daemon to adopt the VM")
        set_base(guest)
        # A worker holds all but 40 MiB: each round's allocation then overflows into reclaim at once.
        guest.cmd_ok(f"alloc base {guest.meminfo()['MemFree'] // 1024 - 40}", timeout=120)

        rounds = []  # (start realtime, the round's first event)
        start = time.monotonic()
        while sum(1 for _, e in rounds if e["data"]["action"] == "deflate") < args.events:
            set_base(guest)
            time.sleep(2.1)
            guest.qmp_events().clear()
            begin = time.time()
            # Over the rounds, reclaim moves the base worker's memory to zram and MemFree grows:
            # overflow what is free now.
            guest.cmd_ok(f"alloc round {guest.meminfo()['MemFree'] // 1024 + 24}", timeout=60)
            try:
                event = guest.wait_qmp_event(gpq.EVENT, 15)
            except TimeoutError:
                print("  a round without a message: skipped")
                guest.cmd_ok("free round")
                continue
            guest.cmd_ok("free round")
            rounds.append((begin, event))
            if event["data"]["action"] == "deflate":
                wait_until(lambda: guest.query_balloon() >= event["data"]["target"], 10, 0.05,
                           what="the step to complete")
            if len(rounds) % 10 == 0:
                print(f"  {len(rounds)} rounds after {time.monotonic() - start:.0f} s")
        time.sleep(1)

        trace = traces(guest.qemu_log)
        decisions = daemon_event_decisions(daemon, offset)
        ends = [b for b, _ in rounds[1:]] + [float("inf")]
        to_event, to_start, to_done, to_daemon, to_daemon_stamp = [], [], [], [], []
        skipped = 0
        for (begin, event), end in zip(rounds, ends):
            first = next(((t, a) for t, n, a in trace if n == "virtio_balloon_guest_pressure" and
                          begin <= t < end), None)
            m = PRESSURE_RE.search(first[1]) if first else None
            if not m or m.group(2) != "deflate":
                skipped += 1
                continue
            t0, target_pages = first[0], int(m.group(1))
            ev = event["timestamp"]
            to_event.append(ev["seconds"] + ev["microseconds"] / 1e6 - t0)
            for t, n, a in trace:
                if n != "virtio_balloon_set_config" or t < t0 or t >= end:
                    continue
                actual, old = (int(x) for x in SET_CONFIG_RE.search(a).groups())
                if actual < old and len(to_start) < len(to_event):
                    to_start.append(t - t0)
                if actual <= target_pages:
                    to_done.append(t - t0)
                    break
            d = next(((r, s) for r, s in decisions if t0 <= r < end), None)
            if d:
                to_daemon.append(d[0] - t0)
                to_daemon_stamp.append(d[1] - t0)

        print(f"\n{len(rounds)} rounds, {len(to_event)} measured (first message deflated a step), "
              f"{skipped} skipped (cancelled or rate-limited)")
        print("guest's message seen by QEMU (trace) ->")
        report("BALLOON_GUEST_PRESSURE emitted (QMP stamp)", to_event)
        report("balloon starts to deflate (first 1 MiB back)", to_start)
        report("deflate step done (32 MiB back)", to_done)
        report("daemon decision (read from its stderr)", to_daemon)
        report("daemon decision (its own log stamp, ms)", to_daemon_stamp)
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

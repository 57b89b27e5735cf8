# SPDX-License-Identifier: LGPL-2.1-or-later
"""Benchmark, not a test: prints figures and gates nothing.

A balloon target change on one TCG guest run by a real libvirtd (ab.virt), alternately through
libvirt (virDomainSetMemoryFlags, AFFECT_LIVE) and directly over QMP ("balloon" on a second monitor
of the same QEMU), 2 x --calls times each, between two sizes 64M apart, each move 2.5 s after
the last one (past the event throttle below). For each: the time until the
call returns, until the first BALLOON_CHANGE arrives (libvirt's event through libvirt; QEMU's on
the QMP monitor), and until the BALLOON_CHANGE that reports the target. Also one stats read each
way: virDomainMemoryStats and qom-get guest-stats.

QEMU rate-limits BALLOON_CHANGE to one a second (an event within a second of the last one is held
until then): the time to the event at the target measures that throttle as much as the balloon.

Needs python3-libvirt (the benchmark's own client; the daemon uses the C API). Run as root after
tests/run.sh built the guest image:
    /usr/bin/python3 tests/bench/libvirt_latency.py [--calls 60]
"""

import argparse
import json
import shutil
import sys
import threading
import time
from pathlib import Path

import libvirt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from ab import virt  # noqa: E402
from ab.cache import build_image  # noqa: E402
from ab.guest import QEMU  # noqa: E402
from ab.measure import percentile  # noqa: E402
from ab.util import MiB, make_run_dir, wait_until  # noqa: E402

MIB = MiB
SIZES = (448 * MIB, 384 * MIB)


class LibvirtEvents:
    """BALLOON_CHANGE through libvirt, with the arrival time of each."""

    def __init__(self, conn, dom):
        self.cond = threading.Condition()
        self.events = []  # (monotonic, actual bytes)
        conn.domainEventRegisterAny(dom, libvirt.VIR_DOMAIN_EVENT_ID_BALLOON_CHANGE, self._on_change, None)

    def _on_change(self, conn, dom, actual_kib, opaque):
        with self.cond:
            self.events.append((time.monotonic(), actual_kib * 1024))
            self.cond.notify_all()

    def wait(self, since_index, target, timeout=30):
        """(first event time, time of the event at target) after since_index."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                new = self.events[since_index:]
                done = [t for t, a in new if abs(a - target) < MIB]
                if done:
                    return new[0][0], done[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no BALLOON_CHANGE to {target // MIB}M through libvirt")
                self.cond.wait(left)


def run_libvirt_events():
    while True:
        libvirt.virEventRunDefaultImpl()


def qmp_balloon_timed(qmp, target, timeout=30):
    """"balloon" on the harness' monitor, reading its reply and events as they come: (return,
    first BALLOON_CHANGE, BALLOON_CHANGE at target), in seconds from the call."""
    t0 = time.monotonic()
    qmp.sock.sendall(json.dumps({"execute": "balloon", "arguments": {"value": target}, "id": "bench"}).encode()
                     + b"\n")
    ret = first = done = None
    qmp.sock.settimeout(timeout)
    while ret is None or done is None:
        msg = qmp._read_message()
        t = time.monotonic() - t0
        if msg.get("id") == "bench":
            ret = t
        elif msg.get("event") == "BALLOON_CHANGE":
            first = t if first is None else first
            if abs(msg["data"]["actual"] - target) < MIB:
                done = t
    return ret, first, done


def report(name, values):
    ms = [v * 1000 for v in values]
    print(f"  {name:<34} p50 {percentile(ms, 50):8.2f} ms   p99 {percentile(ms, 99):8.2f} ms   "
          f"max {max(ms):8.2f} ms   n={len(ms)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=60)
    args = ap.parse_args()

    image = build_image()
    run_dir = make_run_dir("abt-lvbench-")
    lvd = virt.Libvirtd(run_dir)
    try:
        lvd.start()
        g = virt.DomainGuest(lvd, "bench", run_dir, image=image)
        g.wait_ready(120)
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=run_libvirt_events, daemon=True).start()
        conn = libvirt.open(lvd.uri)
        dom = conn.lookupByName("bench")
        lv_events = LibvirtEvents(conn, dom)
        g.qmp("query-status")

        results = {k: {"return": [], "first event": [], "event at target": []} for k in ("libvirt", "QMP")}
        for i in range(args.calls * 2):
            target = SIZES[i % 2]
            for way in ("libvirt", "QMP"):
                # Back to the other size first, untimed, so both ways make the same move.
                start_size = SIZES[(i + 1) % 2]
                if abs(g.query_balloon() - start_size) >= MIB:
                    g.balloon(start_size)
                    wait_until(lambda: abs(g.query_balloon() - start_size) < MIB, 30, 0.05)
                # Every timed move starts past QEMU's event throttle (1 s, restarted by a held
                # event), shared by all monitors, with the last move's held-back BALLOON_CHANGE read
                # and dropped: it must not be taken for the timed move's first one.
                time.sleep(2.5)
                g.qmp("query-status")
                g.qmp_events().clear()
                if way == "libvirt":
                    mark = len(lv_events.events)
                    t0 = time.monotonic()
                    dom.setMemoryFlags(target // 1024, libvirt.VIR_DOMAIN_AFFECT_LIVE)
                    ret = time.monotonic() - t0
                    first, done = (t - t0 for t in lv_events.wait(mark, target))
                else:
                    ret, first, done = qmp_balloon_timed(g._qmp, target)
                r = results[way]
                r["return"].append(ret)
                r["first event"].append(first)
                r["event at target"].append(done)
            if i % 2:
                print(f"{i // 2 + 1}/{args.calls}", end="\r", flush=True)

        stats = {"libvirt": [], "QMP": []}
        g.guest_stats(polling_interval=1)
        for _ in range(args.calls):
            t0 = time.monotonic()
            dom.memoryStats()
            stats["libvirt"].append(time.monotonic() - t0)
            t0 = time.monotonic()
            g.guest_stats()
            stats["QMP"].append(time.monotonic() - t0)

        print(f"\nballoon target change {SIZES[0] // MIB}M <-> {SIZES[1] // MIB}M, {args.calls * 2} calls each way, "
              f"TCG guest, {shutil.which(QEMU)}, libvirt {libvirt.getVersion()}")
        for way in ("libvirt", "QMP"):
            print(f"{way} ({'virDomainSetMemoryFlags' if way == 'libvirt' else 'balloon'}):")
            for k, v in results[way].items():
                report(k, v)
        print("stats read:")
        report("virDomainMemoryStats", stats["libvirt"])
        report("qom-get guest-stats", stats["QMP"])
        conn.close()
    finally:
        lvd.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

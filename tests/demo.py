# SPDX-License-Identifier: LGPL-2.1-or-later
"""The demo: three real guests, autoballoond, host pressure, guest pressure, host pressure again, then
give-back once the host is calm, with a live timeline."""

import collections
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))

from ab.cache import build_image  # noqa: E402
from ab.scenario import MIB, MIN_MEMORY, GUEST_MEM, VMS, ClosedLoop  # noqa: E402
from ab.util import make_run_dir  # noqa: E402

T0 = time.monotonic()


def say(text):
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", flush=True)


def show_decision(line):
    if " decision vm=" in line:
        say("  daemon: " + line.split(" decision ", 1)[1])


def timeline(loop, stop):
    say("timeline: per VM actual (target) [slice PSI some avg10]; host = test cgroup PSI some avg10")
    while not stop.wait(2):
        cells = []
        for vm, weight, actual, d, psi in loop.sample():
            target = f"{d.target // MIB}M" if d and d.action in ("inflate", "deflate", "cancel") else "-"
            cells.append(f"{vm}(w{weight}) {actual // MIB}M ({target}) [{psi:.1f}]")
        host = loop.cgroup.pressure()["some"]["avg10"]
        say("  " + "  ".join(cells) + f"  host {host:.1f}")


def main():
    run_dir = make_run_dir("abdemo-")
    image = build_image()
    stop = threading.Event()
    with ClosedLoop(run_dir, image=image, on_line=show_decision, log=say) as loop:
        say(f"booting {len(VMS)} guests of {GUEST_MEM // MIB} MiB (TCG) in balloon slices under "
            f"{loop.cgroup.unified_root}")
        loop.start_guests()
        loop.start_daemon()
        say(f"autoballoond adopted {', '.join(vm for vm, _ in VMS)} (weights "
            f"{', '.join(str(w) for _, w in VMS)}; MinMemory {MIN_MEMORY // MIB}M); log: {loop.daemon.log_path}")
        ticker = threading.Thread(target=timeline, args=(loop, stop), daemon=True)
        ticker.start()

        say("phase 1: host pressure (memory limit just above the guests' usage + a page-cache hog)")
        loop.host_pressure_on()
        time.sleep(25)
        loop.host_pressure_off()
        say("phase 1 over: hog stopped, limit lifted")
        time.sleep(4)

        say("phase 2: guest pressure in vm1 (it allocates all but 24 MiB of its available memory)")
        loop.guest_pressure("vm1")
        time.sleep(12)

        say("phase 3: host pressure again while vm1 is in its hysteresis window")
        loop.host_pressure_on()
        time.sleep(20)
        loop.host_pressure_off()

        say("phase 4: the host has room again: 30 s without host pressure (RefillSettleSec=) and 60 s "
            "after its last inflation (RefillDelaySec=), each guest is given memory back towards its "
            "entitlement (its MaxMemory, with room for all)")
        mark = time.monotonic()
        deadline = mark + 120
        while time.monotonic() < deadline and any(loop.actual(vm) < GUEST_MEM - 4 * MIB for vm, _ in VMS):
            time.sleep(1)
        back = [vm for vm, _ in VMS if loop.actual(vm) >= GUEST_MEM - 4 * MIB]
        say(f"phase 4 over: {len(back)} of {len(VMS)} guests back at {GUEST_MEM // MIB}M, "
            f"{time.monotonic() - mark:.0f} s after the host pressure ended")
        stop.set()
        ticker.join()

        say("summary")
        kills = loop.oom_kills()
        for vm, weight in VMS:
            counts = collections.Counter(d.action for d in loop.daemon.decisions_for(vm))
            say(f"  {vm}: weight {weight}, {GUEST_MEM // MIB}M -> {loop.actual(vm) // MIB}M, decisions "
                f"{dict(counts)}, guest OOM kills {kills[vm]}")
        lat = sorted(loop.daemon.latencies_usec)
        if lat:
            say(f"  trigger -> balloon command: {len(lat)} events, median {lat[len(lat) // 2]} us, "
                f"max {lat[-1]} us")
    shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

# SPDX-License-Identifier: LGPL-2.1-or-later
"""End to end: a guest whose working set oscillates under steady host pressure. Two guests are
squeezed by a host that stays short (a page-cache hog larger than anything the balloons return);
vm1 frees 100 MiB and touches it again every 20 s, all at once or in four steps, for DURATION.
Memory freed a moment ago is not idle: the daemon causes at most one inflate/deflate reversal per
minute in either guest, and the guest's OOM killer never fires.
"""

import time

import pytest

from ab.scenario import MIB, ClosedLoop, make_config, reversals
from ab.util import wait_until

pytestmark = pytest.mark.usefixtures("require_root")

VMS = (("vm1", 100), ("vm2", 100))
OSCILLATOR = "vm1"
DURATION = 180          # seconds of oscillation
PERIOD = 20             # freed at the start of each period, touched again half-way
SWING = 100             # MiB
STEPS = 4               # "steps": SWING / STEPS MiB every STEP_SECONDS
STEP_SECONDS = 2.5


@pytest.fixture
def loop(guest_image, run_dir):
    with ClosedLoop(run_dir, image=guest_image, config=make_config(VMS), vms=VMS) as scenario:
        yield scenario


def sleep_until(t):
    time.sleep(max(0.0, t - time.monotonic()))


def oscillate(guest, mode, until):
    """Frees and touches again SWING MiB every PERIOD s until 'until'; returns the allocations the
    OOM killer ended."""
    parts = [SWING] if mode == "at-once" else [SWING // STEPS] * STEPS
    killed = []
    start = time.monotonic()
    while start < until:
        for i in range(len(parts)):
            guest.cmd(f"free ws{i}")
        for i, mb in enumerate(parts):
            sleep_until(start + PERIOD / 2 + i * STEP_SECONDS)
            reply = guest.cmd(f"alloc ws{i} {mb}", timeout=120)
            if reply == "err oom":
                killed.append(round(time.monotonic() - start, 1))
        start += PERIOD
        sleep_until(start)
    return killed


@pytest.mark.parametrize("mode", ["at-once", "steps"])
def test_oscillating_working_set(loop, mode):
    # As autoballoon-run starts guests: a burst faster than any stats read is met by the guest
    # deflating its balloon on OOM, which the daemon then follows.
    loop.start_guests(balloon_props={"deflate-on-oom": "on"})
    loop.start_daemon()
    # A hog larger than what the balloons can return: the host stays short throughout.
    loop.host_pressure_on(hog_mb=1024)
    wait_until(lambda: all(loop.daemon.decisions_for(vm, "inflate") for vm, _ in VMS), 60,
               what="every guest to be inflated")

    g = loop.guests[OSCILLATOR]
    oom0 = loop.oom_kills()
    mark = time.monotonic()
    killed = oscillate(g, mode, mark + DURATION)
    minutes = (time.monotonic() - mark) / 60
    oom = {vm: n - oom0[vm] for vm, n in loop.oom_kills().items()}

    counts = {}
    for vm, _ in VMS:
        decided = loop.daemon.decisions_for(vm, since=mark)
        counts[vm] = (reversals(decided), sum(d.action == "inflate" for d in decided),
                      sum(d.action in ("deflate", "cancel") for d in decided))
    print(f"\n{mode}: {minutes:.1f} min; (reversals, inflations, deflations or cancels) {counts}; "
          f"OOM kills {oom}, allocations killed at {killed} s into their period; balloons "
          f"{ {vm: loop.actual(vm) // MIB for vm, _ in VMS} } MiB")
    for vm, _ in VMS:
        trail = [d for d in loop.daemon.decisions_for(vm, since=mark) if d.action != "set-high"]
        assert counts[vm][0] <= minutes, f"{vm}: {counts[vm][0]} reversals in {minutes:.1f} min: {trail}"
    assert oom == {vm: 0 for vm, _ in VMS} and not killed, f"OOM kills {oom}, allocations killed {killed}"
    assert loop.hog is not None and loop.daemon.stop() == 0

# SPDX-License-Identifier: LGPL-2.1-or-later
"""End to end: memory flows back once host pressure ends. Three guests (weights 100, 100, 200), each
keeping a working set, are inflated under host pressure; the pressure ends (the hog stops, the limit
is lifted) and every guest is back at its entitlement within GIVEBACK_BOUND, then stays there under
a steady load in every guest.

The entitlement: the host's spare memory shared by weight within [MinMemory=, MaxMemory=]. This
machine has gigabytes available, far more than the guests' balloons hold, so every guest's is its
MaxMemory=, the boot size.
"""

import time

import pytest

from ab.scenario import GUEST_MEM, MIB, VMS, ClosedLoop, Timeline
from ab.util import wait_until

pytestmark = pytest.mark.usefixtures("require_root")

# From the hog's stop to the last guest back at its entitlement, on TCG here: the refill's settle
# time (no host trigger) and the time since each guest's last inflation, then its steps at the rate.
GIVEBACK_BOUND = 120
STEADY = 60             # seconds of steady load once back
WORKING_SET = 96        # MiB each guest keeps throughout
BUSY = 32               # MiB each guest touches at random during the steady load
OVERHEAD = 256 * MIB    # MemoryHighOverhead='s default


@pytest.fixture
def loop(guest_image, run_dir):
    with ClosedLoop(run_dir, image=guest_image) as scenario:
        yield scenario


def test_giveback_after_host_pressure(loop):
    loop.start_guests()
    for g in loop.guests.values():
        g.cmd_ok(f"alloc ws {WORKING_SET}", timeout=120)
    loop.start_daemon()

    loop.host_pressure_on()
    wait_until(lambda: all(loop.daemon.decisions_for(vm, "inflate") for vm, _ in VMS), 60,
               what="every guest to be inflated")
    wait_until(lambda: all(abs(loop.actual(vm) - loop.daemon.decisions_for(vm, "inflate")[-1].target) <= MIB
                           for vm, _ in VMS), 60, 0.5, "the balloons to reach their targets")
    squeezed = {vm: loop.actual(vm) for vm, _ in VMS}
    assert all(size <= GUEST_MEM - 64 * MIB for size in squeezed.values()), squeezed

    loop.host_pressure_off()
    with Timeline(loop, 0.5) as timeline:
        off = time.monotonic()
        back = {}

        def all_back():
            for vm, _ in VMS:
                t, actual, _ = timeline.latest(vm)
                if vm not in back and actual == GUEST_MEM:
                    back[vm] = t - off
            return len(back) == len(VMS)
        try:
            wait_until(all_back, GIVEBACK_BOUND, 0.5, "every guest back at its entitlement")
        finally:
            print(f"\nsqueezed to { {vm: s // MIB for vm, s in squeezed.items()} } MiB; back at "
                  f"{GUEST_MEM // MIB} MiB after { {vm: round(s, 1) for vm, s in back.items()} } s; now "
                  f"{ {vm: timeline.latest(vm)[1] // MIB for vm, _ in VMS} } MiB")

        steady = time.monotonic()
        for g in loop.guests.values():
            g.cmd_ok(f"thrash busy {BUSY}", timeout=120)
        time.sleep(STEADY)

    for vm, _ in VMS:
        gave = loop.daemon.decisions_for(vm, "deflate", since=off)
        assert gave, f"{vm} back without a deflate decision?"
        assert not [d for d in gave if "guest pressure" in d.reason], \
            f"{vm} got memory back for guest pressure, not because the host had room: {gave}"
        sizes = {actual for _, actual, _ in timeline.of(vm, steady)}
        assert sizes == {GUEST_MEM}, f"{vm} left its entitlement under steady load: {sorted(sizes)}"
        if loop.cgroup.v2_only:
            # Raised before each deflation: never below the balloon + overhead.
            low = [(actual, high) for _, actual, high in timeline.of(vm, off)
                   if high is not None and high < actual + OVERHEAD]
            assert not low, f"{vm}'s memory.high below balloon + overhead: {low[:5]}"
            assert timeline.latest(vm)[2] == GUEST_MEM + OVERHEAD
    assert not loop.daemon.decisions_for(action="inflate", since=steady), "inflated under steady load"
    assert loop.oom_kills() == {vm: 0 for vm, _ in VMS}
    assert loop.daemon.stop() == 0

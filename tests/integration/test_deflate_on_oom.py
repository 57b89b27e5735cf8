# SPDX-License-Identifier: LGPL-2.1-or-later
"""What autoballoon-run turns on in the balloon device for a stock guest: deflate-on-oom.

A guest squeezed by the balloon to GuestReserve= (64M) of available memory allocates 128 MiB at once,
ROUNDS times, re-squeezed in between. Without deflate-on-oom the guest's OOM killer kills the
allocation every time, before any stats read could tell the daemon; with it the guest driver takes
balloon pages back (1 MiB per OOM notifier call) and nothing is killed. No daemon: this measures the
device feature alone, on a stock 6.1 guest and QEMU 7.2.
"""

import pytest

from ab.guest import Guest
from ab.util import MiB, wait_until

pytestmark = pytest.mark.usefixtures("require_root")

GUEST_MEM = 512 * MiB
RESERVE = 64 * MiB
BURST_MB = 128
ROUNDS = 5


def squeeze(g, target):
    g.balloon(target)
    wait_until(lambda: g.query_balloon() == target, 30, 0.1, f"balloon at {target >> 20}M")


def bursts(g):
    """OOM kills and failed bursts over ROUNDS bursts, and the balloon after each."""
    # The balloon leaves the guest RESERVE of available memory, as the daemon squeezes it.
    avail = g.meminfo()["MemAvailable"] * 1024
    target = (GUEST_MEM - (avail - RESERVE)) & ~(MiB - 1)
    kills0 = g.vmstat("oom_kill")["oom_kill"]
    failed, after = 0, []
    for i in range(ROUNDS):
        squeeze(g, target)
        reply = g.cmd(f"alloc burst{i} {BURST_MB}")
        failed += not reply.startswith("ok")
        after.append(g.query_balloon() >> 20)
        g.cmd(f"free burst{i}")
    return g.vmstat("oom_kill")["oom_kill"] - kills0, failed, target >> 20, after


@pytest.mark.parametrize("deflate_on_oom", ["off", "on"])
def test_burst_when_squeezed(guest_image, run_dir, deflate_on_oom):
    g = Guest.start("doom", run_dir, mem="512M", image=guest_image,
                    balloon_props={"deflate-on-oom": deflate_on_oom})
    try:
        g.wait_ready(60)
        kills, failed, target, after = bursts(g)
        print(f"\ndeflate-on-oom={deflate_on_oom}: squeezed to {target}M, {ROUNDS} bursts of "
              f"{BURST_MB} MiB: {kills} OOM kills, {failed} bursts failed; balloon after each: {after} M")
        if deflate_on_oom == "on":
            assert kills == 0 and failed == 0
        else:
            # The measurement's other half: the stock device lets the guest kill.
            assert kills >= ROUNDS
    finally:
        g.stop()

# SPDX-License-Identifier: LGPL-2.1-or-later
"""End to end: a guest writing to a virtio-blk disk with cache=writeback while the host has
headroom. QEMU's writes fill the host page cache charged to the guest's slice, and the slice stalls
at its memory.high, a throttling the daemon set itself: that is not a host shortage. The writer is
not inflated and its neighbours are untouched.

The host is the test's balloon.slice (HostPressure=slice): the writer's stalls count in its
memory.pressure, and the loads of anything else on the machine do not. On a cgroup v2 host the
writer's slice is throttled at the memory.high the daemon set. Where the memory controller is on
cgroup v1 (this development machine: cgroup2 has no memory.high), a v1 memory limit on the writer's
slice at what the daemon would set memory.high to (balloon + MemoryHighOverhead=) stands in for it:
QEMU's page cache is reclaimed at it, but a v1 limit throttles far less than memory.high does (here
2 GiB written stalled the slice for about 0.05 s), so on such a host the test checks that nothing
moves while the writer fills its limit, and only a cgroup v2 host reproduces the stalls.
"""

import time

import pytest

from ab.scenario import GUEST_MEM, MIB, VMS, ClosedLoop, Timeline, make_config
from ab.util import wait_until

pytestmark = pytest.mark.usefixtures("require_root")

WRITER = "vm1"
NEIGHBOURS = [vm for vm, _ in VMS if vm != WRITER]
OVERHEAD = 256 * MIB    # MemoryHighOverhead='s default
DISK_MB = 1024
ROUNDS = 2              # DISK_MB written and fsynced this many times
# After the last write: the host trigger's 2 s window, a stats read, a decision.
AFTER = 10


@pytest.fixture
def loop(guest_image, run_dir):
    with ClosedLoop(run_dir, image=guest_image, config=make_config(VMS, extra="HostPressure=slice\n")) as scenario:
        yield scenario


def limited(loop, sub):
    """How often the slice was throttled at its memory.high (v2), or hit its v1 limit."""
    d = loop.cgroup.sub(sub)[0]
    if loop.cgroup.v2_only:
        return int(dict(line.split() for line in (d / "memory.events").read_text().splitlines())["high"])
    return int((d / "memory.failcnt").read_text())


def test_writeback_is_not_host_pressure(loop, run_dir):
    disk = run_dir / f"{WRITER}.disk"
    with open(disk, "wb") as f:
        f.truncate(DISK_MB * MIB)
    loop.start_guests(extra_args={WRITER: ["-drive", f"file={disk},format=raw,if=virtio,cache=writeback"]})
    loop.start_daemon()

    writer_slice = loop.slice_of(WRITER)
    if loop.cgroup.v2_only:
        # The daemon's own memory.high, once it decided for the guest the first time.
        wait_until(lambda: loop.memory_high(WRITER) == GUEST_MEM + OVERHEAD, 30,
                   what=f"{WRITER}'s memory.high at its balloon + MemoryHighOverhead=")
    else:
        loop.cgroup.set_limit(GUEST_MEM + OVERHEAD, writer_slice)
    time.sleep(3)
    limited0 = limited(loop, writer_slice)
    stalled0 = loop.cgroup.pressure(writer_slice)["some"]["total"]
    host0 = loop.host_stall_usec()

    with Timeline(loop) as timeline:
        mark = time.monotonic()
        highs0 = {vm: timeline.latest(vm)[2] for vm, _ in VMS}
        took = [int(loop.guests[WRITER].cmd_ok(f"write /dev/vda {DISK_MB}", timeout=600))
                for _ in range(ROUNDS)]
        written = time.monotonic()
        time.sleep(AFTER)

    stalled = (loop.cgroup.pressure(writer_slice)["some"]["total"] - stalled0) / 1e6
    host = (loop.host_stall_usec() - host0) / 1e6
    rate = DISK_MB * ROUNDS * 1000 / sum(took)
    decided = loop.daemon.decisions_for(since=mark)
    print(f"\n{WRITER} wrote {DISK_MB * ROUNDS} MiB in {sum(took) / 1000:.1f} s ({rate:.0f} MiB/s); "
          f"its slice stalled {stalled:.2f} s, the test cgroup {host:.2f} s; decisions: {decided}")
    # The writer really filled its slice to the limit: otherwise this test tests nothing.
    hits = limited(loop, writer_slice) - limited0
    print(f"{WRITER}'s slice at its limit {hits} times")
    assert hits > 0, f"the writes never reached {WRITER}'s limit"

    moves = [d for d in decided if d.action in ("inflate", "deflate", "cancel", "stall")]
    assert not moves, f"balloons moved while the host had headroom: {moves}"
    for vm, _ in VMS:
        sizes = {actual for _, actual, _ in timeline.of(vm, mark)}
        assert sizes == {GUEST_MEM}, f"{vm}'s balloon moved: {sorted(sizes)}"
    for vm in NEIGHBOURS:
        highs = {high for _, _, high in timeline.of(vm, mark)}
        assert highs == {highs0[vm]}, f"neighbour {vm}'s memory.high changed: {sorted(highs, key=str)}"
    if loop.cgroup.v2_only:
        # The writer's memory.high may be raised (it is short of its allotment), never lowered.
        highs = [high for _, _, high in timeline.of(WRITER, mark)]
        assert all(h is None or h >= highs0[WRITER] for h in highs), \
            f"{WRITER}'s memory.high lowered from {highs0[WRITER]}: {highs}"
    assert loop.oom_kills() == {vm: 0 for vm, _ in VMS}
    assert loop.daemon.stop() == 0
    print(f"after the writes ({time.monotonic() - written:.0f} s): balloons "
          f"{ {vm: timeline.latest(vm)[1] // MIB for vm, _ in VMS} } MiB")

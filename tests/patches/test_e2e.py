# SPDX-License-Identifier: LGPL-2.1-or-later
"""End to end with the guest pressure queue: autoballoond inflates a patched guest on the patched
QEMU under real host pressure, the guest then runs short of memory, the device gives memory back
at once and tells the daemon (BALLOON_GUEST_PRESSURE), which holds the VM in hysteresis; a stream
of messages never takes the daemon above the VM's MaxMemory."""

import re
import time

import pytest

from ab.guest import Guest
from ab.hog import PageCacheHog
from ab.scenario import Daemon
from ab.util import MiB, wait_until
import gpq

pytestmark = pytest.mark.usefixtures("require_root")

VM = "vm1"
SLICE = f"balloon.slice/balloon-{VM}.slice"
GUEST_MEM = 512 * MiB
MAX_MEMORY = 480 * MiB
HYSTERESIS = 60
# QEMU traces every balloon command it gets (harness or daemon) on its log.
TO_TARGET_RE = re.compile(r"virtio_balloon_to_target balloon target: 0x([0-9a-f]+)")

CONFIG = f"""\
[Daemon]
HostPressure=system
ReclaimStep=256M
ReclaimSettleSec=0
StatsIntervalSec=1
HysteresisSec={HYSTERESIS}
GuestReserve=64M
GuestMinAvailable=32M
MaxStep=256M
DeflateStep=64M

[VM {VM}]
MinMemory=128M
MaxMemory={MAX_MEMORY // MiB}M
"""


class HostPressure:
    """A memory limit just above what the test cgroup uses and a page-cache hog inside it."""

    def __init__(self, cgroup):
        self.cgroup = cgroup
        self.hog = None

    def on(self, headroom=32 * MiB):
        self.cgroup.set_limit(self.cgroup.usage() + headroom)
        self.hog = PageCacheHog(256, self.cgroup.procs_paths("hog")).start()

    def off(self):
        if self.hog:
            self.hog.stop()
            self.hog = None
        # The guest must be able to grow again: without host swap, a limit hit by QEMU is the
        # memcg OOM killer.
        self.cgroup.set_limit(-1)


@pytest.fixture
def setup(guest_image, run_dir, test_cgroup, patched_kernels, patched_qemu):
    daemon = Daemon(run_dir, test_cgroup.unified_root, CONFIG)
    pressure = HostPressure(test_cgroup)
    guest = Guest.start(VM, run_dir, mem="512M", qmp_path=daemon.qmp_path(VM),
                        cgroups=test_cgroup.procs_paths(SLICE), image=guest_image,
                        free_page_reporting=False,
                        extra_args=["-trace", "virtio_balloon_to_target"],
                        **gpq.guest_kwargs(patched_kernels, patched_qemu, "patched", "on"))
    try:
        guest.wait_ready(90)
        guest.qmp_events()
        # Resident on the host, so that inflating really gives memory back to it.
        guest.cmd_ok("prefault 90", timeout=120)
        daemon.start()
        wait_until(lambda: daemon.saw(rf"{VM}: adopted"), 30, what="the daemon to adopt the VM")
        yield guest, daemon, pressure
    finally:
        pressure.off()
        if daemon.alive():
            daemon.stop()
        guest.stop()
        if daemon.lines:
            print(f"\n--- autoballoond (last 60 lines of {daemon.log_path})\n{daemon.log_tail(60)}")


def events_since(guest, mark_index):
    """The guest pressure events from index mark_index of the harness monitor's list on."""
    guest.qmp("query-status")  # reads what QEMU sent meanwhile
    return [e for e in guest.qmp_events()[mark_index:] if e["event"] == gpq.EVENT]


def balloon_commands(guest, offset):
    """The targets of the balloon commands QEMU got since offset in its log."""
    with open(guest.qemu_log, errors="replace") as f:
        f.seek(offset)
        return [int(m.group(1), 16) for m in TO_TARGET_RE.finditer(f.read())]


def test_guest_pressure_queue_end_to_end(setup):
    guest, daemon, pressure = setup

    # 0. Above MaxMemory from the start: the daemon inflates the guest down to it.
    wait_until(lambda: guest.query_balloon() == MAX_MEMORY, 30, 0.1, what="the balloon at MaxMemory")

    # 1. Host pressure: the daemon inflates the guest (over one or more rounds: the trigger
    # watches the whole host, so it may fire early, for someone else's stalls).
    mark = time.monotonic()
    pressure.on()
    wait_until(lambda: guest.query_balloon() <= GUEST_MEM - 160 * MiB, 60, 0.2,
               what="the daemon to inflate the guest by 160M under host pressure")
    assert any("host pressure" in d.reason for d in daemon.decisions_for(VM, "inflate", since=mark))
    pressure.off()
    last = daemon.decisions_for(VM, "inflate")[-1]
    wait_until(lambda: guest.query_balloon() <= last.target + 4 * MiB, 30, 0.1,
               what="the balloon to reach the daemon's last target")
    inflated = guest.query_balloon()

    # 2. Pressure inside the guest (global reclaim, zram swap): the device cancels or deflates a
    # step at once, the event reaches our monitor and the daemon, which follows the device.
    events_since(guest, 0)  # reads what is pending, so the next events are this phase's
    first_event = len(guest.qmp_events())
    mark = time.monotonic()
    guest_pressure_at = mark
    gpq.squeeze(guest)
    event = wait_until(lambda: events_since(guest, first_event), 30, 0.2,
                       what=f"a {gpq.EVENT} event on the harness monitor")[0]
    data = event["data"]
    assert data["action"] in ("cancel", "deflate"), event
    if data["action"] == "deflate":
        assert data["target"] == min(data["actual"] + gpq.STEP, GUEST_MEM), event
        wait_until(lambda: guest.query_balloon() >= inflated + gpq.STEP, 20, 0.1,
                   what="the balloon to deflate a step")
    else:
        assert data["target"] == data["actual"], event

    # The daemon decides on the event at once and follows the device's action. (Its own signals,
    # from the guest's balloon stats, come with the next stats poll: a decision that has both
    # names them all, so look for the one on the event alone.)
    decided = wait_until(
        lambda: [d for d in daemon.decisions_for(VM, since=mark)
                 if d.reason.startswith("guest driver event")],
        10, 0.1, what="the daemon's decision on the guest driver event")[0]
    device_action = re.search(r"the device's action (\w+)", decided.reason).group(1)
    assert decided.action == {"deflate": "deflate", "cancel": "cancel", "none": "hold"}[device_action]
    assert any(e["data"]["action"] == device_action and e["data"]["target"] == decided.target
               for e in events_since(guest, first_event)), decided
    # From the decision on the VM is in hysteresis. (Before it, the host trigger, which watches the
    # whole machine, may have fired for anyone's stalls.)
    assert not daemon.decisions_for(VM, "inflate", since=decided.when)

    # 3. Host pressure again within the hysteresis window: the daemon holds the VM and does not
    # inflate it.
    guest.cmd_ok("free squeeze")
    time.sleep(2)  # a round without pressure ends the previous hold run (holds are logged once)
    grown = guest.query_balloon()
    mark = time.monotonic()
    pressure.on()
    held = wait_until(lambda: [d for d in daemon.decisions_for(VM, "hold", since=mark)
                               if "hysteresis" in d.reason], 40, 0.2,
                      what="a hold in hysteresis under host pressure")
    time.sleep(3)
    assert time.monotonic() - guest_pressure_at < HYSTERESIS - 5, "phase 3 ran past the window"
    assert not daemon.decisions_for(VM, "inflate", since=mark), daemon.decisions_for(VM, since=mark)
    assert guest.query_balloon() >= grown, "the guest was inflated in its hysteresis window"
    print(f"held: {held[0]}")
    pressure.off()

    # 4. A stream of messages (a guest kept short of memory for a while): the device deflates one
    # step per second up to the boot size, past MaxMemory, and then answers "none"; the daemon's
    # own commands never go above MaxMemory. Each squeeze stalls the guest in direct reclaim, which
    # is what the driver reports (a thrash that kswapd keeps up with is not), so squeeze again and
    # again: how many messages the balloon's room takes depends on where phase 3 left it.
    events_since(guest, 0)
    first_event = len(guest.qmp_events())
    log_offset = guest.qemu_log.stat().st_size
    deadline = time.monotonic() + 90
    while len(events_since(guest, first_event)) < 8 or guest.query_balloon() < GUEST_MEM:
        assert time.monotonic() < deadline, \
            f"8 guest pressure events and an empty balloon in 90 s: {events_since(guest, first_event)}"
        gpq.squeeze(guest, "flood")
        time.sleep(1.5)
        guest.cmd_ok("free flood")
    events = events_since(guest, first_event)
    print(f"{len(events)} events: {[e['data']['action'] for e in events]}")
    assert all(e["data"]["target"] <= GUEST_MEM and e["data"]["actual"] <= GUEST_MEM for e in events)
    commands = balloon_commands(guest, log_offset)
    assert all(t <= MAX_MEMORY for t in commands), [t // MiB for t in commands]
    assert guest.query_balloon() <= GUEST_MEM
    assert not daemon.saw("malformed BALLOON_GUEST_PRESSURE")
    assert not guest.virtio_balloon_status()["broken"]
    assert guest.vmstat("oom_kill")["oom_kill"] == 0
    assert daemon.stop() == 0

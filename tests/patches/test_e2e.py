# SPDX-License-Identifier: LGPL-2.1-or-later
"""End to end with the guest pressure queue: autoballoond inflates a patched 6.12 guest on the
patched QEMU 10.0 under real host pressure; the guest, lying first that its balloon is empty
(config.actual = 0), runs short of memory; the device forwards the message (BALLOON_GUEST_PRESSURE)
and decides nothing; the daemon cancels what it believes is an inflation in flight, never more
than DeflateStep above its own target, gives a step back on medium and critical, and holds the VM
in hysteresis; a stream of messages gets no more than one decision per GuestPressureIntervalSec
and never takes the daemon above the VM's MaxMemory."""

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
STEP = 64 * MiB                 # DeflateStep = MaxStep: one step, whatever the level
INTERVAL = 5                    # GuestPressureIntervalSec, above the driver's and QMP's 1 s
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
MaxStep={STEP // MiB}M
DeflateStep={STEP // MiB}M
GuestPressureIntervalSec={INTERVAL}

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
def start(guest_image, run_dir, test_cgroup, patched_kernels, patched_qemu):
    """start(kernel, device, prefault) -> (guest, daemon, pressure): the guest ready (its RAM
    resident on the host when prefault), the daemon started and the VM adopted."""
    daemon = Daemon(run_dir, test_cgroup.unified_root, CONFIG)
    pressure = HostPressure(test_cgroup)
    guests = []

    def start(kernel="patched", device="on", prefault=True):
        guest = Guest.start(VM, run_dir, mem="512M", qmp_path=daemon.qmp_path(VM),
                            cgroups=test_cgroup.procs_paths(SLICE), image=guest_image,
                            free_page_reporting=False,
                            extra_args=["-trace", "virtio_balloon_to_target"],
                            **gpq.guest_kwargs(patched_kernels, patched_qemu, kernel, device))
        guests.append(guest)
        guest.wait_ready(90)
        guest.qmp_events()
        if prefault:
            # Resident on the host, so that inflating really gives memory back to it.
            guest.cmd_ok("prefault 90", timeout=120)
        daemon.start()
        wait_until(lambda: daemon.saw(rf"{VM}: adopted"), 30, what="the daemon to adopt the VM")
        return guest, daemon, pressure

    try:
        yield start
    finally:
        pressure.off()
        if daemon.alive():
            daemon.stop()
        for guest in guests:
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


def event_decisions(daemon, since=0.0):
    """The daemon's decisions on a guest driver event (other signals may come with it)."""
    return [d for d in daemon.decisions_for(VM, since=since) if "guest driver event" in d.reason]


def squeeze_until_decided(guest, daemon, mark):
    """Runs the guest short of memory; returns its driver's event data and the daemon's decision on
    it (taken after 'mark')."""
    events_since(guest, 0)
    first_event = len(guest.qmp_events())
    gpq.squeeze(guest)
    event = wait_until(lambda: events_since(guest, first_event), 30, 0.2,
                       what=f"a {gpq.EVENT} event on the harness monitor")[0]
    data = gpq.check_event(event, GUEST_MEM)
    decided = wait_until(lambda: event_decisions(daemon, mark), 10, 0.05,
                         what="the daemon's decision on the guest driver event")[0]
    return data, decided


def inflate_under_host_pressure(guest, daemon, pressure):
    """The daemon inflates the guest down to MaxMemory, then under host pressure by 160M more;
    returns the daemon's own target once the balloon reached it."""
    # Above MaxMemory from the start: the daemon inflates the guest down to it.
    wait_until(lambda: guest.query_balloon() == MAX_MEMORY, 30, 0.1, what="the balloon at MaxMemory")
    # Host pressure: the daemon inflates the guest (over one or more rounds: the trigger watches
    # the whole host, so it may fire early, for someone else's stalls).
    mark = time.monotonic()
    pressure.on()
    wait_until(lambda: guest.query_balloon() <= GUEST_MEM - 160 * MiB, 90, 0.2,
               what="the daemon to inflate the guest by 160M under host pressure")
    assert any("host pressure" in d.reason for d in daemon.decisions_for(VM, "inflate", since=mark))
    pressure.off()
    own = daemon.decisions_for(VM)[-1].target
    wait_until(lambda: guest.query_balloon() <= own + 4 * MiB, 30, 0.1,
               what="the balloon to reach the daemon's last target")
    time.sleep(1)
    return daemon.decisions_for(VM)[-1].target


def test_guest_pressure_queue_end_to_end(start):
    guest, daemon, pressure = start()
    own = inflate_under_host_pressure(guest, daemon, pressure)

    # 2. The guest runs short of memory (global reclaim, zram swap). The device forwards the
    # message and decides nothing; the daemon holds on low (nothing in flight), gives a step back
    # on medium or critical, and holds the VM in hysteresis. (Its own signals, from the balloon
    # stats, may deflate it on the next poll too: that is not the message's decision.)
    mark = guest_pressure_at = time.monotonic()
    data, decided = squeeze_until_decided(guest, daemon, mark)
    print(f"event {data}; own target {own // MiB}M; decision {decided}")
    assert "hysteresis" in decided.reason, decided
    if data["level"] == "low":
        assert decided.action == "hold" and decided.target == own, decided
    else:
        assert decided.action == "deflate" and own < decided.target <= own + STEP, decided
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
    assert guest.query_balloon() >= grown - 4 * MiB, "the guest was inflated in its hysteresis window"
    print(f"held: {held[0]}")
    pressure.off()

    # 4. A stream of messages (a guest kept short of memory for a while, one message a second at
    # most from the driver and QMP's rate limit): the daemon acts on at most one per
    # GuestPressureIntervalSec, each at most a step, and never goes above MaxMemory. Each
    # squeeze stalls the guest in direct reclaim, which is what the driver reports.
    events_since(guest, 0)
    first_event = len(guest.qmp_events())
    log_offset = guest.qemu_log.stat().st_size
    own = daemon.decisions_for(VM)[-1].target
    mark = time.monotonic()
    deadline = mark + 120
    while len(events_since(guest, first_event)) < 3 * INTERVAL or time.monotonic() < mark + 3 * INTERVAL:
        assert time.monotonic() < deadline, \
            f"{3 * INTERVAL} guest pressure events in 120 s: {events_since(guest, first_event)}"
        gpq.squeeze(guest, "flood")
        time.sleep(1.2)
        guest.cmd_ok("free flood")
    time.sleep(1)
    events = events_since(guest, first_event)
    for e in events:
        gpq.check_event(e, GUEST_MEM)
    acted = [d for d in event_decisions(daemon, mark) if d.action in ("deflate", "cancel")]
    spread = (events[-1]["timestamp"]["seconds"] - events[0]["timestamp"]["seconds"]) if events else 0
    print(f"{len(events)} events over {spread} s: {[e['data']['level'] for e in events]}; "
          f"{len(acted)} acted on: {acted}")
    assert len(acted) <= spread // INTERVAL + 1, acted
    gaps = [b.when - a.when for a, b in zip(acted, acted[1:])]
    assert all(g >= INTERVAL - 0.5 for g in gaps), gaps
    commands = balloon_commands(guest, log_offset)
    assert all(t <= MAX_MEMORY for t in commands), [t // MiB for t in commands]
    targets = [own] + [d.target for d in daemon.decisions_for(VM, since=mark)]
    assert all(b - a <= STEP for a, b in zip(targets, targets[1:])), [t // MiB for t in targets]
    assert not daemon.saw(r"BALLOON_GUEST_PRESSURE event .*ignoring it")
    assert not guest.virtio_balloon_status()["broken"]
    assert gpq.counters(guest)[1] == 0
    assert guest.vmstat("oom_kill")["oom_kill"] == 0
    assert daemon.stop() == 0


@pytest.mark.parametrize("kernel,device", [("patched", "stock"), ("stock", "on"), ("cloud", "on")])
def test_one_side_stock(start, kernel, device):
    """The patched guest on the stock QEMU, or a stock guest on the patched QEMU offering the
    feature: the daemon balloons the VM as ever (down to MaxMemory), and a guest short of memory
    sends no message: no event, no decision on one, nothing broken."""
    guest, daemon, _ = start(kernel, device, prefault=False)
    wait_until(lambda: guest.query_balloon() == MAX_MEMORY, 30, 0.1, what="the balloon at MaxMemory")
    status = guest.virtio_balloon_status()
    assert not gpq.feature_bit(status, "guest-features") and not gpq.guest_accepted(guest)
    # The cloud kernel has no swap here: its allocation may end in the OOM killer, which is fine.
    answer = guest.cmd(f"alloc squeeze {guest.meminfo()['MemFree'] // 1024 + 64}", timeout=120)
    assert answer.startswith("ok") or (kernel == "cloud" and answer == "err oom"), answer
    time.sleep(3)
    assert events_since(guest, 0) == []
    assert not event_decisions(daemon)
    if device == "on":
        assert gpq.counters(guest) == (0, 0)
    guest.cmd("free squeeze")
    assert guest.query_balloon() <= MAX_MEMORY
    assert not guest.virtio_balloon_status()["broken"]
    assert not daemon.saw(r"BALLOON_GUEST_PRESSURE event .*ignoring it")
    assert daemon.stop() == 0


def test_lying_actual(start):
    """A guest that writes config.actual = 0 (its balloon empty, QEMU reports the whole RAM) before
    its message gets no more from the daemon than one step on top of the step the message gets."""
    guest, daemon, pressure = start()
    own = inflate_under_host_pressure(guest, daemon, pressure)

    # 2. The guest says its balloon is empty (config.actual = 0: QEMU reports the whole RAM), then
    # runs short of memory (global reclaim, zram swap). The device forwards the message and decides
    # nothing; whatever the daemon makes of the lie (an inflation of its own in flight, cancelled),
    # its target moves at most one step above its own, plus the step a medium or critical message
    # gets anyway.
    log_offset = guest.qemu_log.stat().st_size
    lie = time.monotonic()
    guest.cmd_ok("balloon-actual 0")
    wait_until(lambda: guest.query_balloon() == GUEST_MEM, 10, 0.1, what="QEMU to take the guest's word")
    # BALLOON_CHANGE is rate-limited to one a second: the daemon has heard of the lie after that.
    time.sleep(1.5)
    mark = time.monotonic()
    data, decided = squeeze_until_decided(guest, daemon, mark)
    time.sleep(2)
    # The lie is followed by one step (a deflation nobody asked for is adopted a step per report),
    # the message's cancel or deflation by one more: never the whole RAM the guest claims.
    bound = own + 2 * STEP
    print(f"event {data}; own target {own // MiB}M, bound {bound // MiB}M; decision {decided}")
    targets = [d.target for d in daemon.decisions_for(VM, since=lie)]
    assert all(t <= bound for t in targets), \
        f"the daemon's target above {bound // MiB}M: {daemon.decisions_for(VM, since=lie)}"
    commands = balloon_commands(guest, log_offset)
    assert all(t <= bound for t in commands), [t // MiB for t in commands]
    assert not guest.virtio_balloon_status()["broken"]
    assert daemon.stop() == 0

# SPDX-License-Identifier: LGPL-2.1-or-later
"""BALLOON_GUEST_PRESSURE as the patched QEMU sends it ({"level", "size"}; the device decides
nothing), from a fake QEMU monitor that runs no guest (FakePressureQMP, a stand-in for QEMU): the
daemon deflates on critical, acts on a flood of messages at most once per GuestPressureIntervalSec=
with the rest folded, and ignores unknown levels and the old event format with one warning. The
real patched QEMU and guest are tests/patches' (test_e2e.py)."""

import json
import re
import threading
import time

import pytest

from ab.listener import Listener
from ab.scenario import Daemon
from ab.util import MiB, wait_until

pytestmark = pytest.mark.usefixtures("require_root")

GiB = 1024 * MiB
VM = "gp"
INTERVAL = 1  # GuestPressureIntervalSec=
# No host pressure (no reserve; the trigger on the test's own slice, where nothing runs, so a loaded
# CI machine's stalls do not inflate the balloon): only the guest's messages move it.
CONFIG = ("[Daemon]\nHostPressure=slice\nStatsIntervalSec=1\nHostReserve=0\nTriggerWindowSec=10\nHostTriggerStallSec=10\n"
          f"SliceTriggerStallSec=10\nDeflateStep=128M\nMaxStep=256M\nGuestPressureIntervalSec={INTERVAL}\n"
          "RefillRate=0\n")  # give-back off: every target here is a guest message's


class FakePressureQMP(Listener):
    """A stand-in for the patched QEMU's monitor: a 2G VM with its balloon at 1G, guest stats with
    plenty available, a balloon that moves at once to each target (BALLOON_CHANGE), and the guest
    pressure events the test sends."""

    def __init__(self, path):
        self.actual = GiB
        self.targets = []
        self.conn = None
        self.lock = threading.Lock()
        super().__init__(path)

    def send(self, msg):
        with self.lock:
            self.conn.sendall(json.dumps(msg).encode() + b"\r\n")

    def event(self, data):
        self.send({"event": "BALLOON_GUEST_PRESSURE", "data": data,
                   "timestamp": {"seconds": int(time.time()), "microseconds": 0}})

    def reply(self, m):
        cmd, args = m["execute"], m.get("arguments", {})
        if cmd == "query-memory-size-summary":
            return {"base-memory": 2 * GiB}
        if cmd == "qom-list":
            return [{"name": "balloon0", "type": "child<virtio-balloon-pci>"}]
        if cmd == "query-balloon":
            return {"actual": self.actual}
        if cmd == "qom-get" and args.get("property") == "guest-stats":
            return {"stats": {"stat-available-memory": GiB // 2, "stat-free-memory": GiB // 4,
                              "stat-total-memory": GiB}, "last-update": int(time.time())}
        if cmd == "balloon":
            self.targets.append(args["value"])
            self.actual = args["value"]
        return {}

    def talk(self, conn):
        self.conn = conn
        self.send({"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 10}, "package": ""},
                           "capabilities": []}})
        with conn.makefile("rb", buffering=0) as f:
            for line in f:
                m = json.loads(line)
                self.send({"return": self.reply(m), "id": m.get("id")})
                if m["execute"] == "balloon":
                    self.send({"event": "BALLOON_CHANGE", "data": {"actual": self.actual},
                               "timestamp": {"seconds": int(time.time()), "microseconds": 0}})


def test_guest_pressure_events_rate_and_levels(run_dir, test_cgroup):
    test_cgroup.sub(f"balloon.slice/balloon-{VM}.slice")
    d = Daemon(run_dir, test_cgroup.unified_root, CONFIG)
    fake = FakePressureQMP(d.qmp_path(VM))
    try:
        d.start()
        wait_until(lambda: d.saw(rf"{VM}: adopted"), 30, what="adoption")

        # Low with nothing inflating: held, nothing given back.
        mark = time.monotonic()
        fake.event({"level": "low", "size": 0})
        wait_until(lambda: d.decisions_for(VM, since=mark), 10, 0.05, what="the decision on low")
        assert d.decisions_for(VM, since=mark)[0].action == "hold", d.log_tail()
        assert fake.targets == []

        # A flood: a critical message every 40 ms for 3 s. The first is acted on at once, the others
        # folded into one decision per interval: a step of DeflateStep= each time, no more.
        time.sleep(INTERVAL + 0.2)
        mark = time.monotonic()
        sent = 0
        while time.monotonic() < mark + 3:
            fake.event({"level": "critical", "size": 64 * MiB})
            sent += 1
            time.sleep(0.04)
        time.sleep(INTERVAL + 0.5)  # the last folded ones
        acted = [x for x in d.decisions_for(VM, since=mark) if x.reason.startswith("guest driver event critical")]
        print(f"{sent} critical messages in 3 s: {len(acted)} decisions, targets "
              f"{[t // MiB for t in fake.targets]} MiB")
        assert 3 <= len(acted) <= 5, d.log_tail()
        assert all(x.action == "deflate" for x in acted), acted
        assert any("messages)" in x.reason for x in acted), acted
        assert fake.targets == [GiB + 128 * MiB * (i + 1) for i in range(len(acted))]

        # Unknown levels (a newer QEMU) and the old format: ignored, one warning, nothing moves.
        time.sleep(INTERVAL)
        n = len(fake.targets)
        fake.event({"level": "severe", "size": 0})
        fake.event({"actual": GiB, "target": 2 * GiB, "level": 2, "action": "deflate"})
        fake.event({"level": "severe", "size": 0})
        wait_until(lambda: d.saw(rf"{VM}: BALLOON_GUEST_PRESSURE event with a level this daemon does not know"),
                   10, 0.05, what="the warning")
        time.sleep(INTERVAL + 0.5)
        assert len(fake.targets) == n
        assert sum(bool(re.search(r"warning: .*BALLOON_GUEST_PRESSURE", line)) for line in d.lines) == 1, d.log_tail()
        assert d.alive()
    finally:
        status = d.stop()
        fake.close()
    assert status == 0

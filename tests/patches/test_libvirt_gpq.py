# SPDX-License-Identifier: LGPL-2.1-or-later
"""The guest pressure queue through libvirt: the patched 6.12 guest on the patched QEMU 10.0 as a
libvirt domain; its BALLOON_GUEST_PRESSURE reaches autoballoond as a QEMU monitor event relayed by
libvirt (libvirt-qemu), and the daemon decides on it at once, as on QMP: a hold (low, nothing in
flight) or a step back (medium, critical), then hysteresis."""

import time

import pytest

from ab.util import MiB, wait_until
from ab.virt import adopted
import gpq

pytestmark = pytest.mark.usefixtures("require_root")


def test_guest_pressure_event_through_libvirt(lv, patched_kernels, patched_qemu):
    loop = lv.setup({"lv1": "MinMemory=128M\nMaxMemory=384M\n"})
    g = lv.domain("lv1", ready=False, acpi=True,
                  **gpq.guest_kwargs(patched_kernels, patched_qemu, "patched", "on"))
    g.wait_ready(120)
    assert gpq.feature_bit(g.virtio_balloon_status(), "guest-features"), "the patched driver did not negotiate"
    d = loop.daemon.start()
    wait_until(lambda: adopted(d, "lv1"), 30, what="the daemon to adopt the domain")
    wait_until(lambda: g.query_balloon() == 384 * MiB, 60, 0.2, what="lv1 inflated to its MaxMemory")
    assert not d.saw("Cannot follow QEMU's BALLOON_GUEST_PRESSURE"), d.log_tail()

    g.qmp_events().clear()
    mark = time.monotonic()
    gpq.squeeze(g)
    data = gpq.check_event(g.wait_qmp_event(gpq.EVENT, 30), 512 * MiB)
    decided = wait_until(
        lambda: [x for x in d.decisions_for("lv1", since=mark) if "guest driver event" in x.reason],
        20, 0.1, what="the daemon's decision on the event relayed by libvirt")[0]
    print(f"event {data}; decision {decided}")
    # At MaxMemory nothing is in flight and nothing goes above it: a hold whatever the level.
    assert decided.action == "hold" and decided.target <= 384 * MiB, decided
    assert "hysteresis" in decided.reason, decided
    assert g.query_balloon() == 384 * MiB
    assert not d.saw(r"BALLOON_GUEST_PRESSURE event .*ignoring it"), d.log_tail()
    g.cmd_ok("free squeeze")
    assert g.vmstat("oom_kill")["oom_kill"] == 0
    assert d.stop() == 0

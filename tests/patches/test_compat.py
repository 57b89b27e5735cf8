# SPDX-License-Identifier: LGPL-2.1-or-later
"""The guest pressure queue on real TCG guests, device side seen over the harness' monitor (no
daemon): the patched 6.12 kernel on the patched QEMU 10.0, each of them with the other side stock,
and the index rule (a guest that drops free page reporting must not use the queue at the wrong
index: the feature is then not negotiated, or the messages still arrive; never lost)."""

import time

import pytest

from ab.util import MiB, wait_until
import gpq
pytestmark = pytest.mark.usefixtures("require_root")

GUEST_MEM = 512 * MiB
SMALL = 256 * MiB


@pytest.fixture
def start(guest_factory, patched_kernels, patched_qemu):
    """start(name, kernel, device, **Guest.start kwargs) -> a ready guest whose harness monitor
    already listens."""
    def start(name, kernel, device, props=None, **kwargs):
        kwargs.setdefault("free_page_reporting", True)
        g = guest_factory(name, mem="512M", ready_timeout=90,
                          **gpq.guest_kwargs(patched_kernels, patched_qemu, kernel, device, **(props or {})),
                          **kwargs)
        g.qmp_events()
        return g
    return start


def check_ballooning(g):
    """Inflate to 256M and deflate back: QEMU's view and the guest's MemTotal follow."""
    total = g.meminfo()["MemTotal"]
    g.balloon(SMALL)
    wait_until(lambda: g.query_balloon() == SMALL, 20, 0.1, "the balloon at 256M")
    wait_until(lambda: total - g.meminfo()["MemTotal"] >= 250 * 1024, 10, 0.2, "MemTotal to drop")
    g.balloon(GUEST_MEM)
    wait_until(lambda: g.query_balloon() == GUEST_MEM, 20, 0.1, "the balloon back at 512M")
    wait_until(lambda: g.meminfo()["MemTotal"] >= total - 1024, 10, 0.2, "MemTotal to come back")


def inflate(g, size=SMALL):
    g.balloon(size)
    wait_until(lambda: g.query_balloon() == size, 20, 0.1, f"the balloon at {size // MiB}M")


def pressure_events(g):
    g.qmp("query-status")  # reads what QEMU sent meanwhile
    return [e for e in g.qmp_events() if e["event"] == gpq.EVENT]


def driver_ok(status):
    return any(s.startswith("VIRTIO_CONFIG_S_DRIVER_OK") for s in status["status"]["statuses"])


def check_not_negotiated(g, status, offered):
    """Both sides agree that the feature is off; the device was set up all the same."""
    assert gpq.feature_bit(status, "host-features") == offered, status["host-features"]
    assert not gpq.feature_bit(status, "guest-features"), status["guest-features"]
    assert not gpq.guest_accepted(g)
    assert driver_ok(status) and not status["broken"], status


def check_quiet_under_pressure(g, cloud=False):
    """Inflated, then short of memory: nothing moves the balloon but the host, no event."""
    inflate(g)
    # The cloud kernel has no swap here: its allocation may end in the OOM killer, which is fine.
    answer = g.cmd(f"alloc squeeze {g.meminfo()['MemFree'] // 1024 + 64}", timeout=120)
    assert answer.startswith("ok") or (cloud and answer == "err oom"), answer
    assert g.cmd("ping alive") == "ok pong alive"
    time.sleep(3)
    assert g.query_balloon() == SMALL, "the balloon moved without a host command"
    assert pressure_events(g) == []
    g.cmd("free squeeze")
    g.balloon(GUEST_MEM)
    wait_until(lambda: g.query_balloon() == GUEST_MEM, 20, 0.1, "the balloon back at 512M")
    assert not g.virtio_balloon_status()["broken"]


def test_patched_guest_on_patched_qemu(start):
    g = start("pp", "patched", "on")
    status = g.virtio_balloon_status()
    assert gpq.feature_bit(status, "host-features"), status["host-features"]
    assert gpq.feature_bit(status, "guest-features"), status["guest-features"]
    assert gpq.guest_accepted(g), "QEMU and the guest's sysfs disagree on the feature"
    assert driver_ok(status) and not status["broken"], status
    index = gpq.pressure_queue_index(status)
    assert status["num-vqs"] == index + 1
    queue = g.virtio_balloon_queue(index)
    assert queue["vring-desc"] != 0, f"the driver did not set up the message queue: {queue}"
    assert queue["last-avail-idx"] == 0, f"an idle guest sent pressure messages: {queue}"
    assert gpq.counters(g) == (0, 0)

    check_ballooning(g)

    # Pressure inside the inflated guest: the message becomes an event, and the device decides
    # nothing: the balloon stays where the host put it.
    inflate(g)
    gpq.squeeze(g)
    data = gpq.check_event(g.wait_qmp_event(gpq.EVENT, 30), GUEST_MEM)
    print(f"event: {data}")
    messages, ignored = gpq.counters(g)
    assert messages >= 1 and ignored == 0, (messages, ignored)
    assert g.virtio_balloon_queue(index)["used-idx"] >= 1
    time.sleep(2)
    assert g.query_balloon() == SMALL, "the device moved the balloon on its own"

    # No hold in the device: a host inflate right after a message goes through, and so does
    # giving memory back.
    g.cmd_ok("free squeeze")
    inflate(g, SMALL - 32 * MiB)
    g.balloon(GUEST_MEM)
    wait_until(lambda: g.query_balloon() == GUEST_MEM, 20, 0.1, "the balloon back at 512M")
    assert not g.virtio_balloon_status()["broken"]
    assert gpq.console_problems(g) == []


@pytest.mark.parametrize("device", ["stock", "off"])
def test_patched_guest_without_the_feature(start, device):
    """The same QEMU release without the series, or the patched one without guest-pressure=on:
    the old queue layout, the balloon as before, and guest pressure changes nothing on the host."""
    g = start("pn", "patched", device)
    status = g.virtio_balloon_status()
    check_not_negotiated(g, status, offered=False)
    assert status["num-vqs"] == gpq.pressure_queue_index(status)

    check_ballooning(g)
    check_quiet_under_pressure(g)
    if device == "off":
        assert gpq.counters(g) == (0, 0)
    assert gpq.console_problems(g) == []


@pytest.mark.parametrize("kernel", ["cloud", "stock"])
def test_stock_guest_on_patched_qemu(start, kernel):
    """Debian's cloud kernel (the test image) or guest/'s 6.12 kernel without the series, on the
    patched QEMU with guest-pressure=on: offered, not negotiated, the queue never used."""
    g = start("sp", kernel, "on")
    status = g.virtio_balloon_status()
    check_not_negotiated(g, status, offered=True)
    index = gpq.pressure_queue_index(status)
    assert status["num-vqs"] == index + 1

    check_ballooning(g)
    check_quiet_under_pressure(g, cloud=kernel == "cloud")
    queue = g.virtio_balloon_queue(index)
    assert queue["vring-desc"] == 0 and queue["last-avail-idx"] == 0 and queue["used-idx"] == 0, queue
    assert gpq.counters(g) == (0, 0)


@pytest.mark.parametrize("variant", ["pc-i440fx-5.0", "page-poison=off"])
def test_index_rule(start, variant):
    """init_on_free=1 and free page reporting offered without PAGE_POISON (machine types 5.0 and
    older, or page-poison=off): the driver must drop free page reporting, so the queues it would
    number by what it accepts no longer match the device's. Either the messages arrive (counted
    as valid) or GUEST_PRESSURE is cleanly not negotiated; never sent to another queue."""
    machine = ["-M", variant] if variant.startswith("pc-") else []
    props = {"page-poison": "off"} if variant == "page-poison=off" else {}
    g = start("ir", "patched", "on", props=props, extra_args=machine, append="init_on_free=1")
    status = g.virtio_balloon_status()
    assert has_reporting_without_poison(status), status["host-features"]
    assert gpq.feature_bit(status, "host-features"), status["host-features"]
    assert not gpq.has_feature(status, "guest-features", "VIRTIO_BALLOON_F_REPORTING"), \
        "the guest kept free page reporting without PAGE_POISON under init_on_free=1"
    assert driver_ok(status) and not status["broken"], status

    negotiated = gpq.feature_bit(status, "guest-features")
    assert negotiated == gpq.guest_accepted(g), "QEMU and the guest's sysfs disagree on the feature"
    print(f"{variant}: GUEST_PRESSURE {'negotiated' if negotiated else 'not negotiated'}")
    check_ballooning(g)
    if negotiated:
        inflate(g)
        gpq.squeeze(g)
        gpq.check_event(g.wait_qmp_event(gpq.EVENT, 30), GUEST_MEM)
        messages, ignored = gpq.counters(g)
        assert messages >= 1 and ignored == 0, (messages, ignored)
        g.cmd_ok("free squeeze")
    else:
        check_quiet_under_pressure(g)
        # Nothing arrived anywhere: not on pressureq, and the guest used no queue the device
        # does not expect (the reporting queue it dropped stays untouched).
        assert gpq.counters(g) == (0, 0)
        for i in range(status["num-vqs"]):
            q = g.virtio_balloon_queue(i)
            if q["vring-desc"] == 0:
                assert q["last-avail-idx"] == 0, q
    assert not g.virtio_balloon_status()["broken"]
    assert gpq.console_problems(g) == []


def has_reporting_without_poison(status):
    return gpq.has_feature(status, "host-features", "VIRTIO_BALLOON_F_REPORTING") and \
        not gpq.has_feature(status, "host-features", "VIRTIO_BALLOON_F_PAGE_POISON")

# SPDX-License-Identifier: LGPL-2.1-or-later
"""The guest pressure queue on real TCG guests, device side seen over the harness' monitor: the
patched kernel on the patched QEMU, and each of them with the other side stock."""

import time

import pytest

from ab.util import MiB, wait_until
import gpq
pytestmark = pytest.mark.usefixtures("require_root")

GUEST_MEM = 512 * MiB
SMALL = 256 * MiB


@pytest.fixture
def start(guest_factory, patched_kernels, patched_qemu):
    """start(name, kernel, device) -> a ready guest whose harness monitor already listens."""
    def start(name, kernel, device, **kwargs):
        g = guest_factory(name, mem="512M", free_page_reporting=True,
                          **gpq.guest_kwargs(patched_kernels, patched_qemu, kernel, device), **kwargs)
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
    return [e for e in g.qmp_events() if e["event"] == gpq.EVENT]


def test_patched_guest_on_patched_qemu(start):
    g = start("pp", "patched", "on")
    status = g.virtio_balloon_status()
    assert gpq.feature_bit(status, "host-features"), status["host-features"]
    assert gpq.feature_bit(status, "guest-features"), status["guest-features"]
    assert not status["broken"]
    index = gpq.pressure_queue_index(status)
    assert status["num-vqs"] == index + 1
    queue = g.virtio_balloon_queue(index)
    assert queue["vring-desc"] != 0, f"the driver did not set up the message queue: {queue}"
    assert queue["last-avail-idx"] == 0, f"an idle guest sent pressure messages: {queue}"

    check_ballooning(g)

    # Pressure inside the inflated guest: the device cancels or deflates one step and says so.
    inflate(g)
    gpq.squeeze(g)
    event = g.wait_qmp_event(gpq.EVENT, 30)
    data = event["data"]
    assert data["action"] in ("cancel", "deflate"), event
    assert data["level"] in (0, 1, 2) and data["pages"] >= 0, event
    if data["action"] == "deflate":
        assert data["target"] == data["actual"] + gpq.STEP, event
        assert data["actual"] == SMALL, event
    else:
        assert data["target"] == data["actual"], event
    wait_until(lambda: g.query_balloon() >= SMALL + gpq.STEP, 20, 0.1, "a deflate step")
    assert g.virtio_balloon_queue(index)["used-idx"] >= 1

    # Hysteresis (60 s by default): the device holds a host inflate and says so.
    g.qmp_events().clear()
    before = g.qmp("query-balloon")["actual"]
    g.balloon(SMALL)
    held = g.wait_qmp_event(gpq.EVENT, 10)
    assert held["data"]["action"] == "none", held
    assert held["data"]["target"] >= before, held
    time.sleep(2)
    assert g.query_balloon() >= before, "a host inflate went through during the hysteresis"

    # Giving memory back is never held.
    g.cmd_ok("free squeeze")
    g.balloon(GUEST_MEM)
    wait_until(lambda: g.query_balloon() == GUEST_MEM, 20, 0.1, "the balloon back at 512M")
    assert not g.virtio_balloon_status()["broken"]
    assert gpq.console_problems(g) == []


@pytest.mark.parametrize("device", ["stock", "off"])
def test_patched_guest_without_the_feature(start, device):
    """Debian's QEMU, or the patched one without guest-pressure=on: the old queue layout, the
    balloon as before, and guest pressure changes nothing on the host side."""
    g = start("pn", "patched", device)
    status = g.virtio_balloon_status()
    assert not gpq.feature_bit(status, "host-features")
    assert not gpq.feature_bit(status, "guest-features")
    assert status["num-vqs"] == gpq.pressure_queue_index(status)

    check_ballooning(g)

    inflate(g)
    gpq.squeeze(g)
    assert g.cmd("ping alive") == "ok pong alive"
    assert g.workers()["squeeze"][1], "the allocation was OOM-killed: zram swap missing?"
    time.sleep(3)
    assert g.query_balloon() == SMALL, "the balloon moved without a host command"
    assert pressure_events(g) == []
    g.cmd_ok("free squeeze")
    assert not g.virtio_balloon_status()["broken"]
    assert gpq.console_problems(g) == []


@pytest.mark.parametrize("kernel", ["cloud", "stock"])
def test_stock_guest_on_patched_qemu(start, kernel):
    """Debian's cloud kernel (the test image) or guest/'s kernel without the series, on the patched
    QEMU with guest-pressure=on: offered, not negotiated, the queue never used."""
    g = start("sp", kernel, "on")
    status = g.virtio_balloon_status()
    assert gpq.feature_bit(status, "host-features"), status["host-features"]
    assert not gpq.feature_bit(status, "guest-features"), status["guest-features"]
    index = gpq.pressure_queue_index(status)

    check_ballooning(g)

    inflate(g)
    # The cloud kernel has no swap here: its allocation may end in the OOM killer, which is fine.
    answer = g.cmd(f"alloc squeeze {g.meminfo()['MemFree'] // 1024 + 64}", timeout=120)
    assert answer.startswith("ok") or (kernel == "cloud" and answer == "err oom"), answer
    time.sleep(3)
    assert g.query_balloon() == SMALL, "the balloon moved without a host command"
    assert pressure_events(g) == []
    queue = g.virtio_balloon_queue(index)
    assert queue["last-avail-idx"] == 0 and queue["used-idx"] == 0, queue
    assert not g.virtio_balloon_status()["broken"]
    g.cmd("free squeeze")
    g.balloon(GUEST_MEM)
    wait_until(lambda: g.query_balloon() == GUEST_MEM, 20, 0.1, "the balloon back at 512M")

# SPDX-License-Identifier: LGPL-2.1-or-later
"""The test guest and the harness on a real QEMU: boot, balloon, guest stats, cgroups, PSI."""

import shutil
import time

import pytest

from ab.agent import parse_kv
from ab.guest import Guest
from ab.hog import PageCacheHog
from ab.util import MiB, make_run_dir, wait_until

pytestmark = pytest.mark.usefixtures("require_root")

GUEST_MEM = 512 * MiB


@pytest.fixture(scope="module")
def guest(guest_image):
    """One guest shared by the tests that do not need a fresh one."""
    d = make_run_dir()
    g = Guest.start("g1", d, mem="512M", image=guest_image)
    try:
        g.wait_ready(60)
        print(f"\nguest ready {g.ready_seconds:.1f}s after start")
        yield g
    finally:
        g.stop()
    shutil.rmtree(d, ignore_errors=True)


def stats_after_next_update(guest, timeout=10):
    """Guest stats at least one polling period newer than now."""
    first = guest.guest_stats()["last-update"]
    return wait_until(lambda: (s := guest.guest_stats())["last-update"] > first and s,
                      timeout, 0.2, "a new guest-stats update")


def test_boot_and_agent(guest):
    assert guest.cmd("ping hello") == "ok pong hello"
    mem = guest.meminfo()
    # MemTotal is the RAM minus what the kernel reserved for itself.
    assert 400 * 1024 < mem["MemTotal"] <= 512 * 1024
    assert 0 < mem["MemAvailable"] <= mem["MemTotal"]
    assert guest.cmd_ok("pressure").startswith("some avg10=")
    assert set(guest.vmstat("oom_kill", "pswpin", "pgmajfault")) == {"oom_kill", "pswpin", "pgmajfault"}
    assert guest.cmd("vmstat no_such_key").startswith("err")
    assert guest.cmd("frobnicate").startswith("err")
    assert guest.query_balloon() == GUEST_MEM


def test_balloon_inflate_deflate(guest):
    total0 = guest.meminfo()["MemTotal"]

    t0 = time.monotonic()
    guest.balloon(256 * MiB)
    wait_until(lambda: guest.query_balloon() == 256 * MiB, 10, 0.05, "balloon at 256M")
    inflate = time.monotonic() - t0
    drop = wait_until(lambda: (d := total0 - guest.meminfo()["MemTotal"]) >= 250 * 1024 and d,
                      10, 0.2, "MemTotal to drop by ~256M")
    assert drop <= 260 * 1024

    t0 = time.monotonic()
    guest.balloon(GUEST_MEM)
    wait_until(lambda: guest.query_balloon() == GUEST_MEM, 10, 0.05, "balloon back at 512M")
    deflate = time.monotonic() - t0
    wait_until(lambda: abs(guest.meminfo()["MemTotal"] - total0) <= 4 * 1024, 10, 0.2,
               "MemTotal to come back")
    print(f"\ninflate 512M->256M {inflate:.2f}s, deflate {deflate:.2f}s")


def test_guest_stats(guest):
    guest.guest_stats(polling_interval=1)
    stats = stats_after_next_update(guest)["stats"]
    avail = guest.meminfo()["MemAvailable"] * 1024
    assert stats["stat-total-memory"] <= GUEST_MEM
    assert abs(stats["stat-available-memory"] - avail) <= max(16 * MiB, avail // 20)


def test_alloc_lowers_available(guest):
    guest.guest_stats(polling_interval=1)
    before = stats_after_next_update(guest)["stats"]["stat-available-memory"]

    reply = guest.cmd_ok("alloc hold 128")
    assert reply.startswith("pid ")
    assert guest.workers()["hold"][1] is True
    wait_until(lambda: guest.guest_stats()["stats"]["stat-available-memory"] < before - 100 * MiB,
               10, 0.2, "stat-available-memory to drop by the allocation")

    assert guest.cmd("free hold") == "ok"
    assert "hold" not in guest.workers()
    wait_until(lambda: guest.guest_stats()["stats"]["stat-available-memory"] > before - 32 * MiB,
               10, 0.2, "stat-available-memory to come back")


def test_thrash_and_prefault(guest):
    assert guest.cmd_ok("thrash t 32").startswith("pid ")
    time.sleep(0.5)
    assert guest.workers()["t"][1] is True
    assert guest.cmd("free t") == "ok"
    touched = int(guest.cmd_ok("prefault 50", timeout=60))
    avail = guest.meminfo()["MemAvailable"]
    assert 0.3 * avail / 1024 < touched <= 0.6 * avail / 1024


def test_oom_kill_is_visible(guest):
    oom0 = guest.vmstat("oom_kill")["oom_kill"]
    # More than the guest has: the guest's OOM killer must shoot the worker, not the agent.
    assert guest.cmd("alloc big 1024", timeout=60) == "err oom"
    assert guest.workers()["big"][1] is False
    assert guest.vmstat("oom_kill")["oom_kill"] > oom0
    assert guest.cmd("ping after") == "ok pong after"
    assert guest.cmd("free big") == "ok"


def test_ebizzy_workload(guest):
    # The overcommit benchmark's workload: chunks filled, then records for the given seconds; the
    # worker waits for its next run, which resizes the working set.
    assert guest.cmd_ok("pressure full").startswith("full avg10=")
    assert guest.cmd("thp always") == "ok"
    try:
        pid = guest.cmd_ok("ebizzy eb 16 2")
        assert pid.startswith("pid ")
        assert guest.cmd("ebizzy eb 8 1").startswith("err")  # still running
        for seconds in (2, 1):
            r = wait_until(lambda: (r := parse_kv(guest.cmd("records eb")))["running"] == 0 and r, 60, 0.2,
                           "the run to end")
            assert r["done"] == 1 and r["records"] > 0
            assert 0 < r["fill_ms"] and r["fill_ms"] + 1000 * seconds <= r["elapsed_ms"] < r["fill_ms"] + 1000 * (seconds + 1)
            assert guest.workers()["eb"][1] is True
            if seconds == 2:
                assert guest.cmd_ok("ebizzy eb 8 1") == pid
        assert guest.cmd("records nosuch").startswith("err")
    finally:
        # The guest is the module's: leave it as the other tests expect it.
        assert guest.cmd("free eb") == "ok"
        assert guest.cmd("thp never") == "ok"


def test_inflate_returns_host_memory(test_cgroup, guest_factory):
    # Without free page reporting the prefaulted memory stays resident on the host
    # until the balloon takes it back.
    vm = guest_factory("vm", cgroups=test_cgroup.procs_paths("vm"), free_page_reporting=False)
    touched = int(vm.cmd_ok("prefault 90"))
    assert touched > 300
    resident = test_cgroup.usage()
    assert resident > touched * MiB

    vm.balloon(256 * MiB)
    wait_until(lambda: vm.query_balloon() == 256 * MiB, 10, 0.05, "balloon at 256M")
    wait_until(lambda: test_cgroup.usage() < resident - 200 * MiB, 10, 0.2,
               "the host to get ~256M back from QEMU")


def test_pressure_in_test_cgroup(test_cgroup, guest_factory):
    cg = test_cgroup
    vms = [guest_factory(f"vm{i}", cgroups=cg.procs_paths(f"balloon.slice/balloon-vm{i}.slice"))
           for i in (1, 2)]
    for i, vm in enumerate(vms, 1):
        with open(f"/proc/{vm.pid}/cgroup") as f:
            lines = f.read()
        assert f"/{cg.name}/balloon.slice/balloon-vm{i}.slice\n" in lines
        assert str(vm.pid) in (cg.unified(f"balloon.slice/balloon-vm{i}.slice") /
                               "cgroup.procs").read_text().split()

    usage = cg.usage()
    cg.set_limit(usage + 48 * MiB)
    before = cg.pressure()["some"]["total"]
    with PageCacheHog(128, cg.procs_paths("hog")):
        t0 = time.monotonic()
        wait_until(lambda: cg.pressure()["some"]["total"] > before + 100_000, 30, 0.5,
                   "memory pressure in the test cgroup")
        elapsed = time.monotonic() - t0
        hog_psi = cg.pressure("hog")["some"]["total"]
        # The VMs live on: the limit squeezes the page cache, not QEMU.
        for vm in vms:
            assert vm.cmd("ping") == "ok pong"
    print(f"\nusage {usage // MiB} MiB, pressure after {elapsed:.1f}s, "
          f"hog stalled {hog_psi / 1e6:.2f}s")

    for vm in vms:
        vm.stop()
    dirs = list(cg.roots)
    cg.cleanup()
    assert not any(d.exists() for d in dirs)

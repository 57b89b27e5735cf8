# SPDX-License-Identifier: LGPL-2.1-or-later
"""Shared pytest fixtures: the guest image, run directories, test cgroups, guests."""

import os
import shutil
import time

import pytest

from ab.cache import build_image, build_kernels, build_qemu
from ab.cgroup import TestCgroup
from ab.guest import GUESTS, Guest
from ab.util import make_run_dir
from ab.virt import LibvirtLoop


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item.abt_started = time.monotonic()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if not rep.failed:
        return
    # The guests this test started or used: started during it, or still running.
    since = getattr(item, "abt_started", 0)
    for guest in GUESTS:
        if guest.started_at >= since or guest.alive():
            rep.sections.append((f"guest {guest.name} console ({guest.console_log})",
                                 guest.console_tail(40)))
            qemu_log = guest.qemu_log_tail(20)
            if qemu_log.strip():
                rep.sections.append((f"guest {guest.name} QEMU log ({guest.qemu_log})", qemu_log))


def _failed(node):
    return any(getattr(node, "rep_" + w, None) is not None and getattr(node, "rep_" + w).failed
               for w in ("setup", "call"))


@pytest.fixture(scope="session")
def require_root():
    if os.geteuid() != 0:
        pytest.skip("needs root (cgroups, QEMU, apt-get)")


@pytest.fixture(scope="session")
def guest_image(require_root):
    """Builds (or reuses) the test guest image once per session; a failed build fails."""
    return build_image()


@pytest.fixture(scope="session")
def patched_kernels(require_root):
    """guest/build-kernel.sh --stock (cached): .patched and .stock bzImages."""
    return build_kernels()


@pytest.fixture(scope="session")
def patched_qemu(require_root):
    """qemu/build-qemu.sh (cached): .binary and .bios_dir (for -L) of the patched QEMU."""
    return build_qemu()


@pytest.fixture
def run_dir(request):
    """A short per-test directory for sockets and logs; kept when the test fails."""
    d = make_run_dir()
    yield d
    if _failed(request.node):
        print(f"\nrun directory kept: {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def test_cgroup(require_root):
    """A TestCgroup removed after the test whatever happened."""
    cg = TestCgroup()
    try:
        yield cg
    finally:
        cg.cleanup()


@pytest.fixture
def lv(guest_image, run_dir):
    """A LibvirtLoop: setup(vms) starts its test cgroup, libvirtd and daemon (not yet
    running); everything is stopped and removed afterwards."""
    env = LibvirtLoop(run_dir, guest_image)
    try:
        yield env
    finally:
        env.close()


@pytest.fixture
def guest_factory(guest_image, run_dir):
    """start(name, **kwargs) -> a ready Guest in run_dir; all are stopped afterwards."""
    guests = []

    def start(name, ready_timeout=60, **kwargs):
        guest = Guest.start(name, run_dir, image=guest_image, **kwargs)
        guests.append(guest)
        guest.wait_ready(ready_timeout)
        return guest

    yield start
    for guest in guests:
        guest.stop()

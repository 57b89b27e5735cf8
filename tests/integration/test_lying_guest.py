# SPDX-License-Identifier: LGPL-2.1-or-later
"""A guest that writes its balloon's config.actual itself (tests/guest-image/abguest.c
balloon-actual): the daemon believes no size outside [0, boot memory], does not adopt a balloon it
did not inflate, and keeps the slice's memory.high at or above its floor. The slice is a plain
directory, as in test_systemd.py: this host's cgroup2 tree may have no memory controller."""

import re
import time

import pytest

from ab.guest import Guest
from ab.scenario import Daemon
from ab.util import MiB, wait_until

pytestmark = pytest.mark.usefixtures("require_root")

RAM_PAGES = 512 * MiB // 4096
FLOOR = 512 * MiB + 256 * MiB  # max(MinMemory, target, actual) + MemoryHighOverhead=, all at 512M
# Pinned to its size: host pressure (other work on this machine) cannot move the target.
CONFIG = "[Daemon]\nStatsIntervalSec=1\n\n[VM liar]\nMinMemory=512M\nMaxMemory=512M\n"


def test_guest_writing_actual_keeps_memory_high_at_its_floor(run_dir, guest_image):
    root = run_dir / "cg"
    cg = root / "balloon.slice" / "balloon-liar.slice"
    cg.mkdir(parents=True)
    high = cg / "memory.high"
    high.write_text("max\n")
    (cg / "memory.current").write_text(f"{256 * MiB}\n")
    d = Daemon(run_dir, root, CONFIG, extra_args=["--allow-plain-cgroup-dir"])
    g = Guest.start("liar", run_dir, qmp_path=d.qmp_path("liar"), image=guest_image)
    try:
        g.wait_ready(90)
        d.start(env={"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={run_dir}/no-bus-here"})
        wait_until(lambda: d.saw(r"liar: adopted"), 30, what="adoption")
        wait_until(lambda: high.read_text().strip() == str(FLOOR), 30, 0.2, what="memory.high to follow the balloon")

        # config.actual = the RAM: QEMU reports a balloon of 0. Not adopted: memory.high stays.
        g.cmd_ok(f"balloon-actual {RAM_PAGES}")
        wait_until(lambda: g.query_balloon() == 0, 10, 0.2, what="QEMU to report the lie")
        time.sleep(5)  # a few ticks of decisions on it
        assert int(high.read_text()) >= FLOOR, d.log_tail()
        assert d.saw(r"liar: balloon inflated to 0B past our target 512M"), d.log_tail()

        # Past the RAM: a negative size, on BALLOON_CHANGE and query-balloon alike; one warning.
        for pages in (RAM_PAGES + 1000, RAM_PAGES + 2000, RAM_PAGES + 3000):
            g.cmd_ok(f"balloon-actual {pages}")
            time.sleep(2)
        assert len([line for line in d.lines if re.search(r"liar: balloon size in \S+ is not a size", line)]) == 1, \
            d.log_tail()
        assert int(high.read_text()) >= FLOOR, d.log_tail()

        # The truth again: the balloon is empty.
        g.cmd_ok("balloon-actual 0")
        time.sleep(3)
        assert int(high.read_text()) >= FLOOR, d.log_tail()
        assert g.query_balloon() == 512 * MiB
        assert d.alive()
    finally:
        status = d.stop()
        g.stop()
    assert status == 0

# SPDX-License-Identifier: LGPL-2.1-or-later
"""The closed loop on real guests: three TCG guests in balloon slices, autoballoond watching them,
host pressure from a page-cache hog inside a memory limit, guest pressure from a guest allocation.

Shared by the end-to-end test (which asserts) and the demo (which prints a live timeline).
"""

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from ab.cache import REPO
from ab.cgroup import TestCgroup
from ab.guest import Guest
from ab.hog import PageCacheHog
from ab.util import wait_until

MIB = 1024 * 1024

DECISION_RE = re.compile(r'decision vm=(\S+) action=(\S+) bytes=(\d+) target=(\d+) \(\d+ MiB\) reason="(.*)"$')
LATENCY_RE = re.compile(r"latency trigger->balloon (\d+) us")


def daemon_binary():
    build = Path(os.environ.get("AUTOBALLOON_BUILD", REPO / "build" / "ci"))
    binary = build / "controller" / "autoballoond"
    if not binary.exists():
        raise RuntimeError(f"{binary} not built: run meson setup {build} && ninja -C {build}")
    return binary


class Decision:
    def __init__(self, when, vm, action, nbytes, target, reason):
        self.when, self.vm, self.action = when, vm, action
        self.bytes, self.target, self.reason = nbytes, target, reason

    def __repr__(self):
        return f"{self.vm} {self.action} {self.bytes // MIB}M -> {self.target // MIB}M: {self.reason}"


class Daemon:
    """autoballoond on a test cgroup tree; its stderr is kept and parsed into decisions.

    libvirt: whether it may drive libvirt domains. Off unless asked for (Libvirt=no at the end of
    the file): a test daemon must never balloon the VMs of a libvirtd that happens to run on the
    machine."""

    def __init__(self, run_dir, cgroup_root, config, extra_args=(), on_line=None, libvirt=False):
        self.run_dir = Path(run_dir)
        self.config_dir = self.run_dir / "etc"
        self.config_dir.mkdir(exist_ok=True)
        (self.config_dir / "autoballoon.conf").write_text(config + ("" if libvirt else "\n[Daemon]\nLibvirt=no\n"))
        self.runtime_dir = self.run_dir / "run"
        (self.runtime_dir / "qmp").mkdir(parents=True, exist_ok=True)
        self.log_path = self.run_dir / "autoballoond.log"
        self.argv = [str(daemon_binary()), f"--config-dir={self.config_dir}",
                     f"--cgroup-root={cgroup_root}", f"--runtime-dir={self.runtime_dir}",
                     "--log-target=stderr", "--log-level=debug", *extra_args]
        self.on_line = on_line
        self.lines = []
        self.decisions = []
        self.latencies_usec = []
        self._lock = threading.Lock()
        self.proc = None

    def qmp_path(self, vm):
        return self.runtime_dir / "qmp" / f"{vm}.sock"

    def start(self, env=None):
        """env: more environment variables for the daemon alone (a bus address, NOTIFY_SOCKET)."""
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, bufsize=1,
                                     env={**os.environ, **env} if env else None)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self):
        with open(self.log_path, "w") as log:
            for line in self.proc.stderr:
                line = line.rstrip("\n")
                log.write(line + "\n")
                log.flush()
                with self._lock:
                    self.lines.append(line)
                    m = DECISION_RE.search(line)
                    if m:
                        self.decisions.append(Decision(time.monotonic(), m.group(1), m.group(2),
                                                       int(m.group(3)), int(m.group(4)), m.group(5)))
                    m = LATENCY_RE.search(line)
                    if m:
                        self.latencies_usec.append(int(m.group(1)))
                if self.on_line:
                    self.on_line(line)

    def decisions_for(self, vm=None, action=None, since=0.0):
        with self._lock:
            return [d for d in self.decisions
                    if (vm is None or d.vm == vm) and (action is None or d.action == action)
                    and d.when >= since]

    def saw(self, pattern):
        with self._lock:
            return any(re.search(pattern, line) for line in self.lines)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10):
        """SIGTERM; returns the exit status (a clean exit is 0)."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            self._reader.join(5)

    def log_tail(self, n=40):
        with self._lock:
            return "\n".join(self.lines[-n:])


# The VMs of the scenario: name, weight.
VMS = (("vm1", 100), ("vm2", 100), ("vm3", 200))
GUEST_MEM = 512 * MIB
MIN_MEMORY = 128 * MIB

def daemon_config(reclaim_step="640M", extra=""):
    """The [Daemon] section of the closed-loop scenario's configuration, with extra lines."""
    return f"""\
# autoballoond configuration of the closed-loop scenario
[Daemon]
HostPressure=system
ReclaimStep={reclaim_step}
StatsIntervalSec=1
HysteresisSec=60
GuestReserve=64M
GuestMinAvailable=48M
MaxStep=256M
MaxRate=128M
DeflateStep=128M
{extra}"""


def make_config(vms, reclaim_step="640M", extra=""):
    """The closed-loop scenario's autoballoond configuration for vms ((name, weight), ...)."""
    return daemon_config(reclaim_step, extra) + "".join(f"\n[VM {name}]\nWeight={weight}\nMinMemory={MIN_MEMORY // MIB}M\n"
                                     for name, weight in vms)


CONFIG = make_config(VMS)


class ClosedLoop:
    """Three guests (or vms of guest_mem each), a daemon and the pressure knobs. Use as a context
    manager."""

    def __init__(self, run_dir, image=None, config=CONFIG, on_line=None, log=print, vms=VMS,
                 guest_mem=GUEST_MEM, libvirt=False):
        self.run_dir = Path(run_dir)
        self.image = image
        self.log = log
        self.vms = vms
        self.guest_mem = guest_mem
        self.cgroup = TestCgroup()
        # No D-Bus API: on a host with a system bus it belongs to the real autoballoond, if any.
        self.daemon = Daemon(self.run_dir, self.cgroup.unified_root, config, extra_args=["--bus=none"],
                             on_line=on_line, libvirt=libvirt)
        self.guests = {}
        self.hog = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.hog:
            self.hog.stop()
        if self.daemon.alive():
            self.daemon.stop()
        for g in self.guests.values():
            g.stop()
        self.cgroup.cleanup()

    @staticmethod
    def slice_of(vm):
        return f"balloon.slice/balloon-{vm}.slice"

    def start_guests(self, prefault=True, timeout=90, extra_args=None, balloon_props=None):
        """extra_args: {vm: more QEMU arguments} (a disk, say); balloon_props: more virtio-balloon
        properties for every guest."""
        for name, _ in self.vms:
            self.guests[name] = Guest.start(
                name, self.run_dir, mem=f"{self.guest_mem // MIB}M", qmp_path=self.daemon.qmp_path(name),
                cgroups=self.cgroup.procs_paths(self.slice_of(name)), image=self.image,
                free_page_reporting=False, extra_args=(extra_args or {}).get(name, ()),
                balloon_props=balloon_props)
        for g in self.guests.values():
            g.wait_ready(timeout)
        # Make guest RAM resident on the host, so that inflating a balloon really returns memory.
        for g in self.guests.values():
            if prefault:
                g.cmd_ok("prefault 90", timeout=120)
        self.log(f"guests ready: {', '.join(self.guests)}; host-side usage "
                 f"{self.cgroup.usage() // MIB} MiB")

    def start_daemon(self):
        self.daemon.start()
        wait_until(lambda: all(self.daemon.saw(rf"{vm}: adopted") for vm, _ in self.vms), 30,
                   what="the daemon to adopt every VM")

    def host_pressure_on(self, headroom=32 * MIB, hog_mb=256):
        """A memory limit just above what the guests use, and a page-cache hog inside it."""
        self.cgroup.set_limit(self.cgroup.usage() + headroom)
        self.hog = PageCacheHog(hog_mb, self.cgroup.procs_paths("hog"))
        self.hog.start()

    def host_pressure_off(self):
        if self.hog:
            self.hog.stop()
            self.hog = None
        self.cgroup.set_limit(-1)

    def guest_pressure(self, vm, leave_mb=24):
        """Allocates in the guest until only leave_mb MiB stay available."""
        available_kb = self.guests[vm].meminfo()["MemAvailable"]
        size = max(available_kb // 1024 - leave_mb, 16)
        self.guests[vm].cmd_ok(f"alloc squeeze {size}", timeout=120)
        return size

    def actual(self, vm):
        return self.guests[vm].query_balloon()

    def memory_high(self, vm):
        """memory.high of the VM's slice (None for "max"), or False where the slice has none (the
        memory controller on cgroup v1)."""
        path = self.cgroup.unified(self.slice_of(vm)) / "memory.high"
        if not path.exists():
            return False
        v = path.read_text().strip()
        return None if v == "max" else int(v)

    def host_stall_usec(self):
        return self.cgroup.pressure()["some"]["total"]

    def sample(self):
        """One timeline row per VM: actual, last target and reason, slice pressure."""
        rows = []
        for vm, weight in self.vms:
            last = self.daemon.decisions_for(vm)
            d = last[-1] if last else None
            psi = self.cgroup.pressure(self.slice_of(vm))["some"]["avg10"]
            rows.append((vm, weight, self.actual(vm), d, psi))
        return rows

    def oom_kills(self):
        return {vm: g.vmstat("oom_kill")["oom_kill"] for vm, g in self.guests.items()}


class Timeline:
    """Every VM's balloon (query-balloon on the harness' monitor) and slice memory.high, sampled by
    a thread every interval seconds while in use (a context manager). The sampler is then the only
    user of the guests' harness monitors: read latest() instead of ClosedLoop.actual()."""

    def __init__(self, loop, interval=1.0):
        self.loop = loop
        self.interval = interval
        self.rows = {vm: [] for vm, _ in loop.vms}   # vm -> [(monotonic, actual, memory.high)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for vm, _ in self.loop.vms:
                self.rows[vm].append((time.monotonic(), self.loop.actual(vm), self.loop.memory_high(vm)))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        wait_until(lambda: all(self.rows.values()), 10, 0.05, "the first samples")
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def latest(self, vm):
        """(monotonic, actual, memory.high) of the last sample."""
        return self.rows[vm][-1]

    def of(self, vm, since=0.0, until=float("inf")):
        return [r for r in self.rows[vm] if since <= r[0] <= until]


# Which way a decision moves a balloon: an inflation takes memory, a deflation or a cancelled
# inflation gives it (or stops taking it).
DIRECTION = {"inflate": -1, "deflate": 1, "cancel": 1}


def reversals(decisions):
    """How often the balloon moves of a VM's decisions change direction (inflate then deflate or
    cancel, or the other way round)."""
    moves = [DIRECTION[d.action] for d in decisions if d.action in DIRECTION]
    return sum(1 for a, b in zip(moves, moves[1:]) if a != b)

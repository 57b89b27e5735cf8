# SPDX-License-Identifier: LGPL-2.1-or-later
"""A QEMU/TCG guest of the test image (tests/guest-image: kernel + busybox initramfs running abguest
on a virtio console), with a harness QMP monitor of its own."""

import os
import subprocess
import time
from pathlib import Path

from ab.agent import Agent, parse_kv
from ab.cache import GuestImage
from ab.cgroup import join_preexec
from ab.qmp import QMP, QMPError
from ab.util import parse_size, tail

QEMU = os.environ.get("AUTOBALLOON_QEMU", "qemu-system-x86_64")

# Every Guest ever started in this process, for the console tails of failing tests.
GUESTS = []


class Guest:
    """A QEMU/TCG guest of the test image with abguest on its virtio console.

    Two QMP monitors: qmp_path (default <run_dir>/<name>.qmp) is left free for the
    daemon under test; the harness talks to its own, <run_dir>/<name>.hqmp.
    """

    BALLOON_ID = "balloon0"

    @classmethod
    def start(cls, name, run_dir, mem="512M", qmp_path=None, extra_args=(), cgroups=(),
              image=None, smp=1, free_page_reporting=True, kernel=None, qemu=None,
              bios_dir=None, balloon_props=None, append=""):
        """Starts QEMU, placed in every cgroup.procs of cgroups before it allocates.

        free_page_reporting: the guest hands its free pages back to the host within a
        second or two, so memory it touched and freed ("prefault") does not stay
        resident; turn it off to keep it.
        kernel, qemu: another kernel (booted with the image's initrd) or QEMU binary;
        bios_dir: its firmware directory (-L); balloon_props: more virtio-balloon-pci
        properties, e.g. {"guest-pressure": "on"}; append: more kernel command line.
        """
        return cls(name, run_dir, mem, qmp_path, extra_args, cgroups, image, smp,
                   free_page_reporting, kernel, qemu, bios_dir, balloon_props, append)

    def _setup(self, name, run_dir, mem, image, kernel):
        """What every guest has, however its QEMU is started (here, or by libvirt: ab.virt)."""
        self.name = name
        self.run_dir = Path(run_dir)
        self.mem_bytes = parse_size(mem)
        self.image = image or GuestImage(GuestImage.cache_dir())
        self.kernel = Path(kernel) if kernel else self.image.vmlinuz
        self.harness_qmp_path = self.run_dir / f"{name}.hqmp"
        self.ctl_path = self.run_dir / f"{name}.ctl"
        self.console_log = self.run_dir / f"{name}.console.log"
        for p in (self.harness_qmp_path, self.ctl_path):
            if len(str(p)) >= 108:
                raise ValueError(f"socket path too long for AF_UNIX: {p}")
        self._qmp = None
        self.agent = Agent(self.ctl_path, f"guest {name}", self._check_alive)
        self.started_at = time.monotonic()
        self.ready_seconds = None
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def __init__(self, name, run_dir, mem, qmp_path, extra_args, cgroups, image, smp,
                 free_page_reporting, kernel=None, qemu=None, bios_dir=None, balloon_props=None,
                 append=""):
        self._setup(name, run_dir, mem, image, kernel)
        self.qemu_binary = str(qemu or QEMU)
        balloon = f"virtio-balloon-pci,id={self.BALLOON_ID}," \
                  f"free-page-reporting={'on' if free_page_reporting else 'off'}"
        balloon += "".join(f",{k}={v}" for k, v in (balloon_props or {}).items())
        self.qmp_path = Path(qmp_path) if qmp_path else self.run_dir / f"{name}.qmp"
        self.qemu_log = self.run_dir / f"{name}.qemu.log"
        if len(str(self.qmp_path)) >= 108:
            raise ValueError(f"socket path too long for AF_UNIX: {self.qmp_path}")
        self.argv = [
            self.qemu_binary, "-name", name,
            *(["-L", str(bios_dir)] if bios_dir else []),
            "-accel", "tcg", "-m", str(mem), "-smp", str(smp),
            "-nodefaults", "-no-user-config", "-no-reboot",
            "-kernel", str(self.kernel), "-initrd", str(self.image.initrd),
            "-append", f"console=ttyS0 quiet panic=1 {append}".rstrip(),
            "-display", "none",
            "-serial", f"file:{self.console_log}",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
            "-qmp", f"unix:{self.harness_qmp_path},server=on,wait=off",
            "-device", balloon,
            "-device", "virtio-serial-pci",
            "-chardev", f"socket,id=ctl,path={self.ctl_path},server=on,wait=off",
            "-device", "virtconsole,chardev=ctl",
            *extra_args,
        ]
        with open(self.qemu_log, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=join_preexec(cgroups))
        GUESTS.append(self)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def _check_alive(self):
        if not self.alive():
            raise RuntimeError(f"guest {self.name}: QEMU exited with {self.proc.returncode}; "
                               f"log:\n{tail(self.qemu_log, 20)}")

    # -- agent on the virtio console

    def wait_ready(self, timeout=60):
        """Waits until abguest answers; returns the seconds since start()."""
        self.agent.wait_ready(timeout)
        if self.ready_seconds is None:
            self.ready_seconds = time.monotonic() - self.started_at
        return self.ready_seconds

    def cmd(self, line, timeout=60):
        """Sends one command to abguest; returns its answer ("ok ..." or "err ...")."""
        return self.agent.cmd(line, timeout)

    def cmd_ok(self, line, timeout=60):
        """cmd() that raises on "err"; returns what follows "ok"."""
        return self.agent.cmd_ok(line, timeout)

    def meminfo(self):
        """{"MemTotal": kB, "MemFree": kB, "MemAvailable": kB}."""
        return parse_kv(self.cmd("meminfo"))

    def vmstat(self, *keys):
        return parse_kv(self.cmd("vmstat " + " ".join(keys)))

    def workers(self):
        """{name: (pid, alive)} of the agent's workers."""
        out = {}
        for field in self.cmd_ok("workers").split():
            name, pid, state = field.rsplit(":", 2)
            out[name] = (int(pid), state == "alive")
        return out

    # -- QMP

    def qmp(self, execute, args=None, timeout=30):
        """Runs a QMP command on the harness' monitor; returns "return" or raises QMPError."""
        if self._qmp is None:
            self._check_alive()
            self._qmp = QMP(self.harness_qmp_path, timeout)
        return self._qmp.execute(execute, args, timeout)

    def qmp_events(self):
        """Events received so far on the harness' monitor (the list is live)."""
        if self._qmp is None:
            self.qmp("query-status")
        return self._qmp.events

    def wait_qmp_event(self, name, timeout=30):
        """Pops the first QMP event called name from the harness' monitor, waiting for it.

        Only events sent after the monitor connected are seen: call qmp_events() first.
        """
        if self._qmp is None:
            self.qmp("query-status")
        return self._qmp.wait_event(name, timeout)

    def balloon(self, nbytes):
        """Sets the balloon target: the guest's RAM size it should end up with."""
        self.qmp("balloon", {"value": int(nbytes)})

    def query_balloon(self):
        """The guest's current RAM size (bytes) as the balloon reports it."""
        return self.qmp("query-balloon")["actual"]

    def guest_stats(self, polling_interval=None):
        """qom-get guest-stats: {"stats": {...}, "last-update": seconds}.

        Sets guest-stats-polling-interval first when given (the guest sends stats
        only while it is non-zero). Unsupported stats read 2**64-1.
        """
        path = f"/machine/peripheral/{self.BALLOON_ID}"
        if polling_interval is not None:
            self.qmp("qom-set", {"path": path, "property": "guest-stats-polling-interval",
                                 "value": int(polling_interval)})
        return self.qmp("qom-get", {"path": path, "property": "guest-stats"})

    # -- virtio state (QEMU 7.2's experimental x-query-virtio* commands)

    def virtio_balloon_path(self):
        """The QOM path of the balloon's virtio backend."""
        for dev in self.qmp("x-query-virtio"):
            if dev["name"] == "virtio-balloon":
                return dev["path"]
        raise RuntimeError(f"guest {self.name}: no virtio-balloon in x-query-virtio")

    def virtio_balloon_status(self):
        """x-query-virtio-status: features offered and negotiated, queues, "broken"."""
        return self.qmp("x-query-virtio-status", {"path": self.virtio_balloon_path()})

    def virtio_balloon_queue(self, index):
        """x-query-virtio-queue-status of one balloon queue (ring addresses and indexes)."""
        return self.qmp("x-query-virtio-queue-status",
                        {"path": self.virtio_balloon_path(), "queue": int(index)})

    # -- teardown and logs

    def _close_sockets(self):
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        self.agent.close()

    def kill(self):
        """SIGKILL and reap."""
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        self._close_sockets()

    def stop(self, timeout=10):
        """Quits through QMP; SIGKILL when QEMU is still there after timeout."""
        if self.alive():
            try:
                self.qmp("quit", timeout=timeout)
            except (OSError, QMPError, TimeoutError, RuntimeError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def console_tail(self, lines=40):
        return tail(self.console_log, lines)

    def qemu_log_tail(self, lines=20):
        return tail(self.qemu_log, lines)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return f"<Guest {self.name} pid={self.proc.pid}>"

# SPDX-License-Identifier: LGPL-2.1-or-later
"""Test harness for autoballoon: real QEMU guests and real (test) cgroups on this host.

Guest          a small QEMU/TCG guest from tests/guest-image (kernel + busybox initramfs
               running abguest on a virtio console), with QMP and the agent's console.
TestCgroup     a v1 memory cgroup below the test's own plus a matching cgroup2 directory
               (PSI files) on hybrid hosts; sub-groups on demand; always cleaned up.
PageCacheHog   a process thrashing the page cache of a file inside a cgroup: host memory
               pressure without anonymous memory (this host has no swap: anon pressure
               would make the memcg OOM killer shoot QEMU).
build_kernels, build_qemu
               the guest pressure queue builds (guest/ and qemu/ patch series), cached in
               $AUTOBALLOON_CACHE; Guest.start(kernel=..., qemu=..., bios_dir=...) boots them.

Standard library only.
"""

import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_SH = REPO / "tests" / "guest-image" / "build.sh"
QEMU = os.environ.get("AUTOBALLOON_QEMU", "qemu-system-x86_64")
MiB = 1 << 20

# Every Guest ever started in this process, for the console tails of failing tests.
GUESTS = []


class QMPError(Exception):
    """QEMU answered {"error": ...}."""


# ---------------------------------------------------------------------------- helpers

def proc_stat(pid):
    """(major faults, CPU seconds) of a process, from /proc/PID/stat."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(f[9]), (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kib(pid):
    """A process' resident memory (VmRSS), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def percentile(values, p):
    """The p-th percentile (nearest rank) of values."""
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def wait_until(fn, timeout, interval=0.1, what=None):
    """Calls fn() until it returns a true value (returned) or raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or fn}")
        time.sleep(interval)


def psi(path):
    """Parses a PSI file: {"some": {"avg10": float, ..., "total": int}, "full": {...}}."""
    result = {}
    with open(path) as f:
        for line in f:
            kind, *fields = line.split()
            values = dict(field.split("=", 1) for field in fields)
            result[kind] = {k: int(v) if k == "total" else float(v) for k, v in values.items()}
    return result


def parse_size(size):
    """"512M", "1G", "4096" (bytes) or an int -> bytes."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"(\d+)([KMGT]?)i?B?", size.strip(), re.IGNORECASE)
    if not m:
        raise ValueError(f"bad size {size!r}")
    return int(m.group(1)) << (10 * " KMGT".index(m.group(2).upper() or " "))


def parse_kv(reply):
    """"ok A=1 B=2" -> {"A": 1, "B": 2} (values that are not integers stay strings)."""
    if not reply.startswith("ok"):
        raise RuntimeError(f"guest answered {reply!r}")
    out = {}
    for field in reply.split()[1:]:
        k, _, v = field.partition("=")
        out[k] = int(v) if v.isdigit() else v
    return out


def make_run_dir(prefix="abt-"):
    """A short directory in /tmp: AF_UNIX socket paths must stay under 108 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def _mounts():
    """(mount point, fs type, super options) from /proc/self/mountinfo."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fstype, _source, superopts = post.split()[:3]
            yield pre.split()[4], fstype, superopts.split(",")


def fs_type(path):
    """The type of the file system holding path (longest mount point prefix)."""
    path = os.path.realpath(path)
    best, best_type = "", None
    for mnt, fstype, _ in _mounts():
        if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, best_type = mnt, fstype
    return best_type


def _check_procs_paths(paths):
    """A failing preexec_fn only says "Exception occurred in preexec_fn": check first."""
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no cgroup.procs file {path}")


def _join_cgroups(paths):
    """A preexec_fn: moves the child into each cgroup.procs before it execs and allocates."""
    paths = [str(p) for p in paths]

    def join():
        for path in paths:
            with open(path, "w") as f:
                f.write(str(os.getpid()))
    return join


def _tail(path, lines):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"<{e}>"


# ---------------------------------------------------------------------------- image

class GuestImage:
    """The built image: vmlinuz, initrd.img and the manifest (dict of key=value)."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.vmlinuz = self.dir / "vmlinuz"
        self.initrd = self.dir / "initrd.img"
        with open(self.dir / "manifest") as f:
            self.manifest = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)

    @staticmethod
    def cache_dir():
        return Path(os.environ.get("AUTOBALLOON_CACHE", "/var/cache/autoballoon")) / "guest"


def _run_build(cmd):
    proc = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout}")


def build_image(force=False):
    """Runs tests/guest-image/build.sh (a no-op when cached); raises if it fails."""
    _run_build([BUILD_SH] + (["--force"] if force else []))
    return GuestImage(GuestImage.cache_dir())


def cache_root():
    return Path(os.environ.get("AUTOBALLOON_CACHE", "/var/cache/autoballoon"))


class Kernels:
    """guest/build-kernel.sh's images: patched (the guest pressure series) and stock (same config)."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.patched = self.dir / "bzImage"
        self.stock = self.dir / "bzImage-stock"


class QemuBuild:
    """qemu/build-qemu.sh's patched qemu-system-x86_64 and the firmware directory for -L."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.binary = self.dir / "bin" / "qemu-system-x86_64"
        self.bios_dir = self.dir / "pc-bios"


def build_kernels():
    """Runs guest/build-kernel.sh --stock (a no-op when cached); raises if it fails."""
    _run_build([REPO / "guest" / "build-kernel.sh", "--stock"])
    return Kernels(cache_root() / "kernel")


def build_qemu():
    """Runs qemu/build-qemu.sh (a no-op when cached); raises if it fails."""
    _run_build([REPO / "qemu" / "build-qemu.sh"])
    return QemuBuild(cache_root() / "qemu")


# ---------------------------------------------------------------------------- QMP

class QMP:
    """A tiny synchronous QMP client: greeting + qmp_capabilities once, then execute()."""

    def __init__(self, path, timeout=30):
        self.path = str(path)
        self.events = []
        self._buf = b""
        self._ids = itertools.count(1)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            wait_until(self._try_connect, timeout, what=f"QMP socket {path}")
            self.sock.settimeout(timeout)
            greeting = self._read_message()
            if "QMP" not in greeting:
                raise QMPError(f"unexpected QMP greeting {greeting}")
            self.execute("qmp_capabilities")
        except BaseException:
            self.sock.close()
            raise

    def _try_connect(self):
        try:
            self.sock.connect(self.path)
            return True
        except (FileNotFoundError, ConnectionRefusedError):
            return False

    def _read_message(self):
        while b"\n" not in self._buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"QMP {self.path}: connection closed")
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def execute(self, command, arguments=None, timeout=30):
        """Runs a command; returns its "return" value, raises QMPError on "error"."""
        msg_id = next(self._ids)
        msg = {"execute": command, "id": msg_id}
        if arguments:
            msg["arguments"] = arguments
        self.sock.settimeout(timeout)
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read_message()
            if "event" in reply:
                self.events.append(reply)
            elif reply.get("id") == msg_id:
                if "error" in reply:
                    raise QMPError(f"{command}: {reply['error'].get('desc', reply['error'])}")
                return reply.get("return")

    def wait_event(self, name, timeout=30):
        """Returns the first event called name, already received or arriving in time."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["event"] == name:
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no QMP event {name} within {timeout}s")
            self.sock.settimeout(left)
            try:
                msg = self._read_message()
            except socket.timeout:
                continue
            if "event" in msg:
                self.events.append(msg)

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------------------- guest

class Guest:
    """A QEMU/TCG guest of the test image with abguest on its virtio console.

    Two QMP monitors: qmp_path (default <run_dir>/<name>.qmp) is left free for the
    daemon under test; the harness talks to its own, <run_dir>/<name>.hqmp.
    """

    BALLOON_ID = "balloon0"

    @classmethod
    def start(cls, name, run_dir, mem="512M", qmp_path=None, extra_args=(), cgroups=(),
              image=None, smp=1, free_page_reporting=True, kernel=None, qemu=None,
              bios_dir=None, balloon_props=None):
        """Starts QEMU, placed in every cgroup.procs of cgroups before it allocates.

        free_page_reporting: the guest hands its free pages back to the host within a
        second or two, so memory it touched and freed ("prefault") does not stay
        resident; turn it off to keep it.
        kernel, qemu: another kernel (booted with the image's initrd) or QEMU binary;
        bios_dir: its firmware directory (-L); balloon_props: more virtio-balloon-pci
        properties, e.g. {"guest-pressure": "on"}.
        """
        return cls(name, run_dir, mem, qmp_path, extra_args, cgroups, image, smp,
                   free_page_reporting, kernel, qemu, bios_dir, balloon_props)

    def _setup(self, name, run_dir, mem, image, kernel):
        """What every guest has, however its QEMU is started (here, or by libvirt: abvirt)."""
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
        self._ctl = None
        self._ctl_buf = b""
        self._sync = itertools.count(1)
        self.started_at = time.monotonic()
        self.ready_seconds = None
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def __init__(self, name, run_dir, mem, qmp_path, extra_args, cgroups, image, smp,
                 free_page_reporting, kernel=None, qemu=None, bios_dir=None, balloon_props=None):
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
            "-append", "console=ttyS0 quiet panic=1",
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
        _check_procs_paths(cgroups)
        with open(self.qemu_log, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_join_cgroups(cgroups))
        GUESTS.append(self)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def _check_alive(self):
        if not self.alive():
            raise RuntimeError(f"guest {self.name}: QEMU exited with {self.proc.returncode}; "
                               f"log:\n{_tail(self.qemu_log, 20)}")

    # -- agent on the virtio console

    def _ctl_connect(self, deadline):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        while True:
            self._check_alive()
            try:
                sock.connect(str(self.ctl_path))
                self._ctl = sock
                return
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() >= deadline:
                    sock.close()
                    raise TimeoutError(f"guest {self.name}: no control socket {self.ctl_path}")
                time.sleep(0.05)

    def _readline(self, deadline):
        """The next line from the agent, or None at the deadline."""
        while b"\n" not in self._ctl_buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._ctl.settimeout(min(left, 1.0))
            try:
                data = self._ctl.recv(4096)
            except socket.timeout:
                self._check_alive()
                continue
            if not data:
                self._check_alive()
                raise ConnectionError(f"guest {self.name}: control socket closed")
            self._ctl_buf += data
        line, _, self._ctl_buf = self._ctl_buf.partition(b"\n")
        return line.decode(errors="replace").strip()

    def wait_ready(self, timeout=60):
        """Waits until abguest answers; returns the seconds since start().

        "abguest ready" is lost when printed before we connect, so this pings with a
        token until the matching answer: that also drops any stale line in between.
        """
        deadline = time.monotonic() + timeout
        if self._ctl is None:
            self._ctl_connect(deadline)
        while True:
            token = f"sync{next(self._sync)}"
            self._ctl.sendall(f"ping {token}\n".encode())
            attempt_end = min(deadline, time.monotonic() + 1.0)
            while True:
                line = self._readline(attempt_end)
                if line is None or line == "abguest ready":
                    break
                if line == f"ok pong {token}":
                    if self.ready_seconds is None:
                        self.ready_seconds = time.monotonic() - self.started_at
                    return self.ready_seconds
            if time.monotonic() >= deadline:
                raise TimeoutError(f"guest {self.name}: abguest not ready after {timeout}s")

    def cmd(self, line, timeout=60):
        """Sends one command to abguest; returns its answer ("ok ..." or "err ...")."""
        if self._ctl is None:
            self.wait_ready()
        self._ctl.sendall(line.encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._readline(deadline)
            if reply is None:
                raise TimeoutError(f"guest {self.name}: no answer to {line!r} in {timeout}s")
            if reply.startswith(("ok", "err")):
                return reply
            if reply == "abguest ready":
                # The agent restarted (its workers are gone); the command was lost.
                raise RuntimeError(f"guest {self.name}: abguest restarted during {line!r}")

    def cmd_ok(self, line, timeout=60):
        """cmd() that raises on "err"; returns what follows "ok"."""
        reply = self.cmd(line, timeout)
        if not reply.startswith("ok"):
            raise RuntimeError(f"guest {self.name}: {line!r} -> {reply!r}")
        return reply[2:].strip()

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
        for sock in (self._qmp, self._ctl):
            if sock is not None:
                sock.close()
        self._qmp = self._ctl = None

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
        return _tail(self.console_log, lines)

    def qemu_log_tail(self, lines=20):
        return _tail(self.qemu_log, lines)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return f"<Guest {self.name} pid={self.proc.pid}>"


# ---------------------------------------------------------------------------- cgroups

class TestCgroup:
    """The test's own cgroup tree, with a memory limit for host pressure and memory.pressure for PSI.

    Hybrid hosts (memory controller on cgroup v1, as on the development and CI machines): a v1
    memory cgroup below our own plus a matching cgroup2 directory below ours. Pure cgroup v2 hosts:
    one cgroup2 tree with the memory controller, below a cgroup delegated to us (run the tests or
    the demo in `systemd-run --scope -p Delegate=yes`, which tests/demo.sh does by itself): our own
    process moves to a "supervisor" leaf of that cgroup so that its children may have controllers.

    Never touches the files of cgroups it did not create or was not delegated.
    Sub-groups ("balloon.slice/balloon-vm1.slice", "hog") are made in every hierarchy.
    """

    __test__ = False  # not a pytest test class
    _counter = itertools.count(1)

    def __init__(self, name=None):
        self.name = name or f"abtest-{os.getpid()}-{next(self._counter)}-{secrets.token_hex(3)}"
        v1_mount = v2_mount = None
        for mnt, fstype, opts in _mounts():
            if fstype == "cgroup" and "memory" in opts:
                v1_mount = mnt
            elif fstype == "cgroup2":
                v2_mount = mnt
        own_v1 = own_v2 = None
        with open("/proc/self/cgroup") as f:
            for line in f:
                _hid, controllers, path = line.rstrip("\n").split(":", 2)
                if "memory" in controllers.split(","):
                    own_v1 = path
                elif _hid == "0" and controllers == "":
                    own_v2 = path
        if not v2_mount or own_v2 is None:
            raise RuntimeError("no cgroup2 mount (needed for memory.pressure)")
        self.v2_parent = Path(v2_mount + own_v2.rstrip("/"))
        self.unified_root = self.v2_parent / self.name
        self._created = []  # in creation order: parents before children
        if v1_mount and own_v1 is not None:
            self.v2_only = False
            self.v1_parent = Path(v1_mount + own_v1.rstrip("/"))
            self.v1_root = self.v1_parent / self.name
            self.roots = (self.v1_root, self.unified_root)
        else:
            self.v2_only = True
            self.v1_root = None
            self.roots = (self.unified_root,)
            self._take_delegation()
        try:
            for root in self.roots:
                self._mkdir(root)
        except BaseException:
            self.cleanup()
            raise

    def _take_delegation(self):
        """Pure cgroup v2: the memory controller for our children. A cgroup with processes cannot
        give its children controllers, so ours move to a leaf first."""
        parent = self.v2_parent
        if "memory" not in (parent / "cgroup.controllers").read_text().split():
            raise RuntimeError(f"{parent} has no memory controller: run in a delegated cgroup "
                               "(systemd-run --scope -p Delegate=yes ...)")
        if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
            supervisor = parent / "supervisor"
            supervisor.mkdir(exist_ok=True)
            for pid in (parent / "cgroup.procs").read_text().split():
                try:
                    (supervisor / "cgroup.procs").write_text(pid)
                except ProcessLookupError:
                    pass
            (parent / "cgroup.subtree_control").write_text("+memory")

    def _mkdir(self, path):
        path.mkdir()
        self._created.append(path)
        if self.v2_only:
            # Children have memory.high, memory.max and memory.current only if we pass it on; a
            # leaf that gets processes must not have it (no internal processes).
            parent = path.parent
            if parent in self._created and "memory" not in (parent / "cgroup.subtree_control").read_text():
                (parent / "cgroup.subtree_control").write_text("+memory")

    def sub(self, rel=""):
        """Creates rel (if needed) in every hierarchy; returns (memory dir, cgroup2 dir), the same
        directory twice on a pure cgroup v2 host."""
        rel = rel.strip("/")
        if rel:
            if ".." in rel.split("/"):
                raise ValueError(f"bad sub-group {rel!r}")
            for root in self.roots:
                path = root
                for part in rel.split("/"):
                    path = path / part
                    if not path.is_dir():
                        self._mkdir(path)
        dirs = [root / rel if rel else root for root in self.roots]
        return (dirs[0], dirs[-1])

    def procs_paths(self, sub=""):
        """The cgroup.procs files (v1 memory and cgroup2, or cgroup2 alone) to put a process in sub."""
        return [d / "cgroup.procs" for d in dict.fromkeys(self.sub(sub))]

    def unified(self, sub=""):
        return self.sub(sub)[1]

    def set_limit(self, nbytes, sub=""):
        """The memory limit of sub; -1 lifts it. v1: memory.limit_in_bytes (no swap here: memsw
        needs no limit); v2: memory.max."""
        d = self.sub(sub)[0]
        if self.v2_only:
            (d / "memory.max").write_text("max" if nbytes < 0 else str(int(nbytes)))
        else:
            (d / "memory.limit_in_bytes").write_text(str(int(nbytes)))

    def usage(self, sub=""):
        d = self.sub(sub)[0]
        return int((d / ("memory.current" if self.v2_only else "memory.usage_in_bytes")).read_text())

    def pressure(self, sub="", resource="memory"):
        """psi() of <cgroup2 dir>/<resource>.pressure."""
        return psi(self.sub(sub)[1] / f"{resource}.pressure")

    def pids(self):
        out = set()
        for d in self._created:
            try:
                out.update(int(p) for p in (d / "cgroup.procs").read_text().split())
            except FileNotFoundError:
                pass
        return out

    def cleanup(self, timeout=10):
        """Kills what is left in our groups and removes them, children first."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{self.name}: processes {sorted(pids)} survive SIGKILL")
            time.sleep(0.05)
        for d in reversed(self._created):
            while d.exists():
                try:
                    d.rmdir()
                except FileNotFoundError:
                    break
                except OSError:
                    # A killed task can keep its group busy for a moment.
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.05)
        self._created.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


# ---------------------------------------------------------------------------- pressure

class PageCacheHog:
    """Reads a file of size_mb MiB in a loop from inside the given cgroups.

    With the cgroup limited below the file size this thrashes the page cache: reclaim
    and refaults show up as memory stalls in PSI, and no anonymous memory is involved.
    The file lives on a disk file system: on tmpfs it would be unevictable shmem.
    """

    def __init__(self, size_mb, procs_paths, directory=None, readers=2):
        self.size_mb = size_mb
        self.readers = readers
        self.procs_paths = list(procs_paths)
        self.dir = Path(tempfile.mkdtemp(prefix="abt-hog-", dir=directory or self._pick_dir()))
        self.path = self.dir / "data"
        self.proc = None

    @staticmethod
    def _pick_dir():
        for d in (os.environ.get("AUTOBALLOON_HOG_DIR"), "/var/tmp", "/tmp"):
            if d and os.path.isdir(d) and fs_type(d) not in ("tmpfs", "ramfs"):
                return d
        raise RuntimeError("no disk-backed directory for the page-cache hog")

    def start(self):
        block = os.urandom(MiB)
        with open(self.path, "wb") as f:
            for _ in range(self.size_mb):
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
            # Pages cached now are charged to us: the hog must fault them in itself.
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        return self.resume()

    def resume(self):
        """Starts the readers (again, after pause())."""
        # More concurrent readers: more stalled time per second ("some" and "full").
        script = 'i=0; while [ $i -lt $1 ]; do i=$((i+1)); while :; do cat "$2" >/dev/null; done & done; wait'
        _check_procs_paths(self.procs_paths)
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", script, "abt-hog", str(self.readers), str(self.path)],
            stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_join_cgroups(self.procs_paths))
        return self

    def pause(self):
        """Stops the readers and drops the file's cached pages: the cgroup holds what it held before."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None
        if self.path.exists():
            with open(self.path) as f:
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

    def stop(self):
        self.pause()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

# SPDX-License-Identifier: LGPL-2.1-or-later
"""A real libvirtd for the tests, and guests of the test image as libvirt domains.

Libvirtd       virtlogd and libvirtd from Debian's packages, started without systemd (PID 1 here
               is not systemd, there is no system bus): the libvirt-qemu user and groups and the
               /var/lib, /var/log, /var/cache and /run directories are created if missing, and
               libvirtd runs in a private mount namespace where its own /etc/libvirt (a
               qemu.conf of ours) is bind-mounted, so nothing system-wide is changed beyond them.
               Its socket is in the test's run directory: URI qemu:///system?socket=....
LibvirtLoop    a scenario.ClosedLoop (test cgroup, daemon, pressure knobs) with a Libvirtd in its
               test cgroup, libvirt domains and plain QEMU guests.
DomainGuest    an ab.guest.Guest whose QEMU libvirt starts from a domain XML (TCG,
               <domain type='qemu'>): the same agent on a virtio console and a harness QMP
               monitor (passed through with <qemu:commandline>), so every Guest helper works.

The qemu.conf, and why:
  user/group = root, dynamic_ownership = 0   QEMU reaches the test's sockets in /tmp and the cached
                                             image as they are (no relabelling of our files)
  security_driver = "none"                   no AppArmor/SELinux here
  cgroup_controllers = [ ]                   the memory controller is cgroup v1 on this hybrid
                                             host and PID 1 is not systemd: libvirt would create
                                             v1 cgroups at the hierarchy root, outside the test's
                                             own; the test places QEMU in its test cgroups itself
  namespaces = [ ]                           no private /dev for QEMU (not needed, and fragile in
                                             containers)
"""

import os
import re
import shutil
import signal
import subprocess
import time
import xml.sax.saxutils
from pathlib import Path

from ab.cgroup import join_preexec
from ab.guest import GUESTS, QEMU, Guest
from ab.scenario import ClosedLoop, daemon_config
from ab.util import tail, wait_until

QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
"""

SYSTEM_DIRS = ("/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt", "/run/libvirt")
PID_DIR = Path("/run/libvirt/qemu")
METADATA_NS = "https://autoballoon.invalid/xmlns/domain/1"


def _ensure_system():
    """The user, groups and directories Debian's postinst (or systemd-tmpfiles) would make."""
    for group in ("libvirt", "libvirt-qemu", "kvm"):
        if subprocess.run(["getent", "group", group], stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["groupadd", "--system", group], check=True)
    if subprocess.run(["getent", "passwd", "libvirt-qemu"], stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/var/lib/libvirt",
                        "--shell", "/usr/sbin/nologin", "--gid", "libvirt-qemu", "--groups", "kvm",
                        "libvirt-qemu"], check=True)
    for d in SYSTEM_DIRS:
        os.makedirs(d, exist_ok=True)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for us.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _read_pid(path):
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


class Libvirtd:
    """virtlogd + libvirtd with a private config; start(), restart(), stop()."""

    def __init__(self, run_dir):
        self.dir = Path(run_dir) / "lv"
        self.etc = self.dir / "etc"
        self.cgroups = []
        self.domains = set()   # the names DomainGuest defined: the only domains stop() destroys
        self.socket = self.dir / "libvirt-sock"
        self.uri = f"qemu:///system?socket={self.socket}"
        self.conf = self.dir / "libvirtd.conf"
        self.pid_file = self.dir / "libvirtd.pid"
        self.log = self.dir / "libvirtd.log"
        self.virtlogd_pid_file = self.dir / "virtlogd.pid"
        self.virtlogd_pid = None
        self.pid = None

    def _spawn(self, argv):
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, timeout=60,
                       preexec_fn=join_preexec(self.cgroups))

    def start(self):
        _ensure_system()
        self.dir.mkdir(parents=True, exist_ok=True)
        # Only our qemu.conf: nothing of the host's libvirt (its domains, networks, autostart links).
        self.etc.mkdir(exist_ok=True)
        (self.etc / "qemu.conf").write_text(QEMU_CONF)
        self.conf.write_text(
            f'unix_sock_dir = "{self.dir}"\n'
            'auth_unix_ro = "none"\nauth_unix_rw = "none"\n'
            f'log_outputs = "3:file:{self.log}"\n')
        if self.virtlogd_pid is None or not _pid_alive(self.virtlogd_pid):
            self._spawn(["virtlogd", "-d", "-p", str(self.virtlogd_pid_file)])
            self.virtlogd_pid = wait_until(lambda: _read_pid(self.virtlogd_pid_file), 10,
                                           what="virtlogd's pid file")
        # libvirtd reads <sysconfdir>/libvirt/qemu.conf, whatever -f says: ours is mounted over it
        # in a mount namespace of its own.
        self._spawn(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                     'mount --bind "$1" /etc/libvirt && exec libvirtd -d -f "$2" -p "$3"',
                     "sh", str(self.etc), str(self.conf), str(self.pid_file)])
        self.pid = wait_until(lambda: _read_pid(self.pid_file), 30, what="libvirtd's pid file")
        wait_until(lambda: self.virsh("version", check=False), 60, 0.2, what="libvirtd to answer")
        return self

    def _kill(self, pid, timeout=20):
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)

    def stop_daemon(self):
        """libvirtd only: its domains keep running."""
        self._kill(self.pid)
        self.pid = None
        try:
            self.pid_file.unlink()
        except FileNotFoundError:
            pass

    def virsh(self, *args, check=True, timeout=60):
        """virsh's output; on failure raises, or with check=False returns "" (virsh version prints
        something on success)."""
        out = subprocess.run(["virsh", "-c", self.uri, *args], capture_output=True, text=True,
                             timeout=timeout)
        if out.returncode != 0:
            if check:
                raise RuntimeError(f"virsh {' '.join(args)}: {out.stderr.strip()}")
            return ""
        return out.stdout

    def stop(self):
        """Destroys the domains it defined, stops libvirtd and virtlogd."""
        if self.pid is not None and _pid_alive(self.pid):
            for name in self.domains:
                self.virsh("destroy", name, check=False)
                self.virsh("undefine", name, check=False)
        self.domains.clear()
        self.stop_daemon()
        self._kill(self.virtlogd_pid)
        self.virtlogd_pid = None


def _q(s):
    return xml.sax.saxutils.quoteattr(str(s))


class DomainGuest(Guest):
    """A Guest of the test image that libvirt runs as domain 'name'.

    metadata: {"weight": "200", "min-memory": "256M", ...} for autoballoon's <metadata>;
    balloon: "virtio" or "none" (the memballoon model);
    qemu, kernel, bios_dir, balloon_props: another QEMU and its firmware, another kernel,
    more virtio-balloon-pci properties (as Guest.start takes them); acpi: ACPI on, for a QEMU
    (9.0 and later) that no longer has the -no-acpi libvirt 9.0 passes without it.
    """

    def __init__(self, libvirtd, name, run_dir, mem="512M", image=None, metadata=None,
                 balloon="virtio", free_page_reporting=True, qemu=None,
                 kernel=None, balloon_props=None, bios_dir=None, acpi=False):
        self.libvirtd = libvirtd
        self._setup(name, run_dir, mem, image, kernel)
        self.qemu_log = Path("/var/log/libvirt/qemu") / f"{name}.log"
        meta = ""
        if metadata:
            meta = (f"<metadata><ab:vm xmlns:ab={_q(METADATA_NS)}>"
                    + "".join(f"<ab:{k}>{xml.sax.saxutils.escape(str(v))}</ab:{k}>"
                              for k, v in metadata.items())
                    + "</ab:vm></metadata>")
        if balloon == "none":
            memballoon = "<memballoon model='none'/>"
        else:
            fpr = "on" if free_page_reporting else "off"
            memballoon = f"<memballoon model={_q(balloon)} freePageReporting='{fpr}'><stats period='1'/></memballoon>"
        qemu_args = ["-qmp", f"unix:{self.harness_qmp_path},server=on,wait=off"]
        if bios_dir:
            qemu_args += ["-L", str(bios_dir)]
        for k, v in (balloon_props or {}).items():
            qemu_args += ["-global", f"virtio-balloon-pci.{k}={v}"]
        mib = self.mem_bytes >> 20
        self.xml = f"""<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  {meta}
  <memory unit='MiB'>{mib}</memory>
  <currentMemory unit='MiB'>{mib}</currentMemory>
  <vcpu>1</vcpu>
  {"<features><acpi/></features>" if acpi else ""}
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{self.kernel}</kernel>
    <initrd>{self.image.initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=1</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{shutil.which(qemu or QEMU)}</emulator>
    <serial type='file'><source path={_q(self.console_log)}/><target port='0'/></serial>
    <console type='unix'><source mode='bind' path={_q(self.ctl_path)}/><target type='virtio' port='0'/></console>
    <controller type='usb' model='none'/>
    {memballoon}
  </devices>
  <qemu:commandline>{"".join(f"<qemu:arg value={_q(a)}/>" for a in qemu_args)}</qemu:commandline>
</domain>
"""
        xml_path = self.run_dir / f"{name}.xml"
        xml_path.write_text(self.xml)
        libvirtd.virsh("define", str(xml_path))
        libvirtd.domains.add(name)
        self.boot()
        GUESTS.append(self)

    def boot(self):
        """Starts the (defined) domain: at creation, and again after destroy()."""
        self.libvirtd.virsh("start", self.name)
        self.started_at = time.monotonic()
        self._pid = wait_until(lambda: _read_pid(PID_DIR / f"{self.name}.pid"), 30, what=f"{self.name}'s pid")

    @property
    def pid(self):
        return self._pid

    def alive(self):
        return _pid_alive(self._pid)

    def _check_alive(self):
        if not self.alive():
            raise RuntimeError(f"domain {self.name}: QEMU exited; log:\n{tail(self.qemu_log, 20)}")

    def move_to(self, cgroup, sub):
        """Puts QEMU (all its threads) into a sub-group of a TestCgroup, in both hierarchies."""
        for path in cgroup.procs_paths(sub):
            path.write_text(str(self._pid))

    def destroy(self):
        self.libvirtd.virsh("destroy", self.name, check=False)
        try:
            wait_until(lambda: not self.alive(), 30, what=f"{self.name}'s QEMU to exit")
        except TimeoutError:
            # libvirtd down (a test failed while it was stopped): QEMU must go all the same.
            os.kill(self._pid, signal.SIGKILL)
            wait_until(lambda: not self.alive(), 10, what=f"{self.name}'s QEMU to die")
        self._close_sockets()

    def kill(self):
        self.destroy()

    def __repr__(self):
        return f"<DomainGuest {self.name} pid={self._pid}>"

    def stop(self, timeout=10):
        if self.alive():
            self.destroy()
        self.libvirtd.virsh("undefine", self.name, check=False)


def adopted(daemon, vm, n=1):
    """Whether the daemon adopted the libvirt domain vm at least n times."""
    return len([line for line in daemon.lines if re.search(rf"{vm}: adopted: .*\(libvirt\)", line)]) >= n


def config(uri, vms, reclaim_step="640M"):
    """The closed-loop scenario's settings, libvirt at uri; vms: {name: "Key=Value\\n..."}."""
    return daemon_config(reclaim_step, f"LibvirtURI={uri}\n") + "".join(f"\n[VM {name}]\n{body}"
                                                                      for name, body in vms.items())


class LibvirtLoop:
    """A ClosedLoop (test cgroup, daemon, pressure knobs) with a libvirtd in its test cgroup."""

    def __init__(self, run_dir, image):
        self.run_dir, self.image = run_dir, image
        self.libvirtd = Libvirtd(run_dir)
        self.loop = None

    def setup(self, vms, **kwargs):
        self.loop = ClosedLoop(self.run_dir, image=self.image, config=config(self.libvirtd.uri, vms, **kwargs),
                               libvirt=True)
        # QEMU starts in libvirtd's cgroup (libvirt's own cgroups are off, see QEMU_CONF): its boot
        # memory stays charged there, below the test cgroup whose limit makes the host pressure.
        self.libvirtd.cgroups = self.loop.cgroup.procs_paths("libvirtd")
        self.libvirtd.start()
        return self.loop

    def domain(self, name, ready=True, **kwargs):
        """A domain of the test image (DomainGuest's kwargs), its QEMU moved into
        balloon-<name>.slice; ready: booted and its RAM resident on the host."""
        g = DomainGuest(self.libvirtd, name, self.run_dir, image=self.image, free_page_reporting=False,
                        **kwargs)
        self.loop.guests[name] = g
        g.move_to(self.loop.cgroup, self.loop.slice_of(name))
        if ready:
            self.ready(g)
        return g

    def qemu_guest(self, name):
        g = Guest.start(name, self.run_dir, mem="512M", qmp_path=self.loop.daemon.qmp_path(name),
                        cgroups=self.loop.cgroup.procs_paths(self.loop.slice_of(name)),
                        image=self.image, free_page_reporting=False)
        self.loop.guests[name] = g
        self.ready(g)
        return g

    @staticmethod
    def ready(g):
        g.wait_ready(120)
        # Guest RAM resident on the host, so that inflating a balloon really returns memory.
        g.cmd_ok("prefault 90", timeout=180)
        # The domain's balloon stats are polled every second (<stats period='1'/>): wait until they
        # show the prefault's memory free again, or the daemon's first read is from the middle of
        # the prefault and the memory counts as used within IdleWindowSec=, so not idle.
        time.sleep(2.5)

    def close(self):
        if self.loop:
            if self.loop.hog:
                self.loop.host_pressure_off()
            if self.loop.daemon.alive():
                self.loop.daemon.stop()
        self.libvirtd.stop()
        if self.loop:
            self.loop.close()

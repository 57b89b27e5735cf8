# SPDX-License-Identifier: LGPL-2.1-or-later
"""The systemd side without systemd as PID 1: memory.high through a FAKE systemd on a private
dbus-daemon, sd_notify on a socket the test reads, journal records on a journal socket the test
binds, autoballoon-run's command lines, and the unit files checked by systemd-analyze."""

import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from ab.guest import Guest
from ab.notify import Datagrams, notify_lines
from ab.scenario import Daemon, daemon_binary
from ab.util import MiB, wait_until

SLICES_SRC = Path(__file__).resolve().parents[2] / "slices"


def built(path):
    """A file of the build tree (the one autoballoond is in)."""
    return daemon_binary().parent.parent / path

# The daemon's fixed journal ids (controller/log.c).
MESSAGE_ID = {"inflate": "7b076f06385c4ef7a1eadde5c8170cb9",
              "set-high": "1949649e9d194210af7b340cd2265076"}


# ---------------------------------------------------------------------------- helpers

class PrivateBus:
    """A dbus-daemon of our own, standing in for the system bus (DBUS_SYSTEM_BUS_ADDRESS)."""

    def __init__(self, run_dir):
        self.address = f"unix:path={run_dir}/bus"
        self.proc = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile",
                                      f"--address={self.address}", "--print-address=1"],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("unix:"), f"dbus-daemon did not start: {line!r}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class FakeSystemd:
    """tests/helpers/fake-systemd: owns org.freedesktop.systemd1 on the bus and knows 'units' only;
    every call it answers is a line in self.calls."""

    def __init__(self, bus, units):
        self.calls = []
        self.proc = subprocess.Popen([str(built("tests/helpers/fake-systemd")), *units],
                                     env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": bus.address},
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline() == "ready\n", "the fake systemd did not start"
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.calls.append(line.rstrip("\n"))

    def calls_for(self, method, unit):
        return [c for c in self.calls if c.startswith(f"{method} {unit} ")]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def journal_records(datagrams):
    """Native journal protocol: KEY=value lines, or KEY\\n<le64 size><data>\\n for binary values."""
    records = []
    for data in list(datagrams.messages):
        fields, i = {}, 0
        while i < len(data):
            nl = data.index(b"\n", i)
            line = data[i:nl]
            if b"=" in line:
                key, _, value = line.partition(b"=")
                i = nl + 1
            else:
                key, size = line, int.from_bytes(data[nl + 1:nl + 9], "little")
                value = data[nl + 9:nl + 9 + size]
                i = nl + 9 + size + 1
            fields[key.decode()] = value.decode(errors="replace")
        records.append(fields)
    return records


def plain_tree(root, vms):
    """A plain-directory cgroup tree: balloon.slice/balloon-<vm>.slice/memory.high = max, and a
    memory.current under the VMs' memory.high (without one the daemon never lowers memory.high: it
    could not bound what the write makes the writer reclaim)."""
    for vm in vms:
        d = root / "balloon.slice" / f"balloon-{vm}.slice"
        d.mkdir(parents=True)
        (d / "memory.high").write_text("max\n")
        (d / "memory.current").write_text(f"{256 * MiB}\n")


def memory_high(root, vm):
    return (root / "balloon.slice" / f"balloon-{vm}.slice" / "memory.high").read_text().strip()


CONFIG = """\
[Daemon]
HostPressure=system
StatsIntervalSec=1
MemoryHighOverhead=64M
"""
HIGH = (384 + 64) * MiB  # the VMs' size + MemoryHighOverhead=


def vm_config(vm, size="384M"):
    """Pinned to one size: host pressure (other work on this machine) cannot move it further."""
    return f"\n[VM {vm}]\nMinMemory={size}\nMaxMemory={size}\n"


# ---------------------------------------------------------------------------- the daemon

@pytest.mark.usefixtures("require_root")
def test_memory_high_through_systemd_when_it_manages_the_slice(run_dir, guest_image):
    """'sysd' is a unit of the (fake) systemd: memory.high goes through SetUnitProperties and the
    daemon leaves its file alone. 'plain' is not: its memory.high file is written directly."""
    root = run_dir / "cg"
    plain_tree(root, ("sysd", "plain"))
    bus = PrivateBus(run_dir)
    fake = FakeSystemd(bus, ["balloon-sysd.slice"])
    d = Daemon(run_dir, root, CONFIG + vm_config("sysd") + vm_config("plain"),
               extra_args=["--allow-plain-cgroup-dir"])
    guests = {}
    try:
        for vm in ("sysd", "plain"):
            guests[vm] = Guest.start(vm, run_dir, qmp_path=d.qmp_path(vm), image=guest_image)
        for g in guests.values():
            g.wait_ready(90)
        d.start(env={"DBUS_SYSTEM_BUS_ADDRESS": bus.address})

        wait_until(lambda: memory_high(root, "plain") == str(HIGH), 60, 0.2,
                   what="plain's memory.high file to follow the balloon")
        wait_until(lambda: fake.calls_for("SetUnitProperties", "balloon-sysd.slice"), 60, 0.2,
                   what="SetUnitProperties for sysd")

        assert fake.calls_for("SetUnitProperties", "balloon-sysd.slice")[0] == \
            f"SetUnitProperties balloon-sysd.slice runtime=1 MemoryHigh={HIGH}", fake.calls
        # systemd owns the file of the unit it manages: the daemon did not write it (this fake
        # records and does not apply).
        assert memory_high(root, "sysd") == "max"
        assert "GetUnit balloon-plain.slice missing" in fake.calls
        assert not fake.calls_for("SetUnitProperties", "balloon-plain.slice"), fake.calls
        assert d.saw(r"plain: systemd does not manage balloon-plain\.slice")
        assert d.saw(r"sysd: balloon-sysd\.slice is a systemd unit")
        assert not d.saw(r"refused|cannot ask systemd"), d.log_tail()
        assert all(g.query_balloon() == 384 * MiB for g in guests.values())
    finally:
        status = d.stop()
        for g in guests.values():
            g.stop()
        fake.stop()
        bus.stop()
    assert status == 0


@pytest.mark.usefixtures("require_root")
def test_without_a_system_bus_memory_high_is_written(run_dir, guest_image):
    root = run_dir / "cg"
    plain_tree(root, ("nobus",))
    d = Daemon(run_dir, root, CONFIG + vm_config("nobus"), extra_args=["--allow-plain-cgroup-dir"])
    g = Guest.start("nobus", run_dir, qmp_path=d.qmp_path("nobus"), image=guest_image)
    try:
        g.wait_ready(90)
        d.start(env={"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={run_dir}/no-bus-here"})
        wait_until(lambda: memory_high(root, "nobus") == str(HIGH), 60, 0.2,
                   what="memory.high to follow the balloon")
        assert d.saw(r"No system bus .*memory\.high is written through cgroupfs")
    finally:
        status = d.stop()
        g.stop()
    assert status == 0


@pytest.mark.usefixtures("require_root")
def test_notify_ready_status_watchdog_reload(run_dir, guest_image):
    root = run_dir / "cg"
    plain_tree(root, ("n1",))
    notify = Datagrams(run_dir / "notify")
    d = Daemon(run_dir, root, CONFIG + vm_config("n1", "448M"), extra_args=["--allow-plain-cgroup-dir"])
    g = Guest.start("n1", run_dir, qmp_path=d.qmp_path("n1"), image=guest_image)
    try:
        g.wait_ready(90)
        d.start(env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000",
                     "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={run_dir}/no-bus-here"})

        wait_until(lambda: "READY=1" in notify_lines(notify), 30, what="READY=1")
        status = wait_until(lambda: [line for line in notify_lines(notify)
                                     if line.startswith("STATUS=1 of 1 VMs managed") and "reclaimed 64M" in line],
                            30, 0.2, what="a STATUS line with the VM and what it gave")[-1]
        assert re.search(r", host pressure \d+\.\d\d% \(some avg10\), host available \S+, reclaimed 64M, "
                         r"last decision: n1 (inflate 64M|set-high 512M|hold), \d+s ago$", status), status

        # The watchdog is pinged at half its interval.
        pings = sum(line == "WATCHDOG=1" for line in notify_lines(notify))
        wait_until(lambda: sum(line == "WATCHDOG=1" for line in notify_lines(notify)) >= pings + 3, 5, 0.1,
                   what="watchdog pings")

        seen = len(notify_lines(notify))
        d.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: d.saw("Configuration reloaded"), 10, what="the reload")
        wait_until(lambda: "READY=1" in notify_lines(notify)[seen:], 5, 0.1, what="READY=1 after the reload")
        after = notify_lines(notify)[seen:]
        assert "RELOADING=1" in after, after
        assert after.index("RELOADING=1") < after.index("READY=1"), after

        assert d.stop() == 0
        assert "STOPPING=1" in notify_lines(notify)
    finally:
        d.stop()
        g.stop()
        notify.close()


@pytest.mark.usefixtures("require_root")
def test_journal_records_carry_fields_and_message_ids(run_dir, guest_image):
    """The daemon logs to a journal socket bound by the test; a mount namespace puts it where
    sd_journal_send() looks (/run/systemd/journal/socket)."""
    root = run_dir / "cg"
    plain_tree(root, ("web",))
    jdir = run_dir / "journal"
    jdir.mkdir()
    journal = Datagrams(jdir / "socket")
    d = Daemon(run_dir, root, CONFIG + vm_config("web"),
               extra_args=["--allow-plain-cgroup-dir", "--log-target=journal"])
    d.argv = ["unshare", "--mount", "sh", "-c",
              'mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && '
              'mount --bind "$0" /run/systemd/journal && exec "$@"', str(jdir), *d.argv]
    g = Guest.start("web", run_dir, qmp_path=d.qmp_path("web"), image=guest_image)

    def decisions(action):
        return [r for r in journal_records(journal) if r.get("AUTOBALLOON_ACTION") == action]
    try:
        g.wait_ready(90)
        d.start(env={"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={run_dir}/no-bus-here"})
        wait_until(lambda: decisions("set-high"), 60, 0.2, what="an inflation and memory.high in the journal")

        inflate = decisions("inflate")[0]
        assert inflate["MESSAGE_ID"] == MESSAGE_ID["inflate"]
        assert inflate["AUTOBALLOON_VM"] == "web"
        assert int(inflate["AUTOBALLOON_TARGET"]) == 384 * MiB
        assert int(inflate["AUTOBALLOON_BYTES"]) == 128 * MiB
        assert inflate["AUTOBALLOON_REASON"] == "above max 384M by 128M", inflate
        assert inflate["PRIORITY"] == "6"
        assert inflate["MESSAGE"].startswith("web: inflate 128 MiB: ")

        high = decisions("set-high")[0]
        assert high["MESSAGE_ID"] == MESSAGE_ID["set-high"]
        assert int(high["AUTOBALLOON_BYTES"]) == HIGH
        # Other messages carry no decision id.
        assert any("adopted" in r.get("MESSAGE", "") and "MESSAGE_ID" not in r for r in journal_records(journal))
        assert not d.lines, d.lines  # all of it went to the journal
    finally:
        status = d.stop()
        g.stop()
        journal.close()
    assert status == 0


# ---------------------------------------------------------------------------- autoballoon-run

def autoballoon_run(*args, env=None):
    return subprocess.run([str(built("slices/autoballoon-run")), *map(str, args)], capture_output=True, text=True,
                          timeout=30, env={**os.environ, **(env or {})})


def dry_run(tmp_path, *args):
    (tmp_path / "qmp").mkdir(exist_ok=True)
    out = autoballoon_run("--dry-run", f"--runtime-dir={tmp_path}", f"--config-dir={tmp_path}/etc", *args)
    assert out.returncode == 0, out.stderr
    return [shlex.split(line) for line in out.stdout.splitlines()]


def test_run_adds_balloon_and_qmp(tmp_path):
    sock = f"{tmp_path}/qmp/web.sock"
    cmds = dry_run(tmp_path, "web", "--", "qemu-system-x86_64", "-m", "1G", "-append", "console=ttyS0 quiet")
    assert cmds == [
        ["systemctl", "set-property", "--runtime", "balloon-web.slice", f"MemoryHigh={(1024 + 256) * MiB}"],
        ["systemd-run", "--unit=autoballoon-vm-web", "--slice=balloon-web.slice",
         "--description=autoballoon VM web", "--collect", "-p", "ManagedOOMPreference=avoid", "--",
         "qemu-system-x86_64", "-m", "1G", "-append", "console=ttyS0 quiet",
         "-qmp", f"unix:{sock},server=on,wait=off",
         "-device", "virtio-balloon-pci,id=balloon0,free-page-reporting=on,deflate-on-oom=on"],
    ]


def test_run_keeps_the_users_balloon_and_qmp(tmp_path):
    sock = f"{tmp_path}/qmp/db.sock"
    qemu = ["qemu", "-m", "size=2G,maxmem=4G", "-device", "virtio-balloon-pci,id=mine,deflate-on-oom=on",
            "-chardev", f"socket,id=mon,path={sock},server=on,wait=off", "-mon", "chardev=mon,mode=control"]
    cmds = dry_run(tmp_path, "db", "--", *qemu)
    assert cmds[-1][cmds[-1].index("--") + 1:] == qemu
    assert cmds[0][-1] == f"MemoryHigh={(2048 + 256) * MiB}"


@pytest.mark.parametrize("m, high", [(["-m", "512"], 512 + 256), (["-m", "1.5G"], 1536 + 256),
                                     ([], 128 + 256)])
def test_run_memory_high_follows_the_memory_size(tmp_path, m, high):
    assert dry_run(tmp_path, "vm1", "--", "qemu", *m)[0][-1] == f"MemoryHigh={high * MiB}"
    assert dry_run(tmp_path, "vm1", "--memory-high=3G", "--", "qemu", *m)[0][-1] == "MemoryHigh=3G"


def test_run_weight_writes_a_dropin_and_reloads(tmp_path):
    cmds = dry_run(tmp_path, "web", "--weight", "200", "--min=25%", "--max", "1.5G", "--", "qemu")
    assert cmds[0][:2] == ["printf", "%s\\n"] and cmds[0][-1].startswith(">")
    assert cmds[0][2:-1] == ["# Written by autoballoon-run for VM web.", "[VM web]", "Weight=200",
                             "MinMemory=25%", "MaxMemory=1.5G"]
    assert cmds[0][-1] == f">{tmp_path}/etc/autoballoon.conf.d/40-vm-web.conf"
    assert cmds[1] == ["systemctl", "try-reload-or-restart", "autoballoond.service"]
    assert cmds[2][:2] == ["systemctl", "set-property"] and cmds[3][0] == "systemd-run"
    assert not (tmp_path / "etc").exists()


def test_run_for_real_with_stub_systemd(tmp_path):
    """Not a dry run: systemctl and systemd-run are stubs recording their arguments; the drop-in is
    written and is one the daemon accepts."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls"
    for tool in ("systemctl", "systemd-run"):
        stub = bindir / tool
        # "is-active" says inactive, as systemctl does for a unit that is not running.
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >>{log}\n[ "$1" != is-active ] || exit 3\n')
        stub.chmod(0o755)
    env = {"PATH": f"{bindir}:{os.environ['PATH']}"}
    run = tmp_path / "run"
    out = autoballoon_run("web", "--weight=300", "--max=75%", f"--config-dir={tmp_path}/etc",
                          f"--runtime-dir={run}", "--", "qemu", "-m", "256M", env=env)
    assert out.returncode == 0, out.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "systemctl is-active --quiet autoballoon-vm-web.service"
    assert calls[1] == "systemctl try-reload-or-restart autoballoond.service"
    assert calls[2] == f"systemctl set-property --runtime balloon-web.slice MemoryHigh={512 * MiB}"
    assert calls[3].startswith("systemd-run --unit=autoballoon-vm-web --slice=balloon-web.slice")
    assert (run / "qmp").is_dir() and (run / "qmp").stat().st_mode & 0o777 == 0o750
    dropin = tmp_path / "etc" / "autoballoon.conf.d" / "40-vm-web.conf"
    assert dropin.read_text() == "# Written by autoballoon-run for VM web.\n[VM web]\nWeight=300\nMaxMemory=75%\n"
    assert not list(dropin.parent.glob("*.tmp"))

    # The daemon reads it: an error in it would name the file (it stops at the missing cgroup root).
    check = subprocess.run([str(daemon_binary()), f"--config-dir={tmp_path}/etc", "--log-target=stderr",
                            f"--cgroup-root={tmp_path}/none"], capture_output=True, text=True, timeout=10)
    assert "40-vm-web.conf" not in check.stderr and "cgroup root" in check.stderr, check.stderr

    # A running VM of that name is not started twice.
    (bindir / "systemctl").write_text(f'#!/bin/sh\necho "systemctl $*" >>{log}\n')
    out = autoballoon_run("web", f"--runtime-dir={run}", "--", "qemu", env=env)
    assert out.returncode == 1 and "already running" in out.stderr


@pytest.mark.parametrize("args, error", [
    (["we-b", "--", "q"], "invalid VM name"),
    (["web"], "no QEMU command line"),
    (["web", "--weight", "0", "--", "q"], "invalid --weight"),
    (["web", "--weight", "10001", "--", "q"], "invalid --weight"),
    (["web", "--min", "12X", "--", "q"], "invalid size"),
    (["web", "--max", "101%", "--", "q"], "invalid size"),
    (["web", "--min", "2G", "--max", "1G", "--", "q"], "above --max"),
    (["web", "db", "--", "q"], "one VM name only"),
    (["web", "-m", "1G"], "unknown option -m"),
])
def test_run_refuses_bad_input(args, error):
    out = autoballoon_run(*args)
    assert out.returncode == 2 and error in out.stderr, out.stderr
    assert out.stdout == ""


# ---------------------------------------------------------------------------- unit files

def test_units_pass_systemd_analyze(tmp_path):
    """systemd-analyze works without systemd as PID 1: verify prints nothing for clean units, and
    the sandbox's exposure stays low."""
    service = built("slices/autoballoond.service").read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    # verify wants the binary to exist: the built one stands in for the installed one.
    (tmp_path / "autoballoond.service").write_text(service.replace(exec_start, f"ExecStart={daemon_binary()}"))
    shutil.copy(SLICES_SRC / "balloon.slice", tmp_path)
    out = subprocess.run(["systemd-analyze", "verify", "--man=no", "autoballoond.service", "balloon.slice"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr

    out = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=30",
                          "autoballoond.service"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    # Root without capabilities to override file permissions, no network.
    for check in ("CapabilityBoundingSet=~CAP_(DAC_*|FOWNER|IPC_OWNER)", "RestrictAddressFamilies=~AF_(INET|INET6)",
                  "CapabilityBoundingSet=~CAP_SYS_ADMIN"):
        line = next(line for line in out.stdout.splitlines() if check in line)
        assert line.lstrip().startswith("✓"), line


def test_tmpfiles_make_the_qmp_directory(tmp_path):
    out = subprocess.run(["systemd-tmpfiles", f"--root={tmp_path}", "--create",
                          str(SLICES_SRC / "tmpfiles.d" / "autoballoon.conf")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "run/autoballoon/qmp").stat().st_mode & 0o7777 == 0o750
    assert (tmp_path / "run/autoballoon").stat().st_mode & 0o7777 == 0o755

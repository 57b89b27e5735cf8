# SPDX-License-Identifier: LGPL-2.1-or-later
"""The daemon's D-Bus API, autoballoonctl and the metrics file, on a private dbus-daemon standing in
for the system bus (DBUS_SYSTEM_BUS_ADDRESS in the daemon's and autoballoonctl's environment)."""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ab.guest import Guest
from ab.scenario import Daemon, daemon_binary
from ab.util import MiB, wait_until

pytestmark = pytest.mark.usefixtures("require_root")

CTL = daemon_binary().parent / "autoballoonctl"
POLICY = Path(__file__).resolve().parents[2] / "slices" / "org.autoballoon1.conf"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

# Everyone may do everything: what refuses is the daemon itself.
OPEN_POLICY = """
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_requested_reply="true"/>
    <allow receive_requested_reply="true"/>
  </policy>"""

# Debian's system bus default policy (/usr/share/dbus-1/system.conf): owning names and calling
# methods are denied unless a policy file allows them.
SYSTEM_POLICY = """
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>"""


class PrivateBus:
    """dbus-daemon with our own configuration, its socket in a directory other users can reach."""

    def __init__(self, policy, include=None):
        self.dir = Path(tempfile.mkdtemp(prefix="abbus-", dir="/tmp"))
        self.dir.chmod(0o755)
        self.address = f"unix:path={self.dir}/socket"
        config = self.dir / "bus.conf"
        config.write_text(
            '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"\n'
            ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">\n'
            f"<busconfig>\n  <type>system</type>\n  <listen>{self.address}</listen>\n"
            f"  <auth>EXTERNAL</auth>{policy}\n"
            + (f"  <include>{include}</include>\n" if include else "") + "</busconfig>\n")
        self.proc = subprocess.Popen(["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile",
                                      "--print-address=1"], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("unix:"), f"dbus-daemon did not start: {line!r}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def ctl(bus, *args, user=None, env=None):
    """autoballoonctl as root, or as another user (user="nobody")."""
    out = subprocess.run([*(NOBODY if user == "nobody" else []), str(CTL), *map(str, args)],
                         capture_output=True, text=True, timeout=30,
                         env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": bus.address, **(env or {})})
    return out.returncode, out.stdout, out.stderr


def ctl_ok(bus, *args, **kwargs):
    rc, out, err = ctl(bus, *args, **kwargs)
    assert rc == 0, f"autoballoonctl {' '.join(map(str, args))}: {rc}\n{out}{err}"
    return out


def status(bus, **kwargs):
    """status --json, with the VMs by name."""
    s = json.loads(ctl_ok(bus, "status", "--json", **kwargs))
    s["vms"] = {vm["name"]: vm for vm in s["vms"]}
    return s


def plain_tree(root, vms):
    for vm in vms:
        (root / "balloon.slice" / f"balloon-{vm}.slice").mkdir(parents=True)


def slice_of(vm):
    return f"balloon.slice/balloon-{vm}.slice"


def metrics_file(d):
    try:
        return (d.runtime_dir / "metrics.prom").read_text()
    except FileNotFoundError:
        return ""


# ---------------------------------------------------------------------------- without a guest

def test_policy_file_lets_everyone_read_and_root_change(run_dir):
    """The bus as Debian configures it plus slices/org.autoballoon1.conf: root owns the name; anyone
    reads; only root pauses (the bus itself refuses the others). A second daemon does not start."""
    root = run_dir / "cg"
    plain_tree(root, ("idle",))
    bus = PrivateBus(SYSTEM_POLICY, include=POLICY)
    # The metrics file, written at each tick, is checked within seconds of each change.
    d = Daemon(run_dir, root, "[Daemon]\nStatsIntervalSec=1\nStatsIdleIntervalSec=1\n",
               extra_args=["--allow-plain-cgroup-dir"])
    try:
        d.start(env={"DBUS_SYSTEM_BUS_ADDRESS": bus.address})
        wait_until(lambda: d.saw("Serving org.autoballoon1 on the system bus"), 10, what="the name")

        for user in (None, "nobody"):
            out = ctl_ok(bus, "status", user=user)
            assert re.search(r"^idle\s+connecting\s+100\s+-", out, re.M), out
            assert "policy autoballoon, running" in out.splitlines()[0], out
            assert "No decision logged yet" in ctl_ok(bus, "explain", "idle", user=user)
        s = status(bus, user="nobody")
        assert s["vms"]["idle"]["state"] == "connecting" and s["vms"]["idle"]["actual_bytes"] is None
        assert s["paused"] is False and s["dry_run"] is False and s["policy"] == "autoballoon"

        for args in (("pause",), ("set-weight", "idle", "5", "--runtime")):
            rc, out, err = ctl(bus, *args, user="nobody")
            assert rc == 1 and "org.freedesktop.DBus.Error.AccessDenied" in err, err
        assert not d.saw("Refused to"), "the bus policy, not the daemon, refuses here"
        s = status(bus)
        assert s["paused"] is False and s["vms"]["idle"]["weight"] == 100

        ctl_ok(bus, "pause")
        assert status(bus, user="nobody")["paused"] is True
        assert "paused (nothing is changed)" in ctl_ok(bus, "status").splitlines()[0]
        wait_until(lambda: "autoballoon_paused 1\n" in metrics_file(d), 10, 0.2, what="the metrics to say paused")
        ctl_ok(bus, "resume")
        assert status(bus)["paused"] is False

        # A second daemon on the same bus would fight over the same balloons.
        second = subprocess.run([str(daemon_binary()), f"--config-dir={d.config_dir}", f"--cgroup-root={root}",
                                 "--allow-plain-cgroup-dir", f"--runtime-dir={run_dir}", "--log-target=stderr"],
                                capture_output=True, text=True, timeout=30,
                                env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": bus.address})
        assert second.returncode == 1, second.stderr
        assert "Another process owns org.autoballoon1" in second.stderr, second.stderr
        assert d.alive()
    finally:
        status_code = d.stop()
        bus.stop()
    assert status_code == 0


def test_daemon_without_the_api(run_dir):
    """No bus, a bus that does not let it own the name, --bus=none: the daemon runs and writes its
    metrics. An explicitly requested bus that is not there is an error. --bus=session works."""
    root = run_dir / "cg"
    plain_tree(root, ("v",))
    missing = f"unix:path={run_dir}/no-bus-here"
    denying = PrivateBus(SYSTEM_POLICY)  # no policy file: nobody may own org.autoballoon1
    session = PrivateBus(OPEN_POLICY)
    try:
        for name, address, args, expect in (
                ("nobus", missing, [], r"debug: No system bus .*: no D-Bus API"),
                ("denied", denying.address, [], r"warning: Cannot own org\.autoballoon1 on the system bus"),
                ("none", missing, ["--bus=none"], None),
                ("session", missing, ["--bus=session"], r"Serving org\.autoballoon1 on the session bus")):
            (run_dir / name).mkdir()
            d = Daemon(run_dir / name, root, "[Daemon]\nStatsIntervalSec=1\n",
                       extra_args=["--allow-plain-cgroup-dir", *args])
            d.start(env={"DBUS_SYSTEM_BUS_ADDRESS": address, "DBUS_SESSION_BUS_ADDRESS": session.address})
            try:
                wait_until(lambda: metrics_file(d).endswith("# EOF\n"), 10, 0.2, what=f"{name}: the metrics file")
                assert 'autoballoon_vm_managed{vm="v"} 0\n' in metrics_file(d)
                if expect:
                    assert d.saw(expect), d.log_tail()
                if name == "none":
                    assert not d.saw(r"D-Bus|org\.autoballoon1"), d.log_tail()
                if name == "session":
                    rc, out, err = ctl(session, "status", "--bus=session",
                                       env={"DBUS_SESSION_BUS_ADDRESS": session.address})
                    assert rc == 0 and re.search(r"^v\s+connecting", out, re.M), out + err
                assert d.alive()
            finally:
                assert d.stop() == 0

        out = subprocess.run([str(daemon_binary()), "--bus=system", f"--config-dir={run_dir}/none",
                              f"--cgroup-root={root}", "--allow-plain-cgroup-dir", f"--runtime-dir={run_dir}",
                              "--log-target=stderr"], capture_output=True, text=True, timeout=30,
                             env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": missing})
        assert out.returncode == 1 and "No system bus" in out.stderr, out.stderr

        # autoballoonctl without a daemon: says so.
        rc, _, err = ctl(session, "status")
        assert rc == 1 and "autoballoond is not running" in err, err
    finally:
        denying.stop()
        session.stop()


# ---------------------------------------------------------------------------- on a real guest

CONFIG = """\
[Daemon]
HostPressure=system
StatsIntervalSec=1
StatsIdleIntervalSec=1
MaxStep=64M
MaxRate=64M

[VM web]
MinMemory=320M
"""
# Host pressure that does not go away: available memory is always below a 100% reserve.
PRESSURE = CONFIG.replace("MaxRate=64M\n", "MaxRate=64M\nHostReserve=100%\n")


def test_api_on_a_real_guest(run_dir, test_cgroup, guest_image):
    bus = PrivateBus(OPEN_POLICY)
    test_cgroup.sub(slice_of("web"))
    d = Daemon(run_dir, test_cgroup.unified_root, CONFIG)
    g = Guest.start("web", run_dir, qmp_path=d.qmp_path("web"), image=guest_image,
                    cgroups=test_cgroup.procs_paths(slice_of("web")))
    dropins = d.config_dir / "autoballoon.conf.d"
    try:
        g.wait_ready(90)
        d.start(env={"DBUS_SYSTEM_BUS_ADDRESS": bus.address})
        wait_until(lambda: d.saw("web: adopted"), 30, what="adoption")
        wait_until(lambda: status(bus)["vms"]["web"]["state"] == "ready", 10, 0.2, what="web ready")

        # status: the VM and its sizes, as a table and as JSON.
        web = status(bus)["vms"]["web"]
        assert web["boot_memory_bytes"] == 512 * MiB and web["max_bytes"] == 512 * MiB
        assert web["min_bytes"] == 320 * MiB and web["weight"] == 100
        assert 320 * MiB <= web["actual_bytes"] <= 512 * MiB
        assert web["memory_high_bytes"] is None  # no memory.high on this hybrid machine's cgroup2 tree
        assert isinstance(web["slice_pressure_some_avg10"], float)
        table = ctl_ok(bus, "status")
        assert re.search(r"^web\s+ready\s+100\s+\S+\s+\S+\s+512M\s+320M\s+512M\s+-\s+\d+\.\d\d%", table, re.M), table

        # Bad input: a clear error, a non-zero exit, nothing changed.
        for args, error in ((("set-weight", "nosuch", "5"), "org.autoballoon1.Error.NoSuchVM"),
                            (("set-weight", "web", "0"), "org.freedesktop.DBus.Error.InvalidArgs"),
                            (("set-weight", "web", "10001", "--runtime"), "org.freedesktop.DBus.Error.InvalidArgs"),
                            (("explain", "nosuch"), "org.autoballoon1.Error.NoSuchVM")):
            rc, out, err = ctl(bus, *args)
            assert rc == 1 and error in err, (args, rc, err)
        rc, _, err = ctl(bus, "set-weight", "web", "many")
        assert rc == 2 and "invalid weight" in err, err
        assert not dropins.exists() or not list(dropins.iterdir())

        # Without privilege: refused by the daemon (this bus lets everyone call), nothing changed.
        for args in (("set-weight", "web", "500", "--runtime"), ("set-weight", "web", "500"), ("pause",)):
            rc, out, err = ctl(bus, *args, user="nobody")
            assert rc == 1 and "org.freedesktop.DBus.Error.AccessDenied" in err and "uid 65534" in err, err
        assert d.saw("Refused to set a weight for uid 65534")
        s = status(bus, user="nobody")
        assert s["vms"]["web"]["weight"] == 100 and s["paused"] is False
        assert not dropins.exists() or not list(dropins.iterdir())

        # A runtime weight: shown at once, no file.
        ctl_ok(bus, "set-weight", "web", "300", "--runtime")
        assert status(bus)["vms"]["web"]["weight"] == 300
        assert not dropins.exists() or not list(dropins.iterdir())

        # Paused, a reload that puts the host under pressure decides inflations (logged) but the
        # balloon does not move; the runtime weight outlives the reload.
        ctl_ok(bus, "pause")
        time.sleep(2)  # a command sent before the pause completes
        before = g.query_balloon()
        since = time.monotonic()
        (d.config_dir / "autoballoon.conf").write_text(PRESSURE)
        d.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: d.decisions_for("web", "inflate", since), 20, what="an inflation decided while paused")
        time.sleep(3)
        assert g.query_balloon() == before, "the balloon moved while paused"
        s = status(bus)
        assert s["paused"] is True and s["vms"]["web"]["weight"] == 300

        # Resumed: it moves, and the decisions split by the runtime weight.
        resumed = time.monotonic()
        ctl_ok(bus, "resume")
        wait_until(lambda: g.query_balloon() < before, 30, 0.2, what="the balloon to move after resume")
        inflations = d.decisions_for("web", "inflate", resumed)
        assert inflations and all("by weight 300" in i.reason for i in inflations), inflations

        # explain: the snapshot's numbers and the decisions with their reasons.
        out = ctl_ok(bus, "explain", "web")
        assert re.search(r"^  weight\s+300$", out, re.M) and re.search(r"^  runtime weight\s+yes$", out, re.M), out
        assert re.search(r"^  guest available\s+\d", out, re.M), out
        assert re.search(r"^\d\d:\d\d:\d\d\s+inflate\s+\S+\s+\S+\s+\S+\s+host pressure: .*by weight 300", out, re.M), out
        e = json.loads(ctl_ok(bus, "explain", "web", "--json"))
        assert e["snapshot"]["weight"] == 300 and e["snapshot"]["has_stats"] is True
        assert e["snapshot"]["min_bytes"] == 320 * MiB and e["snapshot"]["guest_available_bytes"] > 0
        assert 0 <= e["snapshot"]["guest_free_recent_bytes"] <= e["snapshot"]["guest_free_bytes"], e["snapshot"]
        assert "guest_growth_bytes" in e["snapshot"], e["snapshot"]
        assert any(x["action"] == "inflate" and "by weight 300" in x["reason"] for x in e["decisions"]), e
        assert abs(e["decisions"][-1]["time_usec"] / 1e6 - time.time()) < 600

        # Persistent: the drop-in, applied, and kept across a reload (the runtime weight is gone).
        ctl_ok(bus, "set-weight", "web", "200")
        dropin = dropins / "50-weight-web.conf"
        assert dropin.read_text() == ('# Written by "autoballoonctl set-weight"; remove it to drop this setting.\n'
                                      "[VM web]\nWeight=200\n")
        assert sorted(p.name for p in dropins.iterdir()) == ["50-weight-web.conf"]
        assert status(bus)["vms"]["web"]["weight"] == 200
        d.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: len([line for line in d.lines if "Configuration reloaded" in line]) >= 2, 10,
                   what="the second reload")
        assert status(bus)["vms"]["web"]["weight"] == 200

        # A later drop-in setting the weight again, or a malformed one: refused, file put back.
        (dropins / "60-web.conf").write_text("[VM web]\nWeight=50\n")
        rc, _, err = ctl(bus, "set-weight", "web", "400")
        assert rc == 1 and "org.autoballoon1.Error.BadConfig" in err and "60-web.conf:2" in err, err
        (dropins / "60-web.conf").write_text("[VM web]\nWeigth=400\n")
        rc, _, err = ctl(bus, "set-weight", "web", "400")
        assert rc == 1 and "org.autoballoon1.Error.BadConfig" in err and "does not load" in err, err
        assert d.saw(r"60-web\.conf:2: .*Weigth")
        assert dropin.read_text().endswith("Weight=200\n")
        assert sorted(p.name for p in dropins.iterdir()) == ["50-weight-web.conf", "60-web.conf"]
        assert status(bus)["vms"]["web"]["weight"] == 200

        # The metrics file (written each tick), also through autoballoonctl.
        wait_until(lambda: 'autoballoon_vm_weight{vm="web"} 200\n' in metrics_file(d), 10, 0.2,
                   what="the metrics to show the new weight")
        text = metrics_file(d)
        assert text.endswith("# EOF\n")
        actual = int(re.search(r'^autoballoon_vm_actual_bytes\{vm="web"\} (\d+)$', text, re.M).group(1))
        assert 320 * MiB <= actual < before
        assert re.search(r'^autoballoon_vm_slice_pressure_some_avg10\{vm="web"\} \d+\.\d\d$', text, re.M), text
        assert int(re.search(r'^autoballoon_decisions_total\{vm="web",action="inflate"\} (\d+)$', text,
                             re.M).group(1)) >= len(inflations)
        assert re.search(r"^autoballoon_host_available_bytes \d+$", text, re.M), text
        out = ctl_ok(bus, "metrics")
        assert out.startswith("# TYPE autoballoon_policy info\n") and out.endswith("# EOF\n"), out
        assert 'autoballoon_policy_info{policy="autoballoon"} 1\n' in out, out
        assert d.alive()
    finally:
        status_code = d.stop()
        g.stop()
        bus.stop()
    assert status_code == 0


def test_pause_and_hysteresis_survive_sigkill(run_dir, test_cgroup, guest_image):
    """A daemon killed (SIGKILL, the watchdog) while paused and while a guest is in hysteresis, and
    started again: it is still paused, and it still does not inflate that guest under host pressure
    until the window is over (<RuntimeDir>/state)."""
    guest_floor = "MaxRate=64M\nGuestReserve=96M\nGuestMinAvailable=64M\n"
    config, pressure = (c.replace("MaxRate=64M\n", guest_floor) for c in (CONFIG, PRESSURE))
    bus = PrivateBus(OPEN_POLICY)
    test_cgroup.sub(slice_of("web"))
    d = Daemon(run_dir, test_cgroup.unified_root, config)
    g = Guest.start("web", run_dir, qmp_path=d.qmp_path("web"), image=guest_image,
                    cgroups=test_cgroup.procs_paths(slice_of("web")))
    d2 = None
    try:
        g.wait_ready(90)
        env = {"DBUS_SYSTEM_BUS_ADDRESS": bus.address}
        d.start(env=env)
        wait_until(lambda: d.saw("web: adopted"), 30, what="adoption")

        # Guest pressure: below GuestMinAvailable=, so the guest enters its 60 s of hysteresis.
        available = g.meminfo()["MemAvailable"] // 1024
        g.cmd_ok(f"alloc squeeze {max(available - 32, 16)}", timeout=120)
        # At its full size it has nothing to get back, so no decision is logged: the state file says it.
        state = d.runtime_dir / "state"
        wait_until(lambda: state.exists() and re.search(r"^vm web [1-9]\d* ", state.read_text(), re.M), 30, 0.2,
                   what="web's hysteresis in the state file")
        ctl_ok(bus, "pause")
        wait_until(lambda: "paused 1\n" in state.read_text(), 10, 0.2, what="Pause in the state file")
        g.cmd_ok("free squeeze")

        d.proc.kill()
        d.proc.wait(10)
        killed = time.monotonic()

        # Started again with the host short of memory for good.
        d2 = Daemon(run_dir, test_cgroup.unified_root, pressure)
        d2.start(env=env)
        wait_until(lambda: d2.saw("web: adopted"), 30, what="adoption after the restart")
        assert d2.saw(r"Paused, as before the restart"), d2.log_tail()
        assert d2.saw(r"web: hysteresis, back-off and stall count carried over"), d2.log_tail()
        assert status(bus)["paused"] is True

        ctl_ok(bus, "resume")
        wait_until(lambda: d2.decisions_for("web", "hold"), 20, 0.2, what="web held in hysteresis")
        held = d2.decisions_for("web", "hold")
        assert any("hysteresis" in x.reason for x in held), held
        time.sleep(max(0.0, 40 - (time.monotonic() - killed)))
        assert not d2.decisions_for("web", "inflate"), "inflated inside the hysteresis window after a restart"
        assert d2.alive()
    finally:
        status_code = (d2 or d).stop()
        g.stop()
        bus.stop()
    assert status_code == 0

# SPDX-License-Identifier: LGPL-2.1-or-later
"""autoballoond and its C modules against real parts: PSI triggers on a test cgroup, the QMP client
on a real guest, the daemon adopting and dropping VMs, bad configuration and bad peers, and what
the policy saw recorded and replayed, libvirt mapped only with Libvirt=yes."""

import json
import os
import re
import subprocess
import time

import pytest

from ab.guest import Guest
from ab.hog import PageCacheHog
from ab.listener import Listener
from ab.scenario import Daemon, daemon_binary
from ab.util import MiB, wait_until

pytestmark = pytest.mark.usefixtures("require_root")

GiB = 1024 * MiB


def tool(name):
    """A helper program of tests/helpers, as built next to the daemon."""
    return str(daemon_binary().parent.parent / "tests" / "helpers" / name)


def slice_of(vm):
    return f"balloon.slice/balloon-{vm}.slice"


def test_psi_trigger_fires_on_real_pressure(test_cgroup):
    test_cgroup.set_limit(32 * MiB)
    with PageCacheHog(128, test_cgroup.procs_paths("hog")):
        # A 1 s window is refused here without CAP_SYS_RESOURCE and must come back rounded to 2 s.
        out = subprocess.run([tool("psi-wait"), str(test_cgroup.unified() / "memory.pressure"),
                              "100", "1000", "60", "2"], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stdout + out.stderr
    fired = re.findall(r"^fired \d+ after (\d+) ms window=(\d+)", out.stdout, re.M)
    assert len(fired) == 2, out.stdout
    assert all(window in ("1000", "2000") for _, window in fired)


def test_qmp_client_on_real_guest(guest_factory):
    g = guest_factory("q1")
    qmp = str(g.qmp_path)

    def run(*args):
        out = subprocess.run([tool("qmp-tool"), qmp, *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    total = g.meminfo()["MemTotal"]
    assert re.search(rf"^actual {256 * MiB} after \d+ ms", run("balloon", "256M"), re.M)
    wait_until(lambda: total - g.meminfo()["MemTotal"] >= 250 * 1024, 10, 0.2, "MemTotal to drop ~256M")
    assert re.search(rf"^actual {512 * MiB}", run("balloon", "512M"), re.M)
    wait_until(lambda: g.meminfo()["MemTotal"] == total, 10, 0.2, "MemTotal to come back")
    assert run("query-balloon").strip() == f"actual {512 * MiB}"

    stats = dict(line.split() for line in run("stats", "/machine/peripheral/balloon0", "1").splitlines()
                 if line.startswith("stat-"))
    available = int(stats["stat-available-memory"])
    assert abs(available - g.meminfo()["MemAvailable"] * 1024) < 32 * MiB
    assert int(stats["stat-total-memory"]) == total * 1024


def run_daemon(args, timeout=10):
    return subprocess.run([str(daemon_binary()), "--log-target=stderr", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_bad_config_names_file_and_line(tmp_path, test_cgroup):
    (tmp_path / "autoballoon.conf").write_text("[Daemon]\nTaxRate=0.5\n\n[VM web]\nWeight=0\n")
    out = run_daemon([f"--config-dir={tmp_path}", f"--cgroup-root={test_cgroup.unified_root}"])
    assert out.returncode == 1
    assert re.search(r"autoballoon\.conf:5: .*Weight", out.stderr), out.stderr
    assert "started" not in out.stderr

    (tmp_path / "autoballoon.conf").write_text("[Daemon]\nTaxRate=0.5\n")
    (tmp_path / "autoballoon.conf.d").mkdir()
    (tmp_path / "autoballoon.conf.d" / "50-x.conf").write_text("[Daemon]\n\nNoSuchKey=1\n")
    out = run_daemon([f"--config-dir={tmp_path}", f"--cgroup-root={test_cgroup.unified_root}"])
    assert out.returncode == 1
    assert re.search(r"50-x\.conf:3: .*NoSuchKey", out.stderr), out.stderr


def test_missing_cgroup2_and_psi_are_named(tmp_path, test_cgroup):
    out = run_daemon([f"--config-dir={tmp_path}", "--cgroup-root=/proc"])
    assert out.returncode == 1
    assert "cgroup2" in out.stderr and "--cgroup-root" in out.stderr, out.stderr

    out = run_daemon([f"--config-dir={tmp_path}", f"--cgroup-root={test_cgroup.unified_root}",
                      f"--proc-root={tmp_path}"])
    assert out.returncode == 1
    assert "psi=1" in out.stderr, out.stderr


def test_window_rounding_is_said_once(run_dir, test_cgroup):
    for vm in ("a", "b"):
        test_cgroup.sub(slice_of(vm))
    d = Daemon(run_dir, test_cgroup.unified_root, "[Daemon]\nHostPressure=slice\nTriggerWindowSec=1\n").start()
    try:
        wait_until(lambda: d.saw(r"b: found slice"), 10, what="the daemon to find the slices")
    finally:
        assert d.stop() == 0
    said = [line for line in d.lines if "multiple of 2 s" in line]
    assert len(said) == 1, d.lines
    assert "using 2000 ms" in said[0]


class FakeQMP(Listener):
    """A fake QEMU monitor (no real QEMU sends garbage): greets, then answers the capabilities
    negotiation with junk or with an oversized message."""

    def __init__(self, path, junk=b""):
        self.junk = junk
        super().__init__(path)

    def talk(self, conn):
        conn.sendall(b'{"QMP": {"version": {}, "capabilities": []}}\r\n')
        self._talk(conn)

    def _talk(self, conn):
        conn.recv(4096)
        conn.sendall(self.junk)
        conn.recv(4096)


class BalloonQMP(FakeQMP):
    """Just enough of a QEMU monitor for the daemon to adopt a VM and move its balloon."""

    def __init__(self, path, boot, actual):
        self.boot, self.actual = boot, actual
        super().__init__(path)

    def _reply(self, command, args):
        if command == "query-memory-size-summary":
            return {"base-memory": self.boot}
        if command == "qom-list":
            return [{"name": "balloon0", "type": "child<virtio-balloon-pci>"}] \
                if args["path"] == "/machine/peripheral" else []
        if command == "query-balloon":
            return {"actual": self.actual}
        if command == "qom-get":
            return {"last-update": 1, "stats": {"stat-available-memory": GiB, "stat-free-memory": 512 * MiB}}
        if command == "balloon":
            self.actual = args["value"]
        return {}

    def _talk(self, conn):
        with conn.makefile("rwb", buffering=0) as f:
            for line in f:
                m = json.loads(line)
                reply = self._reply(m["execute"], m.get("arguments", {}))
                f.write(json.dumps({"return": reply, "id": m.get("id")}).encode() + b"\r\n")


def test_vms_come_and_go_and_bad_peers_stay_alone(run_dir, test_cgroup, guest_image):
    """The daemon starts first; VMs appear; a peer sending garbage or an oversized message is
    failed and retried on its own; QEMU killed mid-command is dropped; the others keep being
    served, and a reload applies a changed configuration."""
    for vm in ("keep", "gone", "junk", "huge"):
        test_cgroup.sub(slice_of(vm))
    d = Daemon(run_dir, test_cgroup.unified_root, "[Daemon]\nStatsIntervalSec=1\n").start()
    fakes = [FakeQMP(d.qmp_path("junk"), b"}}}not json at all{{{\r\n"),
             FakeQMP(d.qmp_path("huge"), b'{"return": "' + b"x" * (2 * MiB) + b'"}\r\n')]
    guests = {}
    try:
        for vm in ("keep", "gone"):
            guests[vm] = Guest.start(vm, run_dir, qmp_path=d.qmp_path(vm), image=guest_image,
                                     cgroups=test_cgroup.procs_paths(slice_of(vm)))
        for g in guests.values():
            g.wait_ready(90)
        wait_until(lambda: d.saw(r"keep: adopted") and d.saw(r"gone: adopted"), 30, what="adoption")

        # Bad peers: each failed with a clear line naming its socket, and retried.
        wait_until(lambda: all(f.connections >= 2 for f in fakes), 20, what="the bad peers to be retried")
        for vm in ("junk", "huge"):
            assert d.saw(rf"{vm}\.sock"), d.log_tail()
        assert not d.saw(r"(junk|huge): adopted")

        # QEMU killed while the daemon polls it: dropped cleanly once its slice goes.
        guests["gone"].kill()
        wait_until(lambda: d.saw(r"gone: lost the QMP connection"), 20, what="the lost connection")
        test_cgroup.unified(slice_of("gone")).rmdir()
        wait_until(lambda: d.saw(r"gone: slice .* is gone, dropping"), 10, what="the VM to be dropped")

        # The survivor is still served: a reload lowers its MaxMemory and it is inflated to it.
        (d.config_dir / "autoballoon.conf").write_text(
            "[Daemon]\nStatsIntervalSec=1\n\n[VM keep]\nMaxMemory=384M\n")
        d.proc.send_signal(1)
        wait_until(lambda: d.saw("Configuration reloaded"), 10, what="the reload")
        wait_until(lambda: guests["keep"].query_balloon() == 384 * MiB, 30, 0.2,
                   what="keep inflated to its new MaxMemory")
        assert d.decisions_for("keep", "inflate")

        # Someone else moves the balloon: the daemon adopts the new size instead of waiting for its
        # old target, and brings the VM back under its MaxMemory.
        time.sleep(3)  # the daemon has seen 384M: the next move is unambiguous
        guests["keep"].balloon(448 * MiB)
        wait_until(lambda: d.saw(r"keep: balloon deflated to \S+ past our target 384M: adopting \S+"), 20,
                   what="the daemon to adopt the outside move")
        wait_until(lambda: guests["keep"].query_balloon() == 384 * MiB, 30, 0.2, what="keep back at 384M")
        assert not d.saw(r"keep.*stalled")
        assert d.alive()
    finally:
        for f in fakes:
            f.close()
        status = d.stop()
        for g in guests.values():
            g.stop()
    assert status == 0


def test_dry_run_touches_nothing(run_dir, test_cgroup, guest_image):
    test_cgroup.sub(slice_of("dry"))
    d = Daemon(run_dir, test_cgroup.unified_root,
               "[Daemon]\nStatsIntervalSec=1\n\n[VM dry]\nMaxMemory=256M\n", extra_args=["--dry-run"])
    g = Guest.start("dry", run_dir, qmp_path=d.qmp_path("dry"), image=guest_image,
                    cgroups=test_cgroup.procs_paths(slice_of("dry")))
    try:
        g.wait_ready(90)
        d.start()
        wait_until(lambda: d.decisions_for("dry", "inflate"), 30, what="a dry-run decision")
        assert d.decisions_for("dry", "inflate")[0].target == 256 * MiB
        assert g.query_balloon() == 512 * MiB
    finally:
        assert d.stop() == 0
        g.stop()


def test_record_and_replay(run_dir, test_cgroup):
    """Policy= and --record without a guest: the trace holds what the policy saw, and the replay
    tool reads it back."""
    test_cgroup.sub("balloon.slice/balloon-web.slice")
    trace = run_dir / "trace.jsonl"
    d = Daemon(run_dir, test_cgroup.unified_root,
               "[Daemon]\nPolicy=proxmox\nStatsIntervalSec=1\nStatsIdleIntervalSec=1\n",
               extra_args=[f"--record={trace}"])
    qmp = BalloonQMP(d.qmp_path("web"), 4 * GiB, 2 * GiB)
    try:
        d.start()
        wait_until(lambda: d.saw(r"web: adopted"), 20, what="adoption")
        wait_until(lambda: trace.exists() and len(trace.read_text().splitlines()) >= 4, 20, what="records")
    finally:
        status = d.stop()
        qmp.close()
    assert status == 0
    assert d.saw(r"started: policy proxmox"), d.log_tail()

    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert all(r["params"]["mode"] == "proxmox" for r in records)
    web = [vm for r in records for vm in r["vms"]]
    assert web and all(vm["name"] == "web" and vm["max"] == 4 * GiB for vm in web)
    assert web[-1]["guest_available"] == GiB

    replay = daemon_binary().parent.parent / "tests" / "bench" / "ab-replay"
    out = subprocess.run([str(replay), "--tsv", str(trace)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    rows = {line.split("\t")[0]: line.split("\t") for line in out.stdout.splitlines()[1:]}
    assert set(rows) == {"autoballoon", "none", "rfc", "proxmox"}
    assert all(int(row[1]) == len(records) for row in rows.values())
    assert all(int(x) == 0 for x in rows["none"][2:8])


def mapped_files(pid):
    """The files mapped into process pid."""
    with open(f"/proc/{pid}/maps") as f:
        return {line.split()[5] for line in f if len(line.split()) > 5 and line.split()[5].startswith("/")}


def test_open_files_limit_raised(run_dir, test_cgroup):
    """About two fds per VM: the daemon raises its soft limit on open files to the hard one, as a
    service gets only 1024 from systemd."""
    test_cgroup.sub(slice_of("web"))
    d = Daemon(run_dir, test_cgroup.unified_root, "[Daemon]\nStatsIntervalSec=1\n")
    d.argv = ["prlimit", "--nofile=256:4096", "--", *d.argv]
    qmp = BalloonQMP(d.qmp_path("web"), 4 * GiB, 2 * GiB)
    try:
        d.start()
        wait_until(lambda: d.saw(r"web: adopted"), 20, what="adoption")
        with open(f"/proc/{d.proc.pid}/limits") as f:
            limits = f.read()
    finally:
        status = d.stop()
        qmp.close()
    assert status == 0, d.log_tail()
    assert re.search(r"^Max open files\s+4096\s+4096\s+files", limits, re.M), limits


def test_libvirt_is_loaded_only_when_enabled(run_dir, test_cgroup):
    """Libvirt=no maps nothing of libvirt; Libvirt=yes loads it (with no libvirtd: a socket nobody
    listens on); Libvirt=yes without the library says so once and still manages the QMP VMs."""
    version = subprocess.run([str(daemon_binary()), "--version"], capture_output=True, text=True).stdout
    if "+libvirt" not in version:
        pytest.skip(f"built without libvirt: {version.strip()}")
    test_cgroup.sub(slice_of("web"))

    def run(libvirt, wrap=()):
        config = "[Daemon]\nStatsIntervalSec=1\n"
        if libvirt:
            config += f"Libvirt=yes\nLibvirtURI=qemu:///system?socket={run_dir}/no-libvirtd.sock\n"
        d = Daemon(run_dir, test_cgroup.unified_root, config, libvirt=libvirt)
        d.argv = [*wrap, *d.argv]
        qmp = BalloonQMP(d.qmp_path("web"), 4 * GiB, 2 * GiB)
        try:
            d.start()
            wait_until(lambda: d.saw(r"web: adopted"), 20, what="adoption")
            files = mapped_files(d.proc.pid)
        finally:
            status = d.stop()
            qmp.close()
        assert status == 0, d.log_tail()
        return d, {os.path.basename(f).split(".so")[0]: f for f in files}

    def libvirt_and_deps(libs):
        return {name for name in libs if name in ("libvirt", "libvirt-qemu", "libxml2", "libglib-2.0", "libgnutls")}

    _, libs = run(False)
    assert not libvirt_and_deps(libs), libs

    d, libs = run(True)
    assert {"libvirt", "libvirt-qemu", "libxml2"} <= libvirt_and_deps(libs), libs
    assert d.saw(r"No libvirt at qemu:///system\?socket="), d.log_tail()

    # The library as a package manager would leave it half removed: an empty file where it was.
    hide = ["unshare", "--mount", "--propagation=private", "sh", "-c", 'mount --bind /dev/null "$0" && exec "$@"',
            libs["libvirt"]]
    d, libs = run(True, hide)
    said = [line for line in d.lines if "Libvirt=yes, but libvirt.so.0 cannot be loaded" in line]
    assert len(said) == 1, d.log_tail()
    assert "libvirt domains are not managed" in said[0]
    assert not libvirt_and_deps(libs), libs

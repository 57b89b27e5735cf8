#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The lab scenario, run by lab-scenario.service inside L1 (Debian 12 with systemd 252 or Debian 13
with systemd 257, cgroup v2) after boot.

Phases, one L1 boot, two L2 guests restored from a saved state (l2.py):
  boot      systemd is PID 1, cgroup v2 with the memory controller, PSI, swap
  daemon    autoballoond.service active with a STATUS= line in `systemctl status`
  vms       guests a (weight 200) and b (weight 100) started with autoballoon-run, adopted
  pressure  a memory hog in hog.slice: one host-pressure round inflates both guests, split by
            weight and the idle tax, within 5 s of the host trigger; memory.high of their slices follows (through
            systemd); decisions in the journal with their AUTOBALLOON_* fields and MESSAGE_IDs
  giveback  the hog stopped, both guests get their memory back up to their boot size within
            GIVEBACK_BOUND, memory.high (MemoryHigh= of their slices) following, and stay there
  restart   `systemctl kill -s KILL autoballoond`: systemd restarts it, it re-adopts both guests
            and leaves every balloon and memory.high as it was
  reload    a MaxMemory= drop-in for a + `systemctl reload`: a is inflated to it
  weight    `autoballoonctl set-weight b 400 --runtime`, then host pressure again: b now keeps
            twice what a keeps above the floor when both guests' memory above it is idle, more when
            b uses some of it (the idle tax, from the idle memory the decisions name)
Debian 13 (trixie) only, before testtree:
  guestpressure  the 6.12 guest's stall/reclaim/OOM counters reach the daemon through QEMU 10.0's
            guest-stats: a allocates past its free memory, the daemon deflates it and names the
            counter in the reason
  libvirt   a libvirt domain (libvirtd + systemd-machined) with <partition>/balloon/web: placed in
            balloon-web.slice, adopted as web, inflated under host pressure, given memory back on
            guest pressure, MemoryHigh= following; `virsh setmem` noticed, memory.high following
  cli       what `systemctl status autoballoond`, `journalctl -u autoballoond AUTOBALLOON_VM=web`
            and `autoballoonctl status` print, as the README says
  testtree  the test harness' cgroup tree (ab.cgroup.TestCgroup) on a pure cgroup v2 host, as the
            demo uses it there: in a delegated scope, with memory.high in the VM slices, a
            memory limit, real PSI from a page-cache hog, and nothing left behind

Lines on stdout (ttyS1, followed by run.sh):
  LAB [  12s] text                            progress
  LAB-CHECK PASS|FAIL name: detail            one per assertion
  LAB-TIMING NAME=SECONDS ...                 seconds per phase
  LAB-RESULT PASS|FAIL passed=N failed=M ...  last line
"""

import json
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, "/usr/lib/autoballoon-lab")
import l2  # noqa: E402
from ab.agent import Agent  # noqa: E402
from ab.measure import psi  # noqa: E402
from ab.qmp import QMP  # noqa: E402

MIB = 1 << 20
OUT = Path("/var/lib/autoballoon-lab/out")
CGROUP = Path("/sys/fs/cgroup")
CONF_D = Path("/etc/autoballoon/autoballoon.conf.d")
UNIT = "autoballoond.service"
# Must match lab.conf.
WEIGHTS = {"a": 200, "b": 100}
MIN_MEMORY = 128 * MIB
OVERHEAD = 128 * MIB         # MemoryHighOverhead=
HIGH_SLACK = 1 * MIB         # the daemon does not rewrite memory.high for less
GUEST_MEM = l2.MEM_MIB * MIB
START = time.monotonic()
# From the hog's stop to both guests back at their entitlement (nested TCG): the refill's settle time
# and time since the last inflation, then its steps.
GIVEBACK_BOUND = 120
NO_STAT = (1 << 64) - 1      # what QEMU reports for a statistic the guest does not send


def os_release():
    pairs = (line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    return {k: v.strip('"') for k, v in pairs}


RELEASE = os_release().get("VERSION_CODENAME", "")
# What each release's L1 runs: systemd, QEMU (major, minor), the guest kernel (the release's cloud
# kernel, tests/guest-image/build.sh).
EXPECTED = {"bookworm": (252, (7, 2), "6.1."), "trixie": (257, (10, 0), "6.12.")}
# The libvirt domain of the trixie lab (phase libvirt), placed by libvirt in balloon-web.slice.
WEB = "web"
WEB_DIR = "/run/lab/libvirt"   # QEMU runs as libvirt-qemu: its sockets go where it may write
WEB_MIN = 128 * MIB
# The guest's 6.12 counters in QEMU's guest-stats (QEMU >= 9.2).
COUNTERS = ("stat-alloc-stalls", "stat-direct-reclaims", "stat-oom-kills", "stat-direct-scans")


# The daemon's host trigger (lab.conf: HostTriggerStallSec=, TriggerWindowSec=), armed again here
# to time the daemon's reaction from the outside.
TRIGGER = "some 100000 2000000"


class Abort(Exception):
    """A failed check that later phases depend on."""


def log(msg):
    line = f"LAB [{time.monotonic() - START:5.0f}s] {msg}"
    print(line, flush=True)
    with open(OUT / "scenario.log", "a") as f:
        f.write(line + "\n")


def run(*argv, check=False, timeout=60):
    """Runs a command; returns (returncode, stdout + stderr)."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
    except FileNotFoundError as e:
        return 127, str(e)
    except subprocess.TimeoutExpired:
        return 124, f"{argv[0]} timed out after {timeout}s"
    if check and p.returncode != 0:
        raise Abort(f"{' '.join(argv)} failed ({p.returncode}): {p.stdout.strip()[-500:]}")
    return p.returncode, p.stdout


def wait_for(fn, timeout, interval=1.0):
    """Calls fn() until it returns a true value (returned); None at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def unit_prop(unit, prop):
    return run("systemctl", "show", "-p", prop, "--value", unit)[1].strip()


def journal(*matches, unit=UNIT, invocation=None):
    """Entries of unit (and invocation) matching FIELD=VALUE, as dicts."""
    argv = ["journalctl", "--no-pager", "-o", "json", "-u", unit, *matches]
    if invocation:
        argv.append(f"_SYSTEMD_INVOCATION_ID={invocation}")
    rc, out = run(*argv)
    entries = []
    for line in out.splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return entries


def journal_since(entries, mono_usec):
    return [e for e in entries if int(e["__MONOTONIC_TIMESTAMP"]) >= mono_usec]


def monotonic_usec():
    return int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6)


def decisions(vm, action=None, since=0, invocation=None):
    matches = [f"AUTOBALLOON_VM={vm}"] + ([f"AUTOBALLOON_ACTION={action}"] if action else [])
    return journal_since(journal(*matches, invocation=invocation), since)


def messages(pattern, since=0, invocation=None):
    rx = re.compile(pattern)
    return [e for e in journal_since(journal(invocation=invocation), since)
            if isinstance(e.get("MESSAGE"), str) and rx.search(e["MESSAGE"])]


def slice_dir(vm):
    return CGROUP / "balloon.slice" / f"balloon-{vm}.slice"


def memory_high(vm):
    v = (slice_dir(vm) / "memory.high").read_text().strip()
    return None if v == "max" else int(v)


def web_xml():
    """The domain web: the lab's guest, cold-booted, in /balloon/web; a harness QMP monitor for the
    balloon's size as QEMU has it."""
    mib = l2.MEM_MIB
    return f"""<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{WEB}</name>
  <metadata>
    <autoballoon:vm xmlns:autoballoon="https://autoballoon.invalid/xmlns/domain/1">
      <autoballoon:weight>100</autoballoon:weight>
      <autoballoon:min-memory>{WEB_MIN // MIB}M</autoballoon:min-memory>
    </autoballoon:vm>
  </metadata>
  <memory unit='MiB'>{mib}</memory>
  <currentMemory unit='MiB'>{mib}</currentMemory>
  <vcpu>1</vcpu>
  <resource><partition>/balloon/{WEB}</partition></resource>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{l2.GUEST_DIR}/vmlinuz</kernel>
    <initrd>{l2.GUEST_DIR}/initrd.img</initrd>
    <cmdline>console=ttyS0 quiet panic=1</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{l2.QEMU}</emulator>
    <serial type='file'><source path='{WEB_DIR}/{WEB}.console'/><target port='0'/></serial>
    <console type='unix'><source mode='bind' path='{WEB_DIR}/{WEB}.ctl'/><target type='virtio' port='0'/></console>
    <controller type='usb' model='none'/>
    <memballoon model='virtio' freePageReporting='on'><stats period='2'/></memballoon>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-qmp'/><qemu:arg value='unix:{WEB_DIR}/{WEB}.hqmp,server=on,wait=off'/>
  </qemu:commandline>
</domain>
"""


def l2_kv(reply):
    """An agent's "ok K=V ..." answer as {K: int}."""
    return {k: int(v) for k, v in (w.split("=", 1) for w in reply.split()[1:] if "=" in w)}


def fmt(n):
    return "max" if n is None else f"{n / MIB:.1f}M"


def parse_size(text):
    """A size as the daemon formats it: "192M", "321.1M", "1.4G", "0B"."""
    m = re.fullmatch(r"([\d.]+)([BKMGT])", text)
    return float(m.group(1)) * 1024 ** "BKMGT".index(m.group(2))


def water_fill(decisions, weights):
    """What each VM keeps above the floor under weighted water-filling with the idle tax (the
    policy's policy_fill()), from the goal, size, weight, idle memory and tax rate each first host
    pressure decision's reason names; None when a reason does not name them."""
    items, goal = {}, None
    for vm, d in decisions.items():
        m = re.search(r"goal (\S+), share \S+ of (\S+) by weight (\d+), idle (\S+) taxed at ([\d.]+)",
                      d.get("AUTOBALLOON_REASON", "") if d else "")
        if not m:
            return None
        goal = parse_size(m.group(1))
        span = parse_size(m.group(2)) - MIN_MEMORY
        idle = min(parse_size(m.group(4)), span)
        items[vm] = (span, span - idle, int(m.group(3)), 1 - float(m.group(5)))

    def x(item, level):
        span, busy, weight, keep = item
        c = level * weight
        return c if c <= busy else min(span, busy + (c - busy) * keep)

    budget = sum(i[0] for i in items.values()) - goal
    lo, hi = 0.0, max(i[1] / i[2] + (i[0] - i[1]) / (i[2] * i[3]) for i in items.values()) + 1
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sum(x(i, mid) for i in items.values()) < budget else (lo, mid)
    return {vm: x(i, hi) for vm, i in items.items()}


class Lab:
    def __init__(self):
        self.results = []   # (ok, name, detail)
        self.qmp = {}
        self.invocation = None
        self.hog_running = False
        self.hog_stopped = None   # (monotonic seconds, usec) of the last hog_stop()
        self.web_t0 = None

    def check(self, name, ok, detail="", fatal=False):
        print(f"LAB-CHECK {'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
        with open(OUT / "scenario.log", "a") as f:
            f.write(f"CHECK {'PASS' if ok else 'FAIL'} {name}: {detail}\n")
        self.results.append((bool(ok), name, detail))
        if not ok and fatal:
            raise Abort(f"{name}: {detail}")
        return ok

    def actual(self, vm):
        return self.qmp[vm].execute("query-balloon")["actual"]

    # ------------------------------------------------------------------ phases

    def phase_boot(self):
        rc, out = run("systemctl", "--version")
        version = out.split("\n")[0]
        self.check("systemd is PID 1", Path("/proc/1/comm").read_text().strip() == "systemd",
                   f"{version}; PID 1 is {Path('/proc/1/comm').read_text().strip()}", fatal=True)
        fstype = run("stat", "-f", "-c", "%T", "/sys/fs/cgroup")[1].strip()
        controllers = (CGROUP / "cgroup.subtree_control").read_text().split()
        self.check("cgroup v2 with the memory controller", fstype == "cgroup2fs" and "memory" in controllers,
                   f"/sys/fs/cgroup is {fstype}, subtree_control: {' '.join(controllers)}", fatal=True)
        self.check("PSI", Path("/proc/pressure/memory").exists(),
                   Path("/proc/pressure/memory").read_text().split("\n")[0], fatal=True)
        swaps = Path("/proc/swaps").read_text().strip().split("\n")[1:]
        self.check("swap", bool(swaps), "; ".join(" ".join(s.split()[:3]) for s in swaps) or "none")
        want_systemd, want_qemu, want_guest = EXPECTED.get(RELEASE, (None, None, None))
        m = re.match(r"systemd (\d+)", version)
        qemu = run(l2.QEMU, "--version")[1].split("\n")[0]
        q = re.search(r"version (\d+)\.(\d+)", qemu)
        manifest = dict(line.split("=", 1) for line in
                        Path(l2.GUEST_DIR, "manifest").read_text().splitlines() if "=" in line)
        guest_kernel = manifest.get("kernel_release", "?")
        self.check(f"Debian {RELEASE}: systemd {want_systemd}, QEMU {want_qemu}, guest kernel {want_guest}x",
                   m and int(m.group(1)) == want_systemd and q and (int(q.group(1)), int(q.group(2))) == want_qemu
                   and guest_kernel.startswith(want_guest or "?"),
                   f"{version}; {qemu}; L1 kernel {os.uname().release}; L2 kernel {guest_kernel}", fatal=True)
        mem = {k: int(v.split()[0]) * 1024 for k, v in
               (line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())}
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        log(f"L1: MemTotal {fmt(mem['MemTotal'])}, MemAvailable {fmt(mem['MemAvailable'])}; "
            f"the scenario started {uptime:.1f} s after the kernel")

    def phase_daemon(self):
        path, enabled = unit_prop(UNIT, "FragmentPath"), run("systemctl", "is-enabled", UNIT)[1].strip()
        self.check("autoballoond.service installed by meson and enabled",
                   path.endswith("/lib/systemd/system/autoballoond.service") and enabled == "enabled",
                   f"{path}: {enabled}")
        state = wait_for(lambda: unit_prop(UNIT, "ActiveState") == "active", 60)
        self.check("autoballoond.service active", state,
                   f"ActiveState={unit_prop(UNIT, 'ActiveState')} SubState={unit_prop(UNIT, 'SubState')}",
                   fatal=True)
        self.invocation = unit_prop(UNIT, "InvocationID")
        # slices/meson.build: Type=notify-reload from systemd 253 on.
        systemd = int(re.match(r"systemd (\d+)", run("systemctl", "--version")[1]).group(1))
        self.unit_type = unit_prop(UNIT, "Type")
        want = "notify-reload" if systemd >= 253 else "notify"
        self.check(f"systemd {systemd}: autoballoond.service is Type={want}", self.unit_type == want,
                   f"Type={self.unit_type}, ExecReload={unit_prop(UNIT, 'ExecReload') or '(none)'}")
        rc, status = run("systemctl", "status", "--no-pager", "--lines=0", UNIT)
        line = next((s.strip() for s in status.splitlines() if s.strip().startswith("Status:")), "")
        self.check("systemctl status shows the STATUS= line", line, line or status[-300:])

    def phase_vms(self):
        os.makedirs(l2.RUN_DIR, exist_ok=True)
        t0 = time.monotonic()
        for vm, weight in WEIGHTS.items():
            rc, out = run("autoballoon-run", vm, "--weight", str(weight), "--min", f"{MIN_MEMORY // MIB}M",
                          "--", l2.QEMU, *l2.qemu_args(vm))
            self.check(f"{vm} started with autoballoon-run --weight {weight}", rc == 0, out.strip()[-300:],
                       fatal=True)
        for vm in WEIGHTS:
            service = f"autoballoon-vm-{vm}.service"
            pid = unit_prop(service, "MainPID")
            agent = l2.agent(vm, lambda: os.path.exists(f"/proc/{pid}"))
            try:
                agent.wait_ready(180)
                ok, detail = True, f"ready {time.monotonic() - t0:.0f} s after the start (restored)"
            except (TimeoutError, RuntimeError, OSError) as e:
                _, status = run("systemctl", "status", "--no-pager", "--lines=5", service)
                ok, detail = False, f"{e}; {status.strip()[-600:]}; console: {self.console_tail(vm)}"
            finally:
                agent.close()
            self.check(f"{vm} restored and its agent answers", ok, detail, fatal=True)
            self.qmp[vm] = QMP(f"{l2.RUN_DIR}/{vm}.hqmp")
            cg = unit_prop(service, "ControlGroup")
            self.check(f"{vm} runs in balloon-{vm}.slice", cg == f"/balloon.slice/balloon-{vm}.slice/{service}", cg)
        for vm in WEIGHTS:
            adopted = wait_for(lambda: messages(rf"^{vm}: adopted", invocation=self.invocation), 60)
            self.check(f"{vm} adopted", adopted, adopted[0]["MESSAGE"] if adopted else
                       f"no '{vm}: adopted' in the journal of {UNIT}", fatal=True)
        # The first decision after adoption makes memory.high follow the balloon.
        for vm in WEIGHTS:
            ok = wait_for(lambda: self.high_follows(vm), 30)
            self.check(f"{vm} memory.high follows its balloon after adoption", ok,
                       f"memory.high {fmt(memory_high(vm))}, balloon {fmt(self.actual(vm))}")
            self.check_high_through_systemd(vm)
        line = unit_prop(UNIT, "StatusText")
        log(f"daemon status: {line}")

    def check_high_through_systemd(self, vm, label=""):
        """systemd owns the slice's memory.high: its MemoryHigh= says what the file says."""
        high = memory_high(vm)
        prop = unit_prop(f"balloon-{vm}.slice", "MemoryHigh")
        self.check(f"{label}{vm} memory.high set through systemd", high is not None and prop == str(high),
                   f"systemctl show -p MemoryHigh balloon-{vm}.slice: {prop}, memory.high: {high}")

    def high_follows(self, vm):
        high, actual = memory_high(vm), self.actual(vm)
        return high is not None and actual + OVERHEAD <= high <= actual + OVERHEAD + HIGH_SLACK

    def console_tail(self, vm):
        try:
            return Path(l2.RUN_DIR, f"{vm}.console").read_text(errors="replace")[-400:]
        except OSError as e:
            return str(e)

    def hog_start(self):
        """A hog thrashing anonymous memory (MemAvailable + 256M, swap takes the rest) in hog.slice."""
        avail = int(re.search(r"MemAvailable:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) * 1024
        size = avail + 256 * MIB
        code = ("import mmap,sys\n"
                "n=int(sys.argv[1]); m=mmap.mmap(-1,n)\n"
                "while True:\n"
                "    for o in range(0,n,4096): m[o]=1\n")
        rc, out = run("systemd-run", "--unit=lab-hog", "--slice=hog.slice", "--collect",
                      "/usr/bin/python3", "-c", code, str(size), check=True)
        self.hog_running = True
        log(f"hog started in hog.slice: {fmt(size)} (MemAvailable {fmt(avail)} + 256M)")

    def hog_stop(self):
        if self.hog_running:
            run("systemctl", "stop", "lab-hog.service")
            self.hog_running = False
            self.hog_stopped = (time.monotonic(), monotonic_usec())

    def wait_calm(self, avg10=1.0, timeout=90):
        """Waits until the host's memory pressure fell (so no stray trigger decides anew)."""
        ok = wait_for(lambda: psi("/proc/pressure/memory")["some"]["avg10"] < avg10, timeout, 2)
        log(f"host memory pressure: {Path('/proc/pressure/memory').read_text().splitlines()[0]}")
        return ok

    @staticmethod
    def watch_trigger():
        """Arms TRIGGER on /proc/pressure/memory; returns (thread, result) where result["usec"] is
        the CLOCK_MONOTONIC time it first fired."""
        result = {}
        fd = os.open("/proc/pressure/memory", os.O_RDWR | os.O_NONBLOCK)
        os.write(fd, TRIGGER.encode() + b"\0")

        def wait():
            p = select.poll()
            p.register(fd, select.POLLPRI)
            try:
                if p.poll(300 * 1000):
                    result["usec"] = monotonic_usec()
            finally:
                os.close(fd)
        t = threading.Thread(target=wait, daemon=True)
        t.start()
        return t, result

    @staticmethod
    def guest_figures(vm):
        """What the policy's idle estimate is made of, from `autoballoonctl explain --json`."""
        rc, out = run("autoballoonctl", "explain", vm, "--json")
        try:
            snap = json.loads(out)["snapshot"]
        except (json.JSONDecodeError, KeyError):
            return f"explain: rc {rc}: {out.strip()[-200:]}"
        keys = ("actual", "guest_available", "guest_free", "guest_free_recent", "guest_growth")
        return ", ".join(f"{k} {fmt(snap[k + '_bytes'])}" for k in keys if k + "_bytes" in snap)

    def pressure_round(self, name, weights):
        """Host pressure until every VM was inflated once; checks the split against weights.
        Returns the first decision of each VM."""
        since = monotonic_usec()
        t0 = time.monotonic()
        before = {vm: self.actual(vm) for vm in weights}
        for vm in weights:
            log(f"{name}: {vm} before the hog: {self.guest_figures(vm)}")
        _, fired = self.watch_trigger()
        self.hog_start()
        try:
            got = wait_for(lambda: all(decisions(vm, "inflate", since) for vm in weights), 180, 2)
            elapsed = time.monotonic() - t0
        finally:
            self.hog_stop()
        first = {vm: (decisions(vm, "inflate", since) or [None])[0] for vm in weights}
        self.check(f"{name}: host pressure inflates every guest", got,
                   f"{elapsed:.0f} s from the hog's start to the last first decision; " +
                   "; ".join(f"{vm}: {d['MESSAGE'] if d else 'no inflate decision'}" for vm, d in first.items()),
                   fatal=True)
        targets = {vm: int(d["AUTOBALLOON_TARGET"]) for vm, d in first.items()}
        kept = {vm: targets[vm] - MIN_MEMORY for vm in weights}
        heavy, light = sorted(weights, key=weights.get, reverse=True)
        ratio = kept[heavy] / kept[light] if kept[light] > 0 else float("inf")
        # By weight alone when both guests' memory above the floor is idle; a guest using some of it
        # keeps more (the idle tax), from the idle memory its decision's reason names.
        fill = water_fill(first, weights)
        want = fill[heavy] / fill[light] if fill and fill[light] > 0 else weights[heavy] / weights[light]
        capped = [vm for vm, d in first.items() if "capped" in d.get("AUTOBALLOON_REASON", "")]
        self.check(f"{name}: split by weight and idle tax", not capped and fill is not None and
                   abs(ratio - want) <= 0.1 * want,
                   f"kept above the floor: {heavy} (weight {weights[heavy]}) {fmt(kept[heavy])}, "
                   f"{light} (weight {weights[light]}) {fmt(kept[light])}: {ratio:.2f}x, want {want:.2f}x "
                   f"(by weight alone {weights[heavy] / weights[light]:.2f}x)"
                   + ("" if fill else "; reasons without their figures") + (f"; capped: {capped}" if capped else ""))

        # The balloons reach the last targets asked (more rounds may have come before the hog stopped).
        last = {vm: int(decisions(vm, "inflate", since)[-1]["AUTOBALLOON_TARGET"]) for vm in weights}
        reached = wait_for(lambda: all(abs(self.actual(vm) - last[vm]) <= MIB for vm in weights), 90)
        self.check(f"{name}: balloons reach their targets", reached,
                   ", ".join(f"{vm} {fmt(before[vm])} -> {fmt(self.actual(vm))} (target {fmt(last[vm])})"
                             for vm in weights) + f", {time.monotonic() - t0:.0f} s after the hog's start")
        for vm in weights:
            ok = wait_for(lambda: self.high_follows(vm), 30)
            self.check(f"{name}: {vm} memory.high follows the balloon", ok,
                       f"memory.high {fmt(memory_high(vm))}, balloon {fmt(self.actual(vm))} + overhead "
                       f"{fmt(OVERHEAD)}")
            self.check_high_through_systemd(vm, f"{name}: ")

        # The reaction, from journal receive times: trigger -> decision -> memory.high.
        decided = min(int(d["__MONOTONIC_TIMESTAMP"]) for d in first.values())
        highs = [int(e["__MONOTONIC_TIMESTAMP"]) for vm in weights for e in decisions(vm, "set-high", since)]
        if "usec" in fired:
            lag = (decided - fired["usec"]) / 1e6
            self.check(f"{name}: the daemon decides within 5 s of the host trigger", lag < 5,
                       f"trigger -> first inflate decision {lag * 1000:.0f} ms (negative: the daemon's "
                       "own trigger window filled first)")
        else:
            self.check(f"{name}: the host trigger fired", False, f"{TRIGGER} on /proc/pressure/memory")
        if highs:
            log(f"{name}: inflate decision -> memory.high set (after the balloons moved) "
                f"{(min(highs) - decided) / 1e6:.1f} s")
        return first

    def phase_pressure(self):
        first = self.pressure_round("pressure", WEIGHTS)
        # The journal: one VM's history by field, with the fields the issue names.
        entries = journal("AUTOBALLOON_VM=a")
        fields = ("AUTOBALLOON_VM", "AUTOBALLOON_ACTION", "AUTOBALLOON_BYTES", "AUTOBALLOON_REASON")
        only_a = all(e.get("AUTOBALLOON_VM") == "a" for e in entries)
        complete = all(all(f in e for f in fields) for e in entries)
        self.check("journalctl -u autoballoond AUTOBALLOON_VM=a shows a's decisions",
                   entries and only_a and complete and first["a"]["MESSAGE"] in [e["MESSAGE"] for e in entries],
                   f"{len(entries)} entries; e.g. " + " ".join(f"{f}={first['a'].get(f)}" for f in fields))
        ids = {e.get("AUTOBALLOON_ACTION"): e.get("MESSAGE_ID") for e in entries}
        self.check("decisions carry a MESSAGE_ID per kind", all(ids.values()) and
                   len(set(ids.values())) == len(ids),
                   ", ".join(f"{a}: {i}" for a, i in ids.items()))
        self.wait_calm()

    def phase_giveback(self):
        """Phase pressure's hog stopped: the host has room again, and both guests get their memory
        back, up to their entitlement: their boot size (MaxMemory=), L1 having more available than
        that. memory.high is raised with them (through systemd), and they stay there."""
        stopped, stopped_usec = self.hog_stopped
        squeezed = {vm: int(decisions(vm, "inflate")[-1]["AUTOBALLOON_TARGET"]) for vm in WEIGHTS}
        back = {}

        def all_back():
            for vm in WEIGHTS:
                if vm not in back and self.actual(vm) == GUEST_MEM:
                    back[vm] = time.monotonic() - stopped
            return len(back) == len(WEIGHTS)
        ok = wait_for(all_back, max(0, stopped + GIVEBACK_BOUND - time.monotonic()), 1)
        avail = int(re.search(r"MemAvailable:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) * 1024
        self.check(f"giveback: both guests back at {fmt(GUEST_MEM)} within {GIVEBACK_BOUND} s of the hog's stop", ok,
                   ", ".join(f"{vm} {fmt(squeezed[vm])} -> {fmt(self.actual(vm))}"
                             + (f" in {back[vm]:.0f} s" if vm in back else "") for vm in WEIGHTS)
                   + f"; L1 MemAvailable {fmt(avail)}", fatal=True)
        for vm in WEIGHTS:
            gave = decisions(vm, "deflate", stopped_usec)
            self.check(f"giveback: {vm} deflated because the host has room, not for guest pressure",
                       gave and not any("guest pressure" in d.get("AUTOBALLOON_REASON", "") for d in gave),
                       "; ".join(d["MESSAGE"] for d in gave) or "no deflate decision")
            ok = wait_for(lambda: self.high_follows(vm), 30)
            self.check(f"giveback: {vm} memory.high follows", ok,
                       f"memory.high {fmt(memory_high(vm))}, balloon {fmt(self.actual(vm))}")
            self.check_high_through_systemd(vm, "giveback: ")
        since = monotonic_usec()
        time.sleep(6)    # three statistics ticks (lab.conf)
        moved = [e["MESSAGE"] for vm in WEIGHTS for e in decisions(vm, "inflate", since)]
        self.check("giveback: both stay there", not moved and all(self.actual(vm) == GUEST_MEM for vm in WEIGHTS),
                   ", ".join(f"{vm} {fmt(self.actual(vm))}" for vm in WEIGHTS) + (f"; {moved}" if moved else ""))

    def phase_restart(self):
        before = {vm: (self.actual(vm), memory_high(vm)) for vm in WEIGHTS}
        pid, nrestarts = unit_prop(UNIT, "MainPID"), int(unit_prop(UNIT, "NRestarts") or 0)
        since = monotonic_usec()
        t0 = time.monotonic()
        run("systemctl", "kill", "-s", "KILL", UNIT, check=True)
        restarted = wait_for(lambda: unit_prop(UNIT, "InvocationID") not in ("", self.invocation) and
                             unit_prop(UNIT, "ActiveState") == "active", 60, 0.5)
        new_inv = unit_prop(UNIT, "InvocationID")
        self.check("systemd restarts autoballoond after SIGKILL", restarted and
                   int(unit_prop(UNIT, "NRestarts")) == nrestarts + 1,
                   f"PID {pid} -> {unit_prop(UNIT, 'MainPID')}, NRestarts {nrestarts} -> "
                   f"{unit_prop(UNIT, 'NRestarts')}, active again after {time.monotonic() - t0:.1f} s",
                   fatal=True)
        self.invocation = new_inv
        for vm in WEIGHTS:
            adopted = wait_for(lambda: messages(rf"^{vm}: adopted", since, new_inv), 60)
            self.check(f"{vm} re-adopted after the restart", adopted,
                       adopted[0]["MESSAGE"] if adopted else "not adopted", fatal=True)
        log(f"re-adopted {time.monotonic() - t0:.1f} s after the kill; watching balloons and memory.high "
            "for 3 ticks")
        time.sleep(6)
        after = {vm: (self.actual(vm), memory_high(vm)) for vm in WEIGHTS}
        for vm in WEIGHTS:
            changes = [e["MESSAGE"] for e in decisions(vm, since=since, invocation=new_inv)]
            self.check(f"{vm} balloon and memory.high unchanged by the restart", after[vm] == before[vm],
                       f"balloon {fmt(before[vm][0])} -> {fmt(after[vm][0])}, memory.high "
                       f"{fmt(before[vm][1])} -> {fmt(after[vm][1])}" +
                       (f"; decisions since: {changes}" if changes else ""))

    def phase_reload(self):
        pid = unit_prop(UNIT, "MainPID")
        b_before = self.actual("b")
        max_a = (self.actual("a") - 64 * MIB) // MIB * MIB
        CONF_D.mkdir(parents=True, exist_ok=True)
        (CONF_D / "60-lab-reload.conf").write_text(f"[VM a]\nMaxMemory={max_a // MIB}M\n")
        since = monotonic_usec()
        t0 = time.monotonic()
        run("systemctl", "reload", UNIT, check=True)
        if self.unit_type == "notify-reload":
            # systemctl reload returned after the daemon's READY=1: the reload is done, not just asked.
            done = messages(r"[Rr]eloaded", since, self.invocation)
            self.check("Type=notify-reload: systemctl reload returns once the configuration is reloaded", done,
                       f"{time.monotonic() - t0:.2f} s; " +
                       (done[0]["MESSAGE"] if done else "no 'reloaded' message yet when systemctl reload returned"))
        reloaded = wait_for(lambda: messages(r"[Rr]eloaded", since, self.invocation), 30)
        self.check("systemctl reload reloads the configuration", reloaded and unit_prop(UNIT, "MainPID") == pid,
                   (reloaded[0]["MESSAGE"] if reloaded else "no 'reloaded' message") +
                   f"; MainPID {pid} -> {unit_prop(UNIT, 'MainPID')}")
        ok = wait_for(lambda: self.actual("a") == max_a, 60)
        d = decisions("a", "inflate", since)
        self.check("reload: a inflated to its new MaxMemory=", ok,
                   f"balloon {fmt(self.actual('a'))}, MaxMemory {fmt(max_a)}, {time.monotonic() - t0:.0f} s; "
                   f"decision: {d[0]['MESSAGE'] if d else 'none'}")
        ok = wait_for(lambda: self.high_follows("a"), 30)
        self.check("reload: a's memory.high follows", ok, f"memory.high {fmt(memory_high('a'))}")
        self.check_high_through_systemd("a", "reload: ")
        self.check("reload: b untouched", self.actual("b") == b_before,
                   f"b {fmt(b_before)} -> {fmt(self.actual('b'))}")

    def phase_weight(self):
        ctl = shutil.which("autoballoonctl")
        rc, out = run(ctl, "set-weight", "b", "400", "--runtime") if ctl else (127, "not installed")
        self.check("autoballoonctl set-weight b 400 --runtime", rc == 0, out.strip()[-300:], fatal=True)
        rc, out = run(ctl, "status", "--json")
        try:
            status = json.dumps(json.loads(out))
            ok = all(f'"{vm}"' in status for vm in WEIGHTS)
        except json.JSONDecodeError:
            ok, status = False, out
        self.check("autoballoonctl status --json lists both VMs", ok, status[-300:])
        # Past ReclaimSettleSec= since the first round: this round sets a new goal.
        self.pressure_round("weight", {"a": 200, "b": 400})

    # ------------------------------------------------------------------ Debian 13 only

    def guest_stats(self, vm):
        return self.qmp[vm].execute("qom-get", {"path": "/machine/peripheral/balloon0",
                                                "property": "guest-stats"})["stats"]

    @staticmethod
    def agent(vm):
        agent = l2.agent(vm, lambda: True)
        agent.wait_ready(30)
        return agent

    def guest_pressure_deflate(self, vm, since, timeout=180):
        """Waits for a deflate of vm for guest pressure since; returns its journal entry or None."""
        found = wait_for(lambda: [d for d in decisions(vm, "deflate", since)
                                  if "guest pressure" in d.get("AUTOBALLOON_REASON", "")], timeout, 2)
        return found[0] if found else None

    def phase_guestpressure(self):
        self.web_start()   # boots meanwhile (~2.5 min of nested TCG); phase libvirt waits for it
        vm = "a"
        stats = self.guest_stats(vm)
        sent = {k: stats.get(k) for k in COUNTERS}
        self.check("the 6.12 guest's stall/reclaim/OOM counters come through QEMU's guest-stats",
                   all(v is not None and v != NO_STAT for v in sent.values()),
                   ", ".join(f"{k}={v}" for k, v in sent.items()))
        # Only the counters may call this guest pressure: GuestMinAvailable=0 turns the available
        # memory signal off, which under nested TCG (a few MiB/s touched) would see the allocation
        # coming and deflate before the guest ever stalls.
        drop_in = CONF_D / "61-lab-counters.conf"
        drop_in.write_text("[Daemon]\nGuestMinAvailable=0\n")
        run("systemctl", "reload", UNIT, check=True)
        agent = self.agent(vm)
        try:
            # a is inflated near its floor by now: 32 MiB more than it has free goes past its free
            # memory: direct reclaim, stalls, then the OOM killer.
            free = l2_kv(agent.cmd("meminfo"))["MemFree"] * 1024
            size = free // MIB + 32
            before = self.guest_stats(vm)
            since = monotonic_usec()
            t0 = time.monotonic()
            log(f"{vm}: balloon {fmt(self.actual(vm))}, {fmt(free)} free, allocating {size}M in the guest")
            agent.cmd("thp always")   # one fault per 2 MiB: filling is several times faster here
            reply = agent.cmd(f"alloc p {size}", timeout=240)
            deflate = self.guest_pressure_deflate(vm, since, 60)
            after = self.guest_stats(vm)
            delta = {k: after[k] - before[k] for k in COUNTERS if after.get(k, NO_STAT) != NO_STAT}
            log(f"{vm}: alloc: {reply} after {time.monotonic() - t0:.0f} s; counters' increase in QEMU: {delta}")
            reason = deflate.get("AUTOBALLOON_REASON", "") if deflate else ""
            self.check("6.12 counters: the guest stalled and the daemon deflated it, naming the counter",
                       deflate and re.search(r"\d+ (allocation stalls|direct reclaims)", reason),
                       (f"{deflate['MESSAGE']}; " if deflate else "no deflate for guest pressure; ") +
                       "in QEMU: " + ", ".join(f"{k} +{v}" for k, v in delta.items()))
            agent.cmd("free p")
        finally:
            agent.close()
            drop_in.unlink()
            run("systemctl", "reload", UNIT)

    def web_start(self):
        """Defines and starts the libvirt domain web, placed in /balloon/web (balloon-web.slice)."""
        os.makedirs(WEB_DIR, mode=0o777, exist_ok=True)
        os.chmod(WEB_DIR, 0o777)   # QEMU runs as libvirt-qemu
        path = Path(WEB_DIR, f"{WEB}.xml")
        path.write_text(web_xml())
        self.web_t0 = time.monotonic()
        run("virsh", "define", str(path), check=True, timeout=120)
        rc, out = run("virsh", "start", WEB, timeout=120)
        self.check(f"virsh start {WEB} (libvirt {self.libvirt_version()})", rc == 0, out.strip()[-300:], fatal=True)
        log(f"{WEB} started by libvirt in {time.monotonic() - self.web_t0:.1f} s; it boots cold (no saved state "
            "for libvirt's command line)")

    @staticmethod
    def libvirt_version():
        return run("virsh", "--version")[1].strip()

    def phase_libvirt(self):
        pid = Path(f"/run/libvirt/qemu/{WEB}.pid").read_text().strip()
        cg = Path(f"/proc/{pid}/cgroup").read_text().strip()
        self.check(f"libvirt + machined put {WEB}'s QEMU in balloon-{WEB}.slice",
                   f"/balloon.slice/balloon-{WEB}.slice/" in cg, f"QEMU {pid}: {cg}", fatal=True)
        adopted = wait_for(lambda: messages(rf"^{WEB}: adopted", invocation=self.invocation), 60)
        self.check(f"{WEB} adopted from libvirt", adopted,
                   adopted[0]["MESSAGE"] if adopted else f"no '{WEB}: adopted'", fatal=True)
        def check_alive():
            if not os.path.exists(f"/proc/{pid}"):
                raise RuntimeError(f"{WEB}: QEMU exited")
        agent = Agent(f"{WEB_DIR}/{WEB}.ctl", WEB, check_alive)
        try:
            agent.wait_ready(420)
            ok, detail = True, f"booted {time.monotonic() - self.web_t0:.0f} s after virsh start"
        except (TimeoutError, RuntimeError, OSError) as e:
            ok, detail = False, f"{e}; console: {Path(WEB_DIR, WEB + '.console').read_text(errors='replace')[-400:]}"
        self.check(f"{WEB} booted and its agent answers", ok, detail, fatal=True)
        self.qmp[WEB] = QMP(f"{WEB_DIR}/{WEB}.hqmp")
        ok = wait_for(lambda: self.high_follows(WEB), 60)
        self.check(f"{WEB} memory.high follows its balloon after adoption", ok,
                   f"memory.high {fmt(memory_high(WEB))}, balloon {fmt(self.actual(WEB))}")
        self.check_high_through_systemd(WEB)
        self.wait_calm()

        # Host pressure: web is inflated with the others.
        since = monotonic_usec()
        t0 = time.monotonic()
        self.hog_start()
        try:
            got = wait_for(lambda: decisions(WEB, "inflate", since), 180, 2)
        finally:
            self.hog_stop()
        self.check(f"host pressure inflates {WEB}", got,
                   f"{got[0]['MESSAGE']}, {time.monotonic() - t0:.0f} s after the hog's start" if got else
                   "no inflate decision in 180 s", fatal=True)
        target = int(decisions(WEB, "inflate", since)[-1]["AUTOBALLOON_TARGET"])
        reached = wait_for(lambda: abs(self.actual(WEB) - target) <= MIB, 90)
        self.check(f"{WEB}'s balloon reaches its target", reached,
                   f"balloon {fmt(self.actual(WEB))}, target {fmt(target)}")
        ok = wait_for(lambda: self.high_follows(WEB), 30)
        self.check(f"{WEB} memory.high follows the inflation", ok,
                   f"memory.high {fmt(memory_high(WEB))}, balloon {fmt(self.actual(WEB))}")
        self.check_high_through_systemd(WEB, "inflated: ")
        self.wait_calm()

        # An operator's virsh setmem giving web memory back: the daemon adopts the new size (a move it
        # did not ask for is adopted only when it deflates), memory.high follows at once.
        since = monotonic_usec()
        setmem = self.actual(WEB) // MIB + 48
        rc, out = run("virsh", "setmem", WEB, f"{setmem}M", "--live")
        noticed = wait_for(lambda: messages(rf"^{WEB}: balloon deflated to {setmem}M", since, self.invocation), 30)
        self.check(f"virsh setmem {WEB} {setmem}M noticed", rc == 0 and noticed,
                   noticed[-1]["MESSAGE"] if noticed else f"virsh: {out.strip()}; no 'balloon deflated' message")
        ok = wait_for(lambda: abs(self.actual(WEB) - setmem * MIB) <= MIB and self.high_follows(WEB), 30)
        self.check(f"after virsh setmem, {WEB}'s memory.high follows", ok,
                   f"balloon {fmt(self.actual(WEB))}, memory.high {fmt(memory_high(WEB))}")
        self.check_high_through_systemd(WEB, "setmem: ")

        # Guest pressure: an allocation past what web has left.
        try:
            free = l2_kv(agent.cmd("meminfo"))["MemAvailable"] * 1024
            size = free // MIB + 16
            since = monotonic_usec()
            t0 = time.monotonic()
            low = self.actual(WEB)
            agent.cmd("thp always")
            reply = agent.cmd(f"alloc p {size}", timeout=240)
            deflate = self.guest_pressure_deflate(WEB, since, 60)
            grown = wait_for(lambda: self.actual(WEB) > low, 30)
            self.check(f"guest pressure in {WEB} gives it memory back", deflate and grown,
                       (deflate["MESSAGE"] if deflate else "no deflate for guest pressure") +
                       f"; alloc {size}M: {reply}; balloon {fmt(low)} -> {fmt(self.actual(WEB))}, "
                       f"{time.monotonic() - t0:.0f} s")
            ok = wait_for(lambda: self.high_follows(WEB), 30)
            self.check(f"{WEB} memory.high follows the deflation", ok,
                       f"memory.high {fmt(memory_high(WEB))}, balloon {fmt(self.actual(WEB))}")
            self.check_high_through_systemd(WEB, "deflated: ")
            agent.cmd("free p")
        finally:
            agent.close()

    def phase_cli(self):
        rc, out = run("systemctl", "status", "--no-pager", "--lines=0", UNIT)
        status = next((s.strip() for s in out.splitlines() if s.strip().startswith("Status:")), "")
        vms = re.search(r"(\d+) of (\d+) VMs managed", status)
        self.check("systemctl status autoballoond: loaded, enabled, running, a Status: line with the VMs",
                   re.search(r"Loaded: loaded \(/usr/lib/systemd/system/autoballoond.service; enabled", out)
                   and "Active: active (running)" in out and vms and vms.group(1) == vms.group(2) == "3"
                   and "last decision:" in status, " | ".join(s.strip() for s in out.splitlines()[:4]) +
                   f" | {status}")
        rc, out = run("journalctl", "--no-pager", "-u", UNIT, f"AUTOBALLOON_VM={WEB}")
        lines = [s for s in out.splitlines() if not s.startswith("--")]
        actions = {a for a in ("inflate", "deflate") if any(f"{WEB}: {a}" in s for s in lines)}
        self.check(f"journalctl -u autoballoond AUTOBALLOON_VM={WEB}: only {WEB}'s lines, its inflation and "
                   "its deflation", lines and all(f"{WEB}:" in s for s in lines) and actions == {"inflate", "deflate"},
                   f"{len(lines)} lines, e.g. {lines[-1] if lines else out[-200:]}")
        rc, out = run("autoballoonctl", "status")
        rows = {s.split()[0]: s.split() for s in out.splitlines() if s.split() and s.split()[0] in (*WEIGHTS, WEB)}
        rc, js = run("autoballoonctl", "status", "--json")
        try:
            web = next(v for v in json.loads(js)["vms"] if v["name"] == WEB)
        except (json.JSONDecodeError, KeyError, StopIteration):
            web = {}
        self.check("autoballoonctl status: a row per VM and their last decisions, web's memory.high as in its "
                   "cgroup", rc == 0 and set(rows) == {*WEIGHTS, WEB} and out.splitlines()[0].startswith("autoballoond ")
                   and re.search(rf"^{WEB}: [\w-]+: ", out, re.M) and web.get("memory_high_bytes") == memory_high(WEB),
                   " | ".join(out.splitlines()[:1] + [" ".join(r) for r in rows.values()]))

    def phase_testtree(self):
        code = ("import json, sys\n"
                "sys.path.insert(0, '/usr/lib/autoballoon-lab')\n"
                "from ab.cgroup import TestCgroup\n"
                "from ab.hog import PageCacheHog\n"
                "from ab.util import MiB, wait_until\n"
                "cg = TestCgroup()\n"
                "try:\n"
                "    vm = cg.unified('balloon.slice/balloon-t.slice')\n"
                "    res = {'v2_only': cg.v2_only, 'slice_high': (vm / 'memory.high').read_text().strip()}\n"
                "    cg.set_limit(cg.usage() + 16 * MiB)\n"
                "    before = cg.pressure()['some']['total']\n"
                "    with PageCacheHog(64, cg.procs_paths('hog')):\n"
                "        res['stalled'] = wait_until(\n"
                "            lambda: cg.pressure()['some']['total'] > before + 100000, 60, 0.5, 'PSI')\n"
                "    roots = list(cg.roots)\n"
                "finally:\n"
                "    cg.cleanup()\n"
                "res['left'] = [str(d) for d in roots if d.exists()]\n"
                "print(json.dumps(res))\n")
        rc, out = run("systemd-run", "--scope", "--quiet", "--collect", "-p", "Delegate=yes",
                      "/usr/bin/python3", "-c", code,
                      timeout=120)
        try:
            res = json.loads(out.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            res = {}
        self.check("test tree on cgroup v2: delegated, memory.high in the VM slice, PSI, cleaned up",
                   rc == 0 and res.get("v2_only") and res.get("slice_high") == "max" and res.get("stalled")
                   and res.get("left") == [], out.strip()[-400:])

    # ------------------------------------------------------------------ driver

    def collect(self):
        """Logs for the host (read back from the image with debugfs)."""
        run("sh", "-c", f"journalctl -b --no-pager -o short-monotonic > {OUT}/journal.txt")
        run("sh", "-c", f"journalctl -u {UNIT} --no-pager -o verbose > {OUT}/autoballoond.verbose")
        for path in [f"{l2.RUN_DIR}/{vm}.console" for vm in WEIGHTS] + [f"{WEB_DIR}/{WEB}.console"]:
            try:
                shutil.copy(path, OUT)
            except OSError:
                pass

    def main(self):
        phases = [("boot", self.phase_boot), ("daemon", self.phase_daemon), ("vms", self.phase_vms),
                  ("pressure", self.phase_pressure), ("giveback", self.phase_giveback),
                  ("restart", self.phase_restart),
                  ("reload", self.phase_reload), ("weight", self.phase_weight)]
        if RELEASE == "trixie":
            phases += [("guestpressure", self.phase_guestpressure), ("libvirt", self.phase_libvirt),
                       ("cli", self.phase_cli)]
        phases += [("testtree", self.phase_testtree)]
        aborted = None
        timing = []
        for i, (name, fn) in enumerate(phases):
            log(f"phase {name}")
            t0 = time.monotonic()
            try:
                fn()
            except Abort as e:
                aborted = f"phase {name} aborted: {e}"
            except Exception as e:  # noqa: BLE001  a bug or a broken world: report, do not hang
                self.check(f"phase {name} ran", False, f"{type(e).__name__}: {e}")
                log(traceback.format_exc())
                aborted = f"phase {name} raised {type(e).__name__}"
            finally:
                self.hog_stop()
                timing.append(f"{name}={time.monotonic() - t0:.0f}")
                log(f"phase {name} took {time.monotonic() - t0:.1f} s")
            if aborted:
                rest = [n for n, _ in phases[i + 1:]]
                if rest:
                    self.check("phases not run", False, f"{aborted}; not run: {', '.join(rest)}")
                break
        self.collect()
        failed = [r for r in self.results if not r[0]]
        summary = (f"passed={len(self.results) - len(failed)} failed={len(failed)} "
                   f"seconds={time.monotonic() - START:.0f}")
        for vm in WEIGHTS:
            run("systemctl", "stop", f"balloon-{vm}.slice")
        if RELEASE == "trixie":
            run("virsh", "destroy", WEB)
        print(f"LAB-TIMING {' '.join(timing)}", flush=True)
        print(f"LAB-RESULT {'FAIL' if failed else 'PASS'} {summary}", flush=True)
        return 1 if failed else 0


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    sys.exit(Lab().main())

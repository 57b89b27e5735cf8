#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The overcommit benchmark inside L1 (lab-scenario.service runs it; tests/bench/overcommit.py builds
the lab with it and reads the results back): the runs overcommit.json lists, in its order, on one L1
boot. Two scenarios: "overcommit" (the RFC's experiment, scaled as overcommit.json says, then a calm
phase) and "savings" (four guests of different behaviour, savings_run()).

One overcommit run:
  1. swap emptied, caches dropped; autoballoond restarted with the run's Policy=, HostPressure=slice
     and --record; balloon.slice has MemoryMax= (the host);
  2. guests "down" and "up" restored from the saved L2 state with autoballoon-run, THP on;
  3. vm-down runs its phases back to back from t=0, vm-up from the offset; a phase is a run of the
     agent's "ebizzy w CHUNKS SECONDS" (SECONDS after the working set is resized and filled, as in
     ebizzy);
  4. every SAMPLE seconds: balloons, slices, swap, pressure, guest records; at the end the counters'
     deltas, the daemon's decisions and latencies, the balloon events;
  5. calm: the host's limit lifted to calm_host_mem (room for both guests whole), both guests run
     ebizzy with calm_chunks for calm_seconds: how each policy gives memory back (the samples go on);
     guest stats (QEMU's guest-stats: available memory, disk caches) at the calm's start and end;
  6. the guests are stopped.
Results in /var/lib/autoballoon-lab/out/bench: run-N.json, run-N.trace (the daemon's input).
Then, with reaction_seconds, the reaction run (reaction_run()): reaction.json, reaction.trace.

Lines on stdout as the lab scenario's (run.sh shows them): LAB progress, LAB-CHECK per run,
LAB-RESULT at the end (PASS when every run completed; the figures are the host script's business).
"""

import contextlib
import json
import os
import statistics
import threading
import time
import traceback
from pathlib import Path

import sys
sys.path.insert(0, "/usr/lib/autoballoon-lab")
import l2  # noqa: E402
from ab.agent import parse_kv  # noqa: E402
from ab.hog import PageCacheHog  # noqa: E402
from ab.measure import proc_rss_kib, proc_stat, psi  # noqa: E402
from ab.qmp import QMP  # noqa: E402
from scenario import CGROUP, CONF_D, OUT, UNIT, journal, log, memory_high, messages, monotonic_usec, \
    run, unit_prop, wait_for  # noqa: E402

CONFIG = Path("/usr/lib/autoballoon-lab/overcommit.json")
RESULTS = OUT / "bench"
HOST = CGROUP / "balloon.slice"
DROPIN = Path("/run/systemd/system/autoballoond.service.d/50-bench.conf")
VMS = ("down", "up")
MIB = 1 << 20
# The agent's ebizzy worker: one per guest, its working set resized from phase to phase.
WORKER = "w"
GUEST_COUNTERS = ("pswpin", "pswpout", "pgmajfault", "oom_kill", "thp_fault_alloc", "thp_fault_fallback")


def read_int(path):
    return int(Path(path).read_text().split()[0])


def vmstat(keys, path="/proc/vmstat"):
    out = {}
    for line in Path(path).read_text().splitlines():
        k, v = line.split()
        if k in keys:
            out[k] = int(v)
    return out


def psi_totals(path):
    p = psi(path)
    return {"some": p["some"]["total"], "full": p["full"]["total"]}


def guest_psi(agent):
    return {kind: parse_kv(agent.cmd(f"pressure {kind}"))["total"] for kind in ("some", "full")}


class Guest:
    """One L2 guest of a run: its service, agent, harness QMP and workload phases."""

    def __init__(self, name, spec, phases, start_at, seconds, weight=None):
        self.name, self.spec, self.weight = name, spec, weight
        self.todo = list(phases)       # chunks of the phases still to start
        self.start_at = start_at       # experiment time of its first phase
        self.seconds = seconds
        self.phases = []               # {"chunks", "start", "end", records...}
        self.agent = self.qmp = None
        self.pid = None

    @property
    def service(self):
        return f"autoballoon-vm-{self.name}.service"

    def launch(self):
        weight = ["--weight", str(self.weight)] if self.weight else []
        rc, out = run("autoballoon-run", self.name, *weight, "--", l2.QEMU, *l2.qemu_args(self.name, spec=self.spec))
        if rc != 0:
            raise RuntimeError(f"autoballoon-run {self.name}: {out.strip()[-300:]}")

    def connect(self, timeout=240):
        self.pid = int(unit_prop(self.service, "MainPID"))
        self.agent = l2.agent(self.name, lambda: os.path.exists(f"/proc/{self.pid}"))
        self.agent.wait_ready(timeout)
        self.qmp = QMP(f"{l2.RUN_DIR}/{self.name}.hqmp")
        reply = self.agent.cmd("thp always")
        if reply != "ok":
            raise RuntimeError(f"{self.name}: thp always: {reply}")

    def counters(self):
        c = parse_kv(self.agent.cmd("vmstat " + " ".join(GUEST_COUNTERS)))
        c.update({f"psi_{k}": v for k, v in guest_psi(self.agent).items()})
        c["qemu_majflt"], c["qemu_cpu"] = proc_stat(self.pid)
        return c

    def current(self):
        return self.phases[-1] if self.phases and self.phases[-1].get("end") is None else None

    def step(self, t):
        """Finishes the phase whose run is over and starts the next one when due; returns whether
        the guest still has work."""
        cur = self.current()
        if cur:
            r = parse_kv(self.agent.cmd(f"records {WORKER}"))
            cur.update(records=r["records"], fill_ms=r["fill_ms"], elapsed_ms=r["elapsed_ms"])
            if r["running"]:
                return True
            cur.update(end=t, done=bool(r["done"]))
            log(f"  {self.name}: phase {len(self.phases)} ({cur['chunks']} MiB) "
                f"{'done' if cur['done'] else 'KILLED'}: {cur['records']} records, filled in "
                f"{cur['fill_ms'] / 1000:.1f} s, {t - cur['start']:.0f} s")
            if not self.todo:
                # As the last ebizzy exits: its memory is free in the guest.
                self.agent.cmd(f"free {WORKER}")
        if not self.todo:
            return False
        if t < self.start_at:
            return True
        chunks = self.todo.pop(0)
        reply = self.agent.cmd(f"ebizzy {WORKER} {chunks} {self.seconds}")
        if not reply.startswith("ok"):
            raise RuntimeError(f"{self.name}: ebizzy: {reply}")
        self.phases.append({"chunks": chunks, "start": t, "end": None, "records": 0, "fill_ms": 0,
                            "elapsed_ms": 0, "done": False})
        log(f"  {self.name}: phase {len(self.phases)}: {chunks} chunks of 1 MiB for {self.seconds} s")
        return True

    def due(self, t):
        """When step() has something to do next (experiment time)."""
        cur = self.current()
        if cur and cur["fill_ms"]:
            return cur["start"] + cur["fill_ms"] / 1000 + self.seconds
        if cur:
            return t + 1
        return self.start_at if self.todo else None

    def sample(self, psi=True):
        """What the plots show of the guest; no more, to disturb the workload the least. psi: read
        the guest's PSI through the agent (not while another thread uses it)."""
        return {
            "actual": self.qmp.execute("query-balloon")["actual"],
            "memory_high": memory_high(self.name),
            "psi": guest_psi(self.agent) if psi else None,
        }

    def stats(self):
        """QEMU's guest-stats (what the daemon reads too): the guest's available memory and its
        caches (stat-disk-caches: its page cache), bytes, and the balloon's size."""
        s = self.qmp.execute("qom-get", {"path": "/machine/peripheral/balloon0", "property": "guest-stats"})["stats"]
        return {"available": s.get("stat-available-memory"), "caches": s.get("stat-disk-caches"),
                "free": s.get("stat-free-memory"), "total": s.get("stat-total-memory"),
                "actual": self.qmp.execute("query-balloon")["actual"]}

    def stop(self):
        for c in (self.agent, self.qmp):
            if c is not None:
                c.close()
        run("systemctl", "stop", f"balloon-{self.name}.slice", timeout=120)


def host_sample():
    s = psi_totals(HOST / "memory.pressure")
    return {
        "current": read_int(HOST / "memory.current"),
        "swap": read_int(HOST / "memory.swap.current"),
        "psi": s,
        "vmstat": vmstat(("pswpin", "pswpout")),
    }


def restart_daemon(policy, trace, extra=""):
    """autoballoond with its defaults but for the policy, HostPressure=slice and extra [Daemon] lines."""
    for f in CONF_D.glob("*.conf"):
        f.unlink()
    (CONF_D / "50-bench.conf").write_text("# Written by the overcommit benchmark.\n[Daemon]\n"
                                          f"Policy={policy}\nHostPressure=slice\n{extra}")
    DROPIN.parent.mkdir(parents=True, exist_ok=True)
    DROPIN.write_text("[Service]\nExecStart=\n"
                      f"ExecStart=/usr/sbin/autoballoond --record={trace} --log-level=debug\n"
                      f"ReadWritePaths={RESULTS}\n")
    run("systemctl", "daemon-reload", check=True)
    run("systemctl", "restart", UNIT, check=True)
    if not wait_for(lambda: unit_prop(UNIT, "ActiveState") == "active", 60):
        raise RuntimeError(f"{UNIT} not active after the restart")
    return unit_prop(UNIT, "InvocationID")


def reset_host():
    """No swap in use, no page cache: every run starts from the same host."""
    run("swapoff", "-a", check=True, timeout=300)
    run("swapon", "-a", check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def daemon_log(invocation, since_usec):
    """The run's decisions and reaction latencies from the journal."""
    decisions, latencies = [], []
    for e in journal(invocation=invocation):
        t = int(e["__MONOTONIC_TIMESTAMP"])
        if t < since_usec:
            continue
        msg = e.get("MESSAGE")
        if not isinstance(msg, str):
            continue
        if "AUTOBALLOON_ACTION" in e:
            decisions.append({"t_usec": t, "vm": e.get("AUTOBALLOON_VM"), "action": e["AUTOBALLOON_ACTION"],
                              "target": int(e.get("AUTOBALLOON_TARGET", 0) or 0),
                              "reason": e.get("AUTOBALLOON_REASON", "")})
        elif msg.startswith("latency trigger->balloon "):
            latencies.append({"t_usec": t, "usec": int(msg.split()[2])})
    return decisions, latencies


def balloon_events(g):
    """The BALLOON_CHANGE events the harness' monitor received (QEMU's timestamps: CLOCK_REALTIME)."""
    g.qmp.execute("query-balloon")  # reads the events queued since the last command
    return [{"t_usec": int(ev["timestamp"]["seconds"] * 1e6 + ev["timestamp"]["microseconds"]),
             "actual": ev["data"]["actual"]} for ev in g.qmp.events if ev["event"] == "BALLOON_CHANGE"]


@contextlib.contextmanager
def lab_guests(tag, policy, trace, guests, daemon_extra=""):
    """A reset host, autoballoond with the policy, the guests restored and adopted; stopped afterwards.
    Yields the daemon's invocation ID."""
    log(f"{tag}: resetting the host")
    reset_host()
    invocation = restart_daemon(policy, trace, daemon_extra)
    since = monotonic_usec()
    try:
        t0 = time.monotonic()
        for g in guests:
            g.launch()
        for g in guests:
            g.connect()
        for g in guests:
            if not wait_for(lambda: messages(rf"^{g.name}: adopted", since, invocation), 60):
                raise RuntimeError(f"{g.name} not adopted by the daemon")
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        log(f"{tag}: guests restored and adopted in {time.monotonic() - t0:.0f} s; host "
            f"{read_int(HOST / 'memory.current') / MIB:.0f} of {read_int(HOST / 'memory.max') / MIB:.0f} MiB")
        yield invocation
    finally:
        for g in guests:
            g.stop()


def drive(tag, guests, start, samples, cfg, until=None, sampled=None, extra=None):
    """Steps the guests' phases and samples every sample_seconds until no guest has work left and
    'until' (experiment time) has passed; extra(t), if given, runs at every wake-up and returns when
    it wants the next one. sampled: the guests whose PSI the samples read (default all)."""
    next_sample, next_status = samples[-1]["t"] + cfg["sample_seconds"] if samples else 0.0, 0.0
    host0 = samples[0]["host"] if samples else host_sample()
    while True:
        t = time.monotonic() - start
        busy = [g.step(t) for g in guests]
        if not any(busy) and (until is None or t >= until):
            return
        wakes = [next_sample] + [d for g in guests if (d := g.due(t)) is not None]
        if extra:
            wakes.append(extra(t))
        if t >= next_sample:
            samples.append({"t": round(t, 2), "host": host_sample(),
                            **{g.name: g.sample(sampled is None or g in sampled) for g in guests}})
            next_sample += cfg["sample_seconds"]
            if t >= next_status:
                h = samples[-1]["host"]
                log(f"{tag} t={t:4.0f}s: host {h['current'] / MIB:.0f} MiB, swap "
                    f"{h['swap'] / MIB:.0f} MiB, pswpout +{h['vmstat']['pswpout'] - host0['vmstat']['pswpout']}; " +
                    ", ".join(f"{g.name} {samples[-1][g.name]['actual'] / MIB:.0f} MiB" for g in guests))
                next_status = t + 30
        if until is not None:
            wakes.append(until)
        time.sleep(max(0.05, min(wakes) - (time.monotonic() - start)))


def set_host_mem(value):
    run("systemctl", "set-property", "--runtime", "balloon.slice", f"MemoryMax={value}", check=True)


def finish(guests, daemon_pid, start_daemon_cpu):
    """What every run reports at its end, before the guests stop: daemon CPU and RSS, the balloon
    events."""
    return {
        "daemon": {"cpu": proc_stat(daemon_pid)[1] - start_daemon_cpu, "rss_kib": proc_rss_kib(daemon_pid)},
        "balloon_events": {g.name: balloon_events(g) for g in guests},
        "realtime_offset_usec": int((time.time() - time.monotonic()) * 1e6),
    }


def one_run(cfg, spec):
    index, policy, rep = spec["index"], spec["policy"], spec["rep"]
    tag = f"run {index} overcommit {policy}#{rep}"
    phase_s, offset = cfg["phase_seconds"], cfg["offset_phases"] * cfg["phase_seconds"]
    guests = [Guest("down", cfg["variant"], cfg["down"], 0, phase_s),
              Guest("up", cfg["variant"], cfg["up"], offset, phase_s)]
    set_host_mem(cfg["host_mem"])
    with lab_guests(tag, policy, RESULTS / f"run-{index}.trace", guests, cfg.get("daemon_extra", "")) as invocation:
        daemon_pid = int(unit_prop(UNIT, "MainPID"))
        start_host = host_sample()
        start_guest = {g.name: g.counters() for g in guests}
        start_daemon_cpu = proc_stat(daemon_pid)[1]
        start = time.monotonic()
        start_usec = monotonic_usec()
        samples = []
        drive(tag, guests, start, samples, cfg)
        elapsed = time.monotonic() - start
        end_host = host_sample()
        end_guest = {g.name: g.counters() for g in guests}
        calm = None
        if cfg.get("calm_seconds"):
            # The host has room again: both guests whole fit, and a steady load in each.
            calm = {"start": round(time.monotonic() - start, 2), "seconds": cfg["calm_seconds"],
                    "chunks": cfg["calm_chunks"], "host_mem": cfg["calm_host_mem"],
                    "stats_start": {g.name: g.stats() for g in guests}}
            set_host_mem(cfg["calm_host_mem"])
            log(f"{tag}: calm: MemoryMax={cfg['calm_host_mem']}, ebizzy {cfg['calm_chunks']} chunks "
                f"for {cfg['calm_seconds']} s in both guests")
            for g in guests:
                g.todo, g.start_at, g.seconds = [cfg["calm_chunks"]], 0, cfg["calm_seconds"]
            drive(tag, guests, start, samples, cfg, until=calm["start"] + cfg["calm_seconds"])
            calm["stats_end"] = {g.name: g.stats() for g in guests}
            calm["end"] = round(time.monotonic() - start, 2)
            calm["counters_end"] = {g.name: g.counters() for g in guests}
            calm["host_end"] = host_sample()
            for g in guests:
                for p in g.phases:
                    p["calm"] = p["start"] >= calm["start"]
        tail = finish(guests, daemon_pid, start_daemon_cpu)
    decisions, latencies = daemon_log(invocation, start_usec)
    result = {
        "scenario": "overcommit", "policy": policy, "rep": rep, "index": index, "config": cfg,
        "elapsed": elapsed, "start_usec": start_usec, "realtime_offset_usec": tail["realtime_offset_usec"],
        "host": {"start": start_host, "end": end_host},
        "guests": {g.name: {"start": start_guest[g.name], "end": end_guest[g.name],
                            "phases": [p for p in g.phases if not p.get("calm")],
                            "calm_phases": [p for p in g.phases if p.get("calm")]} for g in guests},
        "calm": calm, "daemon": tail["daemon"],
        "samples": samples, "balloon_events": tail["balloon_events"], "decisions": decisions, "latencies": latencies,
    }
    (RESULTS / f"run-{index}.json").write_text(json.dumps(result))
    swapout = end_host["vmstat"]["pswpout"] - start_host["vmstat"]["pswpout"]
    ooms = sum(end_guest[n]["oom_kill"] - start_guest[n]["oom_kill"] for n in VMS)
    complete = all(p["done"] for g in guests for p in g.phases)
    return complete, (f"{elapsed:.0f} s, host swap-out {swapout} pages, guest OOM kills {ooms}, "
                      f"records {sum(p['records'] for g in guests for p in g.phases)}" +
                      ("" if complete else ", a phase did not complete"))


class Bursts:
    """The bursty guest's load, in a thread of its own (an allocation blocks its agent for seconds):
    every period seconds it allocates mib MiB, holds them for hold seconds and frees them; each
    allocation's time, and whether the OOM killer ended it."""

    def __init__(self, guest, mib, period, hold, until):
        self.guest, self.mib, self.period, self.hold, self.until = guest, mib, period, hold, until
        self.bursts = []
        self.error = None
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        try:
            start = time.monotonic()
            k = 0
            while True:
                at = start + k * self.period
                if at + self.hold > start + self.until:
                    return
                time.sleep(max(0.0, at - time.monotonic()))
                t0 = time.monotonic()
                reply = self.guest.agent.cmd(f"alloc b {self.mib}", timeout=300)
                self.bursts.append({"t": round(t0 - start, 2), "alloc_ms": round((time.monotonic() - t0) * 1000),
                                    "ok": reply.startswith("ok")})
                time.sleep(max(0.0, t0 + self.hold - time.monotonic()))
                self.guest.agent.cmd("free b")
                k += 1
        except Exception as e:  # noqa: BLE001  reported with the run
            self.error = f"{type(e).__name__}: {e}"


def savings_run(cfg, spec):
    """Four guests of different behaviour on a host that cannot give them all their memory (TMO's
    "savings within a stall budget", ASPLOS'22): idle, bursty (allocates and frees at intervals),
    steady (ebizzy, one working set), growing (ebizzy, a working set growing in steps); weights not
    all equal. First a calibration with the host's limit lifted (steady and growing run ebizzy
    alone: each run's own rate before any pressure), then the limit and the workloads."""
    sv = cfg["savings"]
    index, policy, rep = spec["index"], spec["policy"], spec["rep"]
    tag = f"run {index} savings {policy}#{rep}"
    w = sv["weights"]
    steady_n = max(1, round(sv["seconds"] / sv["steady_seconds"]))
    guests = {
        "idle": Guest("idle", cfg["variant"], [], 0, 0, w["idle"]),
        "bursty": Guest("bursty", cfg["variant"], [], 0, 0, w["bursty"]),
        "steady": Guest("steady", cfg["variant"], [sv["steady_chunks"]] * steady_n, 0, sv["steady_seconds"],
                        w["steady"]),
        "growing": Guest("growing", cfg["variant"], sv["growing_chunks"], 0, sv["growing_seconds"], w["growing"]),
    }
    gl = list(guests.values())
    set_host_mem(sv["calibrate_host_mem"])
    with lab_guests(tag, policy, RESULTS / f"run-{index}.trace", gl, cfg.get("daemon_extra", "")) as invocation:
        daemon_pid = int(unit_prop(UNIT, "MainPID"))
        # Calibration: the rate of each ebizzy guest with nothing else running and room on the host.
        calib = {}
        for name in ("steady", "growing"):
            g = guests[name]
            g.agent.cmd_ok(f"ebizzy c {sv['calibrate_chunks']} {sv['calibrate_seconds']}")
        while True:
            rs = {n: parse_kv(guests[n].agent.cmd("records c")) for n in ("steady", "growing")}
            if not any(r["running"] for r in rs.values()):
                break
            time.sleep(1)
        for n, r in rs.items():
            run_ms = r["elapsed_ms"] - r["fill_ms"]
            calib[n] = {"records": r["records"], "fill_ms": r["fill_ms"], "elapsed_ms": r["elapsed_ms"],
                        "rate": r["records"] * 1000 / run_ms if r["done"] and run_ms > 0 else 0.0}
            guests[n].agent.cmd("free c")
        log(f"{tag}: calibration: " + ", ".join(f"{n} {c['rate']:.1f} records/s" for n, c in calib.items()))
        set_host_mem(sv["host_mem"])
        start_host = host_sample()
        start_guest = {g.name: g.counters() for g in gl}
        start_daemon_cpu = proc_stat(daemon_pid)[1]
        start = time.monotonic()
        start_usec = monotonic_usec()
        bursts = Bursts(guests["bursty"], sv["burst_mib"], sv["burst_period"], sv["burst_hold"], sv["seconds"])
        bursts.thread.start()
        samples = []
        drive(tag, gl, start, samples, cfg, until=sv["seconds"],
              sampled=[g for g in gl if g.name != "bursty"])
        bursts.thread.join(timeout=300)
        elapsed = time.monotonic() - start
        end_host = host_sample()
        end_guest = {g.name: g.counters() for g in gl}
        tail = finish(gl, daemon_pid, start_daemon_cpu)
    decisions, latencies = daemon_log(invocation, start_usec)
    result = {
        "scenario": "savings", "policy": policy, "rep": rep, "index": index, "config": cfg,
        "elapsed": elapsed, "start_usec": start_usec, "realtime_offset_usec": tail["realtime_offset_usec"],
        "host": {"start": start_host, "end": end_host}, "calibration": calib,
        "guests": {g.name: {"start": start_guest[g.name], "end": end_guest[g.name], "phases": g.phases,
                            "weight": g.weight} for g in gl},
        "bursts": bursts.bursts, "bursts_error": bursts.error, "daemon": tail["daemon"],
        "samples": samples, "balloon_events": tail["balloon_events"], "decisions": decisions, "latencies": latencies,
    }
    (RESULTS / f"run-{index}.json").write_text(json.dumps(result))
    ooms = sum(end_guest[n]["oom_kill"] - start_guest[n]["oom_kill"] for n in guests)
    total = len(gl) * guest_mib(cfg)
    returned = statistics.mean(sum(guest_mib(cfg) - s[n]["actual"] / MIB for n in guests) / total
                               for s in samples) if samples else 0.0
    ok = bursts.error is None and all(p["done"] for g in gl for p in g.phases)
    return ok, (f"{elapsed:.0f} s, returned {100 * returned:.1f}% on average, guest OOM kills {ooms}" +
                ("" if bursts.error is None else f", bursts: {bursts.error}") +
                ("" if ok else ", a phase did not complete"))


def guest_mib(cfg):
    return l2.variant(cfg["variant"])[0]


def settled(guests, seconds=3.0, timeout=120):
    """Waits until no balloon moved for that long; returns the sizes."""
    last, since = None, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = {g.name: g.qmp.execute("query-balloon")["actual"] for g in guests}
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= seconds:
            return now
        time.sleep(0.5)
    return last


def reaction_run(cfg):
    """Policy=autoballoon as in the runs but HostReserve=0, idle guests, rounds of host pressure: a page-cache hog (one
    reader, so that it takes little CPU from the guests) in a unit of balloon.slice, the slice's limit
    just above what it holds, reads until the daemon moved a balloon; then the hog pauses (its cache
    dropped), the balloons come to rest and are refilled from the harness' monitor, and the next round
    starts from balloons at rest. For the reaction figures only."""
    seconds = cfg["reaction_seconds"]
    guests = [Guest(n, cfg["variant"], [], 0, 0) for n in VMS]
    # No host reserve: the goals come from the trigger alone, not from the tick that sees the hog's
    # cache fill the headroom first (the reserve's own reaction is the tick, StatsIntervalSec=).
    with lab_guests("reaction", "autoballoon", RESULTS / "reaction.trace", guests, "HostReserve=0\n") as invocation:
        start_usec = monotonic_usec()
        full = {g.name: g.qmp.execute("query-balloon")["actual"] for g in guests}
        run("systemd-run", "--unit=bench-hog", "--slice=balloon.slice", "--collect", "sleep", "infinity",
            check=True)
        hog = PageCacheHog(128, [HOST / "bench-hog.service" / "cgroup.procs"], directory="/var/tmp", readers=1)
        run("systemctl", "set-property", "--runtime", "balloon.slice",
            f"MemoryMax={read_int(HOST / 'memory.current') + 32 * MIB}", check=True)
        rounds = 0
        try:
            hog.start()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                if rounds:
                    hog.resume()
                rounds += 1
                moved = wait_for(lambda: any(g.qmp.execute("query-balloon")["actual"] < full[g.name]
                                             for g in guests), 60, 0.5)
                hog.pause()
                sizes = settled(guests)
                log(f"reaction: round {rounds}: " + ("no balloon moved in 60 s" if not moved else
                    ", ".join(f"{n} {full[n] // MIB} -> {sizes[n] // MIB} MiB" for n in sizes)))
                for g in guests:
                    g.qmp.execute("balloon", {"value": full[g.name]})
                settled(guests)
        finally:
            hog.stop()
            run("systemctl", "stop", "bench-hog.service")
            run("systemctl", "set-property", "--runtime", "balloon.slice", f"MemoryMax={cfg['host_mem']}",
                check=True)
        events = {g.name: balloon_events(g) for g in guests}
        realtime_offset_usec = int((time.time() - time.monotonic()) * 1e6)
    decisions, latencies = daemon_log(invocation, start_usec)
    (RESULTS / "reaction.json").write_text(json.dumps({
        "policy": "autoballoon", "start_usec": start_usec, "realtime_offset_usec": realtime_offset_usec,
        "rounds": rounds, "balloon_events": events, "decisions": decisions, "latencies": latencies}))
    return len(latencies) >= 5, f"{len(latencies)} host-triggered inflations in {rounds} rounds"


def main():
    cfg = json.loads(CONFIG.read_text())
    RESULTS.mkdir(parents=True, exist_ok=True)
    os.makedirs(l2.RUN_DIR, exist_ok=True)
    swaps = Path("/proc/swaps").read_text().strip().splitlines()[1:]
    if not swaps:
        print("LAB-CHECK FAIL swap: L1 has no swap", flush=True)
        print("LAB-RESULT FAIL passed=0 failed=1", flush=True)
        return 1
    set_host_mem(cfg["host_mem"])
    log(f"overcommit: {len(cfg['runs'])} runs; host = balloon.slice MemoryMax={cfg['host_mem']}, guests "
        f"{cfg['variant']}, vm-down {cfg['down']}, vm-up {cfg['up']} (MiB), phases {cfg['phase_seconds']} s, "
        f"vm-up {cfg['offset_phases']} phase later; swap {swaps[0].split()[2]} KiB")
    passed = failed = 0
    t0 = time.monotonic()
    for i, spec in enumerate(cfg["runs"]):
        try:
            ok, detail = (savings_run if spec["scenario"] == "savings" else one_run)(cfg, spec)
        except Exception as e:  # noqa: BLE001  report it, go on with the next run
            ok, detail = False, f"{type(e).__name__}: {e}"
            log(traceback.format_exc())
        print(f"LAB-CHECK {'PASS' if ok else 'FAIL'} run {spec['index']} {spec['scenario']} {spec['policy']}#"
              f"{spec['rep']}: {detail}", flush=True)
        passed, failed = passed + ok, failed + (not ok)
        left = (time.monotonic() - t0) / (i + 1) * (len(cfg["runs"]) - i - 1)
        log(f"{i + 1} of {len(cfg['runs'])} runs done, about {left / 60:.0f} min left")
    if cfg.get("reaction_seconds"):
        try:
            ok, detail = reaction_run(cfg)
        except Exception as e:  # noqa: BLE001
            ok, detail = False, f"{type(e).__name__}: {e}"
            log(traceback.format_exc())
        print(f"LAB-CHECK {'PASS' if ok else 'FAIL'} reaction: {detail}", flush=True)
        passed, failed = passed + ok, failed + (not ok)
    run("sh", "-c", f"journalctl -b --no-pager -o short-monotonic > {OUT}/journal.txt")
    print(f"LAB-RESULT {'FAIL' if failed else 'PASS'} passed={passed} failed={failed} "
          f"seconds={time.monotonic() - t0:.0f}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    sys.exit(main())

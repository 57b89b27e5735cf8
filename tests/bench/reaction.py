# SPDX-License-Identifier: LGPL-2.1-or-later
"""Benchmark, not a test: prints figures and gates nothing.

1. The daemon's reaction: PSI trigger fd readable -> balloon command sent (daemon-internal, from its
   debug log), p50/p99 over at least --events host trigger firings that led to an inflation. The
   balloons are put back to full size from the harness monitor every few rounds so that the floors
   never stop the inflations.
2. The daemon's cost with the three guests idle: CPU time and RSS over --idle seconds.
With --guests N (say 16, of --guest-mem 160M each: they fit in 24 GiB), only the idle cost, with N
guests.

With --sim N, N VMs of tests/bench/fake-qemu (a stand-in for QEMU, one process) instead of guests:
1. the daemon's cost with them idle over --idle seconds, at its default log level;
2. with --events E, the reaction at scale: host pressure in balloon.slice (HostPressure=slice), the
   daemon at debug level, until E trigger firings led to inflations, all balloons deflated every
   --reset seconds. Per firing: trigger fd readable -> the last balloon command of that decision
   received by the simulator (CLOCK_MONOTONIC on both sides), and -> queued in the daemon; the
   daemon's RSS; how stale the VMs' stats got (the longest gap between two reads of a VM's stats,
   the oldest stats the daemon held) against the polling interval it set.

Run as root after tests/demo.sh or tests/run.sh built everything:
    /usr/bin/python3 tests/bench/reaction.py [--events 100] [--idle 60] [--guests 16 [--guest-mem 160M]]
    /usr/bin/python3 tests/bench/reaction.py --sim 64 --idle 300
    /usr/bin/python3 tests/bench/reaction.py --sim 1000 --idle 60 --events 30
The machine's other load does not matter much for the guests' run: the latency is measured inside the
daemon. The --sim figures include the simulator's and the logging's share of the 2 cores.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from ab.cache import build_image  # noqa: E402
from ab.cgroup import TestCgroup  # noqa: E402
from ab.hog import PageCacheHog  # noqa: E402
from ab.measure import percentile, proc_rss_kib, proc_stat  # noqa: E402
from ab.scenario import MIB, GUEST_MEM, VMS, ClosedLoop, daemon_binary, make_config  # noqa: E402
from ab.util import make_run_dir, parse_size, wait_until  # noqa: E402

SIM_LATENCY_RE = re.compile(r"latency trigger->balloon (\d+) us, trigger at (\d+) us")


def bench_config(vms):
    # Every trigger counts, and small steps so that many rounds fit between two resets.
    return make_config(vms, reclaim_step="96M", extra="ReclaimSettleSec=0\n")


def measure_reaction(loop, events):
    """Host pressure rounds until the daemon logged events trigger->balloon latencies."""
    loop.host_pressure_on()
    start = time.monotonic()
    seen, quiet_since = 0, time.monotonic()
    while len(loop.daemon.latencies_usec) < events:
        time.sleep(2)
        if len(loop.daemon.latencies_usec) > seen:
            seen, quiet_since = len(loop.daemon.latencies_usec), time.monotonic()
        elif time.monotonic() - quiet_since > 6:
            # The reclaim relieved the host: give the guests their memory back and make it
            # resident again (outside the limit: no swap here, so the limit's OOM killer would
            # take a QEMU), then squeeze again for the next rounds.
            # The daemon is stopped meanwhile: the host trigger watches the whole machine and
            # may fire for someone else's stalls, and would inflate the guests being refilled.
            loop.host_pressure_off()
            os.kill(loop.daemon.proc.pid, signal.SIGSTOP)
            for g in loop.guests.values():
                g.balloon(loop.guest_mem)
            for g in loop.guests.values():
                wait_until(lambda: g.query_balloon() == loop.guest_mem, 30, what="a full guest")
                g.cmd_ok("prefault 80", timeout=120)
            os.kill(loop.daemon.proc.pid, signal.SIGCONT)
            loop.host_pressure_on()
            quiet_since = time.monotonic()
        print(f"  {len(loop.daemon.latencies_usec)} events after {time.monotonic() - start:.0f} s",
              flush=True)
    loop.host_pressure_off()

    lat = loop.daemon.latencies_usec
    print(f"trigger fd readable -> balloon command sent: {len(lat)} events, "
          f"p50 {percentile(lat, 50)} us, p99 {percentile(lat, 99)} us, max {max(lat)} us")
    print(f"daemon RSS after the run: {proc_rss_kib(loop.daemon.proc.pid)} KiB; inflations "
          f"{len(loop.daemon.decisions_for(action='inflate'))}, balloons now "
          f"{', '.join(f'{vm} {loop.actual(vm) // MIB}M' for vm, _ in loop.vms)}")


def sim_script(n):
    """n VMs of 1 GiB whose guests use 128 to 352 MiB: the water-filling sees different VMs."""
    return "".join(f"vm vm{i + 1} boot=1G used={128 + 32 * (i % 8)}M cache=128M\n" for i in range(n))


def sim_config(reaction):
    # Every firing counts and inflates every VM by a small step, so that many rounds fit between
    # two resets; the trigger on balloon.slice alone, where the bench puts its pressure, not on the
    # shared machine's.
    bench = "ReclaimStep=1T\nReclaimSettleSec=0\nMaxStep=32M\n" if reaction else ""
    return f"[Daemon]\nHostPressure=slice\nLibvirt=no\n{bench}"


def wait_for(fn, timeout, what):
    wait_until(fn, timeout, 0.5, what=what)


def reaction_bursts(log_text, balloons):
    """Per trigger firing that sent commands: (daemon-internal us, us to the last command of the
    burst the simulator received, commands in the burst, us to its first command). A burst: the commands received from the
    trigger on, until 50 ms pass without one (one decision queues them all in one pass)."""
    out = []
    for m in SIM_LATENCY_RE.finditer(log_text):
        internal, trigger = int(m.group(1)), int(m.group(2))
        burst = []
        for t in balloons:
            if t < trigger:
                continue
            if burst and t - burst[-1] > 50_000:
                break
            burst.append(t)
        if burst:
            out.append((internal, burst[-1] - trigger, len(burst), burst[0] - trigger))
    return out


def run_sim(args):
    n = args.sim
    run_dir = make_run_dir("abbench-")
    runtime = run_dir / "run"
    (runtime / "qmp").mkdir(parents=True)
    (run_dir / "etc").mkdir()
    (run_dir / "etc" / "autoballoon.conf").write_text(sim_config(bool(args.events)))
    (run_dir / "script").write_text(sim_script(n))
    report = run_dir / "report"
    log_path = run_dir / "autoballoond.log"
    cg = TestCgroup()
    sim = daemon = hog = None
    try:
        for i in range(n):
            cg.sub(f"balloon.slice/balloon-vm{i + 1}.slice")
        fake = daemon_binary().parent.parent / "tests" / "bench" / "fake-qemu"
        sim = subprocess.Popen([str(fake), f"--dir={runtime / 'qmp'}", f"--script={run_dir / 'script'}",
                                f"--report={report}"], stdout=subprocess.PIPE, text=True)
        assert sim.stdout.readline().startswith("ready"), "fake-qemu did not start"
        # The log goes to a file: a pipe read by Python could hold the daemon up at 1,000 VMs.
        with open(log_path, "w") as log:
            daemon = subprocess.Popen([str(daemon_binary()), f"--config-dir={run_dir / 'etc'}",
                                       f"--cgroup-root={cg.unified_root}", f"--runtime-dir={runtime}",
                                       "--bus=none", "--log-target=stderr",
                                       f"--log-level={'debug' if args.events else 'info'}"],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        started = time.monotonic()
        wait_for(lambda: log_path.read_text().count(": adopted:") >= n, 60 + n // 10, "every VM adopted")
        print(f"{n} simulated VMs adopted in {time.monotonic() - started:.1f} s", flush=True)

        pid = daemon.pid
        cpu0, t0 = proc_stat(pid)[1], time.monotonic()
        time.sleep(args.idle)
        cpu, idle_seconds = proc_stat(pid)[1] - cpu0, time.monotonic() - t0
        print(f"idle: {n} simulated VMs, {idle_seconds:.0f} s, log level "
              f"{'debug' if args.events else 'info'}: daemon CPU {cpu:.3f} s ({100 * cpu / idle_seconds:.3f}% "
              f"of a core), RSS {proc_rss_kib(pid)} KiB", flush=True)

        if args.events:
            # balloon.slice limited to what it holds plus a little, a page-cache hog inside.
            cg.set_limit(cg.usage("balloon.slice") + 32 * MIB, "balloon.slice")
            hog = PageCacheHog(256, cg.procs_paths("balloon.slice/hog")).start()
            start = last_reset = time.monotonic()
            while len(SIM_LATENCY_RE.findall(log_path.read_text())) < args.events:
                time.sleep(1)
                if time.monotonic() - last_reset >= args.reset:
                    sim.send_signal(signal.SIGUSR1)
                    last_reset = time.monotonic()
                if time.monotonic() - start > 30 * args.events:
                    print("  giving up waiting for more trigger firings")
                    break
            hog.stop()
            hog = None
            cg.set_limit(-1, "balloon.slice")
            rss = proc_rss_kib(pid)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        sim.send_signal(signal.SIGTERM)
        sim.wait(30)
        if args.events:
            print_sim_reaction(report, log_path, rss)
        if args.keep:
            shutil.copy(log_path, args.keep)
            shutil.copy(report, args.keep)
    finally:
        if hog:
            hog.stop()
        for p in (daemon, sim):
            if p and p.poll() is None:
                p.kill()
                p.wait()
        cg.cleanup()
    shutil.rmtree(run_dir, ignore_errors=True)


def print_sim_reaction(report, log_path, rss):
    """The simulator's report against the daemon's log."""
    vms, balloons = [], []
    for line in report.read_text().splitlines():
        f = line.split("\t")
        if f[0] == "vm":
            vms.append({k: int(v) for k, v in (kv.split("=") for kv in f[2:])})
        else:
            balloons.append(int(f[1]))
    bursts = reaction_bursts(log_path.read_text(), balloons)
    e2e = [b[1] for b in bursts]
    internal = [b[0] for b in bursts]
    counts = [b[2] for b in bursts]
    print(f"trigger fd readable -> last balloon command received, {len(e2e)} firings: "
          f"p50 {percentile(e2e, 50) / 1000:.1f} ms, p99 {percentile(e2e, 99) / 1000:.1f} ms, "
          f"max {max(e2e) / 1000:.1f} ms; commands per firing {min(counts)}-{max(counts)}")
    first = [b[3] for b in bursts]
    print(f"trigger fd readable -> first balloon command received: p50 {percentile(first, 50) / 1000:.1f} ms, "
          f"p99 {percentile(first, 99) / 1000:.1f} ms")
    print(f"trigger fd readable -> last balloon command queued (daemon): "
          f"p50 {percentile(internal, 50) / 1000:.1f} ms, p99 {percentile(internal, 99) / 1000:.1f} ms")
    print(f"daemon RSS after the run: {rss} KiB")
    intervals = sorted({vm["interval_sec"] for vm in vms})
    print(f"stats: polling interval set {', '.join(f'{i} s' for i in intervals)}; longest gap between "
          f"two reads of a VM's stats {max(vm['max_gap_usec'] for vm in vms) / 1e6:.2f} s; oldest stats "
          f"the daemon held {max(vm['max_age_usec'] for vm in vms) / 1e6:.2f} s; "
          f"{sum(vm['stats_reads'] for vm in vms)} reads")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, help="firings to time (default 100 with guests, none with --sim)")
    ap.add_argument("--idle", type=int, default=60)
    ap.add_argument("--guests", type=int, help="only the idle cost, with this many guests")
    ap.add_argument("--guest-mem", help="with --guests: their memory (default 160M)")
    ap.add_argument("--sim", type=int, metavar="N", help="N VMs of tests/bench/fake-qemu instead of guests")
    ap.add_argument("--reset", type=int, default=20, help="with --sim: deflate all balloons every this many s")
    ap.add_argument("--keep", type=Path, metavar="DIR", help="with --sim: copy the daemon's log and the report there")
    args = ap.parse_args()
    if args.guest_mem and not args.guests:
        ap.error("--guest-mem goes with --guests")
    if args.sim:
        if args.guests:
            ap.error("--sim or --guests, not both")
        run_sim(args)
        return
    if args.events is None:
        args.events = 100

    vms, mem = VMS, GUEST_MEM
    if args.guests:
        vms, mem = tuple((f"vm{i + 1}", 100) for i in range(args.guests)), parse_size(args.guest_mem or "160M")
    run_dir = make_run_dir("abbench-")
    with ClosedLoop(run_dir, image=build_image(), config=bench_config(vms), log=print, vms=vms,
                    guest_mem=mem) as loop:
        # Many guests boot slowly side by side on two cores; idle guests need no resident memory.
        loop.start_guests(prefault=not args.guests, timeout=90 + 20 * len(vms))
        loop.start_daemon()
        pid = loop.daemon.proc.pid

        cpu0, t0 = proc_stat(pid)[1], time.monotonic()
        time.sleep(args.idle)
        cpu = proc_stat(pid)[1] - cpu0
        idle_seconds = time.monotonic() - t0
        print(f"idle: {len(vms)} guests of {mem // MIB} MiB, {idle_seconds:.0f} s: daemon CPU {cpu:.3f} s "
              f"({100 * cpu / idle_seconds:.3f}%), RSS {proc_rss_kib(pid)} KiB")
        if not args.guests:
            measure_reaction(loop, args.events)
    shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

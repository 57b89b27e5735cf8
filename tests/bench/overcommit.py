#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The overcommit benchmark: the 2013 automatic-ballooning RFC's experiment (seed 004), scaled down, with
a calm phase after it, and "savings within a stall budget" (four guests), in the lab's systemd + cgroup
v2 host (L1), once per policy mode, scenario and repetition, interleaved and alternating; then Markdown
tables (median and spread per mode), plots per mode, each run's raw JSON. A benchmark: it prints
figures and gates nothing.

    tests/bench/overcommit.py [--runs 5] [--policies none,rfc,proxmox,autoballoon]
                              [--scenarios overcommit,savings] [--phase-seconds 30] [--calm-seconds 90]
                              [--savings-seconds 200] [--lock FILE [--until HH:MM]] [--out DIR]
                              [--analyze RUN_DIR]

As root. The lab is built and booted by tests/lab/run.sh with tests/bench/overcommit-lab.py as its
payload (in $LAB_RUN_DIR, default <cache>/lab/bench): all runs in one L1 boot, or with --lock each in
a boot of its own under flock FILE. Results gather in <run dir>/collect; the tables, plots and raw
JSON go to --out (default tests/bench/results). --analyze redoes them from a run directory without
running anything. Installs gnuplot-nox if missing.

The scaled scenario (scenario() below, printed at the start and written next to the results):
  RFC: host 2 GB, two 1.3 GB guests; vm-down runs ebizzy with 1024, 824, 624, 424, 224 chunks of 1 MB,
  60 s each; vm-up the reverse, starting 60 s later.
  Here: two 256 MiB guests; the host is balloon.slice with MemoryMax=532M: the RFC's proportion for
  the guests' memory (256 / 394 = 1.3 / 2) plus QEMU's own ~69 MiB per VM under TCG (see
  QEMU_OVERHEAD_MIB). The chunk counts are the RFC's divided by 6.4, rounded (160, 129, 98, 66, 35):
  1024 chunks are ~82% of what a 1.3 GB guest has available, 160 the same share of our guest's
  ~196 MiB. The working set is scaled more than the guest because a small guest's kernel needs the
  same ~60 MiB as a big one's. 30 s phases after the chunks are filled (the RFC's 60 s with
  --phase-seconds 60), vm-up one phase later; then the calm phase.
"""

import argparse
import calendar
import fcntl
import json
import lzma
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP = HERE.parents[1]
sys.path.insert(0, str(TOP / "tests" / "lib"))
from ab.measure import percentile  # noqa: E402  (nearest rank, as the other benchmarks)
MIB = 1 << 20
PAGE = 4096
POLICIES = ("none", "rfc", "proxmox", "autoballoon")
SCENARIOS = ("overcommit", "savings")

RFC_HOST_MB, RFC_GUEST_MB, RFC_CHUNKS = 2048, 1331, (1024, 824, 624, 424, 224)
GUEST_MIB = 256
# 1024 chunks are ~82% of what a 1.3 GB guest has available; 160 are 82% of our guest's 196 MiB.
WORKING_SET_DIVISOR = 6.4
# QEMU's own memory per VM under TCG in L1 (its binary and libraries, TCG's buffers): two idle
# restored guests hold 274 MiB in their slices, 2 x 68 MiB of it guest memory. On top of the host's
# memory for guests, so that guest / host memory is the RFC's; a KVM host pays far less of it.
QEMU_OVERHEAD_MIB = 69


def scenario(phase_seconds, calm_seconds, savings_seconds):
    down = [round(c / WORKING_SET_DIVISOR) for c in RFC_CHUNKS]
    return {
        "variant": f"{GUEST_MIB}-nofpr",
        "host_mem": f"{round(GUEST_MIB * RFC_HOST_MB / RFC_GUEST_MB) + 2 * QEMU_OVERHEAD_MIB}M",
        "down": down,
        "up": down[::-1],
        "phase_seconds": phase_seconds,
        "offset_phases": 1,
        "sample_seconds": 2,
        "reaction_seconds": 0,
        # After vm-up's last step the host has room again: both guests whole and their QEMUs, plus
        # 128 MiB; each guest runs the middle working set, a load that fits.
        "calm_seconds": calm_seconds,
        "calm_chunks": down[2],
        "calm_host_mem": f"{2 * (GUEST_MIB + QEMU_OVERHEAD_MIB) + 128}M",
        "savings": savings_scenario(savings_seconds),
    }


def savings_scenario(seconds):
    """Four guests of 256 MiB (1 GiB provisioned) on a host with room for 576 MiB of guest memory and
    their QEMUs, less than the guests use at their peaks (~60 MiB each for its kernel, plus 64, 96 and
    up to 160 MiB of workload). Idle (nothing), bursty (64 MiB for 10 s every 45 s; 128 MiB took
    55 s to allocate with four nested guests on 2 cores), steady (ebizzy, 96 chunks), growing
    (ebizzy, 32 to 160 chunks in five steps)."""
    growing = [32, 64, 96, 128, 160]
    return {
        "seconds": seconds,
        "host_mem": f"{4 * QEMU_OVERHEAD_MIB + 576}M",
        "calibrate_host_mem": f"{4 * (GUEST_MIB + QEMU_OVERHEAD_MIB) + 128}M",
        "calibrate_chunks": 64,
        "calibrate_seconds": 15,
        "weights": {"idle": 100, "bursty": 100, "steady": 200, "growing": 300},
        "burst_mib": 64, "burst_period": 45, "burst_hold": 10,
        "steady_chunks": 96, "steady_seconds": max(10, seconds // 4),
        "growing_chunks": growing, "growing_seconds": max(10, seconds // len(growing) - 10),
    }


def describe(cfg):
    return (f"host: balloon.slice MemoryMax={cfg['host_mem']} with L1's swap (HostPressure=slice); two guests "
            f"of {GUEST_MIB} MiB restored from a saved state (free page reporting off, THP on); vm-down: "
            f"{', '.join(map(str, cfg['down']))} chunks of 1 MiB, vm-up: {', '.join(map(str, cfg['up']))}, "
            f"{cfg['phase_seconds']} s each after filling, vm-up starting {cfg['offset_phases']} phase "
            f"({cfg['offset_phases'] * cfg['phase_seconds']} s) later; then calm: MemoryMax={cfg['calm_host_mem']}, "
            f"both guests {cfg['calm_chunks']} chunks for {cfg['calm_seconds']} s" + daemon_extra(cfg))


def daemon_extra(cfg):
    lines = cfg.get("daemon_extra", "").split()
    return f"; autoballoond: {', '.join(lines)}" if lines else ""


def describe_savings(cfg):
    s = cfg["savings"]
    return (f"four guests of {GUEST_MIB} MiB restored from a saved state, weights " +
            ", ".join(f"{n} {w}" for n, w in s["weights"].items()) +
            f"; host: balloon.slice MemoryMax={s['host_mem']} (calibration: {s['calibrate_host_mem']}); "
            f"idle: nothing; bursty: {s['burst_mib']} MiB for {s['burst_hold']} s every {s['burst_period']} s; "
            f"steady: ebizzy {s['steady_chunks']} chunks, {s['steady_seconds']} s runs; growing: ebizzy "
            f"{', '.join(map(str, s['growing_chunks']))} chunks, {s['growing_seconds']} s each; "
            f"{s['seconds']} s; calibration before: steady and growing alone, {s['calibrate_chunks']} chunks "
            f"for {s['calibrate_seconds']} s" + daemon_extra(cfg))


# ---------------------------------------------------------------------------- running

def run_lab(cfg, run_dir):
    """One L1 boot running cfg["runs"]; their results are copied into run_dir/collect (run.sh empties
    out/ at every boot)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "overcommit.json"
    cfg_path.write_text(json.dumps(cfg, indent=1))
    shutil.rmtree(run_dir / "out", ignore_errors=True)
    seconds = sum(cfg["savings"]["seconds"] + 240 if r["scenario"] == "savings" else
                  12 * cfg["phase_seconds"] + cfg["calm_seconds"] + 240 for r in cfg["runs"])
    env = dict(os.environ, LAB_RUN_DIR=str(run_dir), LAB_PAYLOAD=str(HERE / "overcommit-lab.py"),
               LAB_PAYLOAD_FILES=str(cfg_path), LAB_L2_VARIANTS=cfg["variant"],
               LAB_TIMEOUT=str(600 + 2 * seconds))
    rc = subprocess.run([str(TOP / "tests" / "lab" / "run.sh")], env=env).returncode
    collect = run_dir / "collect"
    collect.mkdir(exist_ok=True)
    for f in (run_dir / "out" / "bench").glob("*"):
        shutil.copy(f, collect / f.name)
    return rc


def run_order(policies, scenarios, runs, first):
    """Interleaved (every policy once before any twice) and alternating (each repetition takes the
    policies in the reverse order of the one before), so that neither a slow stretch of the machine
    nor a position in the order falls on one policy only; the runs numbered from 'first'."""
    order = []
    for rep in range(runs):
        for policy in (policies if rep % 2 == 0 else policies[::-1]):
            for scen in (scenarios if rep % 2 == 0 else scenarios[::-1]):
                order.append({"scenario": scen, "policy": policy, "rep": rep + 1, "index": first + len(order)})
    return order


def run_series(cfg, order, run_dir, lock, until, batch):
    """'batch' runs per L1 boot, each boot under flock 'lock' for its runs only, so that other users of
    the machine get their turn between boots; no boot is started that would not end before 'until'
    (a UNIX time), by the longest boot so far."""
    rc, longest = 0, 0.0
    for k in range(0, len(order), batch):
        specs = order[k:k + batch]
        with open(lock, "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            if until and time.time() + longest > until:
                print(f"overcommit: {len(order) - k} runs left out: they would end after the deadline", flush=True)
                break
            print("overcommit: " + ", ".join(f"run {s['index']}: {s['scenario']} {s['policy']}#{s['rep']}"
                                             for s in specs), flush=True)
            t0 = time.time()
            rc = run_lab(dict(cfg, runs=specs), run_dir) or rc
            longest = max(longest, time.time() - t0)
    return rc


def ensure_gnuplot():
    """gnuplot-nox, through tests/lib/common.sh as the setup scripts install their packages."""
    if shutil.which("gnuplot"):
        return
    script = '. "$1" overcommit && ensure_packages gnuplot-nox'
    if subprocess.run(["bash", "-c", script, "bash", str(TOP / "tests" / "lib" / "common.sh")]).returncode != 0:
        sys.exit("overcommit: gnuplot is needed for the plots")


# ---------------------------------------------------------------------------- figures

def delta(run, path):
    """end - start of a counter of the host ("host", keys...) or summed over the guests ("guests", key)."""
    where, *keys = path
    if where == "host":
        a, b = run["host"]["start"], run["host"]["end"]
        for k in keys:
            a, b = a[k], b[k]
        return b - a
    return sum(g["end"][keys[0]] - g["start"][keys[0]] for g in run["guests"].values())


def phase_rate(p):
    """Records per second of a phase, as ebizzy reports it; a killed phase reports nothing."""
    run_ms = p["elapsed_ms"] - p["fill_ms"]
    return p["records"] * 1000 / run_ms if p["done"] and run_ms > 0 else 0.0


def metrics(run):
    g = run["guests"]
    m = {
        "swapout": delta(run, ("host", "vmstat", "pswpout")),
        "swapin": delta(run, ("host", "vmstat", "pswpin")),
        "qemu_majflt": delta(run, ("guests", "qemu_majflt")),
        "guest_swapin": delta(run, ("guests", "pswpin")),
        "guest_swapout": delta(run, ("guests", "pswpout")),
        "guest_majflt": delta(run, ("guests", "pgmajfault")),
        "oom": delta(run, ("guests", "oom_kill")),
        "killed": sum(not p["done"] for x in g.values() for p in x["phases"]),
        "recs_down": sum(map(phase_rate, g["down"]["phases"])),
        "recs_up": sum(map(phase_rate, g["up"]["phases"])),
        "host_some": delta(run, ("host", "psi", "some")) / 1e6,
        "host_full": delta(run, ("host", "psi", "full")) / 1e6,
        "guest_some": delta(run, ("guests", "psi_some")) / 1e6,
        "guest_full": delta(run, ("guests", "psi_full")) / 1e6,
        "elapsed_down": g["down"]["phases"][-1]["end"] - g["down"]["phases"][0]["start"],
        "elapsed_up": g["up"]["phases"][-1]["end"] - g["up"]["phases"][0]["start"],
        "fill": sum(p["fill_ms"] for x in g.values() for p in x["phases"]) / 1000,
        "thp_fallback": delta(run, ("guests", "thp_fault_fallback")),
        "daemon_cpu": run["daemon"]["cpu"],
    }
    m["recs"] = m["recs_down"] + m["recs_up"]
    m.update(normalised(run))
    m.update(calm_metrics(run))
    return m


def pressure_start(run):
    """When the run's host pressure began (experiment seconds): the first balloon inflation ordered,
    host swap-out, or host stall (PSI some) of more than 10 ms in a sample interval, whichever came
    first; the run's end if none did."""
    t = [(d["t_usec"] - run["start_usec"]) / 1e6 for d in run["decisions"] if d["action"] == "inflate"]
    for a, b in zip(run["samples"], run["samples"][1:]):
        if b["host"]["vmstat"]["pswpout"] > a["host"]["vmstat"]["pswpout"] or \
                b["host"]["psi"]["some"] - a["host"]["psi"]["some"] > 10000:
            t.append(a["t"])
            break
    return min(t, default=run["elapsed"])


def normalised(run):
    """Records per second relative to the run's own rate before any pressure: the mean rate of the
    phases (both guests) that ended before pressure_start() is the run's 1.0, the nested machine's
    speed during that run; the phases after it, and the calm's, are given as a share of it. None
    when no phase ended before the pressure."""
    t0 = pressure_start(run)
    phases = [p for g in run["guests"].values() for p in g["phases"]]
    before = [phase_rate(p) for p in phases if p["done"] and p["end"] is not None and p["end"] <= t0]
    after = [phase_rate(p) for p in phases if p["end"] is None or p["end"] > t0]
    calm = [phase_rate(p) for g in run["guests"].values() for p in g.get("calm_phases", ())]
    base = statistics.mean(before) if before else None
    return {
        "pressure_start": t0,
        "base_rate": base,
        "norm_rate": statistics.mean(after) / base if base and after else None,
        "norm_calm_rate": statistics.mean(calm) / base if base and calm else None,
    }


def calm_metrics(run):
    """The calm phase: per guest, how long after it began the balloon was within 4 MiB of where it
    ended (None: it did not grow by 16 MiB), its size at the end, and the change of its caches and
    available memory (QEMU's guest-stats) over the calm."""
    calm = run.get("calm")
    if not calm:
        return {}
    m = {}
    for vm in run["guests"]:
        ss = [s for s in run["samples"] if s["t"] >= calm["start"]]
        first, last = ss[0][vm]["actual"], calm["stats_end"][vm]["actual"]
        back = None
        if last - first >= 16 * MIB:
            back = next(s["t"] - calm["start"] for s in ss if s[vm]["actual"] >= last - 4 * MIB)
        a, b = calm["stats_start"][vm], calm["stats_end"][vm]
        m[f"giveback_{vm}"] = back
        m[f"end_mib_{vm}"] = last / MIB
        m[f"start_mib_{vm}"] = first / MIB
        m[f"caches_{vm}"] = ((b["caches"] or 0) - (a["caches"] or 0)) / MIB
        m[f"avail_{vm}"] = ((b["available"] or 0) - (a["available"] or 0)) / MIB
    m["giveback"] = max((m[f"giveback_{vm}"] for vm in run["guests"] if m[f"giveback_{vm}"] is not None),
                        default=None)
    m["calm_oom"] = sum(calm["counters_end"][vm]["oom_kill"] - run["guests"][vm]["end"]["oom_kill"]
                        for vm in run["guests"])
    return m


COLUMNS = (  # key, header, format
    ("swapout", "host swap-out (pages)", "{:.0f}"),
    ("swapin", "host swap-in (pages)", "{:.0f}"),
    ("qemu_majflt", "QEMU major faults", "{:.0f}"),
    ("oom", "guest OOM kills", "{:.0f}"),
    ("recs", "records/s (the phases' rates summed)", "{:.0f}"),
    ("host_some", "host stall some / full (s)", "{:.1f}"),
    ("guest_some", "guest stall some / full (s)", "{:.1f}"),
    ("elapsed", "elapsed down / up (s)", "{:.0f}"),
    ("guest_majflt", "guest major faults", "{:.0f}"),
    ("guest_swap", "guest swap in / out (pages)", "{:.0f}"),
    ("norm_rate", "records/s under pressure / before it", "{:.2f}"),
)

CALM_COLUMNS = (
    ("giveback", "memory back (s): down / up", "{:.0f}"),
    ("end_mib", "balloon at the calm's start -> end (MiB): down / up", "{:.0f}"),
    ("caches", "guest caches change (MiB): down / up", "{:+.1f}"),
    ("avail", "guest available change (MiB): down / up", "{:+.0f}"),
    ("norm_calm_rate", "calm records/s / before pressure", "{:.2f}"),
    ("calm_oom", "OOM kills in the calm", "{:.0f}"),
)
# Columns showing two figures: the second key of each.
PAIRS = {"host_some": ("host_some", "host_full"),
         "guest_some": ("guest_some", "guest_full"), "elapsed": ("elapsed_down", "elapsed_up"),
         "guest_swap": ("guest_swapin", "guest_swapout")}


def spread(values, fmt):
    """ "median (min-max)"; runs without the figure are left out, "n/k" says how many had it."""
    have = [v for v in values if v is not None]
    if not have:
        return "—"
    if len(have) < len(values):
        return f"{spread(have, fmt)} [{len(have)}/{len(values)}]"
    values = have
    med = statistics.median(values)
    if len(values) == 1 or min(values) == max(values):
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def cell(ms, key, fmt):
    if key in PAIRS:
        a, b = PAIRS[key]
        return f"{spread([m[a] for m in ms], fmt)} / {spread([m[b] for m in ms], fmt)}"
    if key == "end_mib":
        return " / ".join(f"{spread([m[f'start_mib_{vm}'] for m in ms], fmt)} -> "
                          f"{spread([m[f'end_mib_{vm}'] for m in ms], fmt)}" for vm in ("down", "up"))
    if key in ("giveback", "caches", "avail"):
        return " / ".join(spread([m.get(f"{key}_{vm}") for m in ms], fmt) for vm in ("down", "up"))
    return spread([m.get(key) for m in ms], fmt)


def table(by_policy, columns=COLUMNS):
    lines = ["| policy | runs | " + " | ".join(h for _, h, _ in columns) + " |",
             "|---|--:|" + "--:|" * len(columns)]
    for policy, ms in by_policy.items():
        lines.append(f"| {policy} | {len(ms)} | " + " | ".join(cell(ms, k, f) for k, _, f in columns) + " |")
    return "\n".join(lines)


def differs(ms, key, a, b):
    """Whether policies a and b differ on a figure by more than the spread: their runs' ranges do not
    overlap. The comparison the tables allow; None with fewer than two runs of either (one run has
    no spread)."""
    va, vb = [m[key] for m in ms.get(a, ()) if m.get(key) is not None], [m[key] for m in ms.get(b, ())
                                                                         if m.get(key) is not None]
    if len(va) < 2 or len(vb) < 2:
        return None
    return max(va) < min(vb) or max(vb) < min(va)


def run_table(runs, ms, keys=("swapout", "swapin", "qemu_majflt", "oom", "killed", "recs_down", "recs_up",
                               "base_rate", "norm_rate", "pressure_start", "host_some", "host_full", "guest_some",
                               "guest_full", "elapsed_down", "elapsed_up", "fill", "giveback_down", "giveback_up",
                               "end_mib_down", "end_mib_up", "caches_down", "caches_up", "daemon_cpu")):
    lines = ["| run | policy | " + " | ".join(keys) + " |", "|--:|---|" + "--:|" * len(keys)]
    for r, m in zip(runs, ms):
        lines.append(f"| {r['index']} | {r['policy']} | " +
                     " | ".join("—" if m.get(k) is None else f"{m[k]:.1f}" if isinstance(m[k], float) else str(m[k])
                                for k in keys) + " |")
    return "\n".join(lines)


def reaction(runs):
    """Host trigger -> balloon command sent (the daemon's own figure), and, for the balloons at rest
    when the trigger fired, -> first memory back (the first BALLOON_CHANGE) -> balloon at the target
    that decision set (or past it); milliseconds."""
    sent, first, reached = [], [], []
    for r in runs:
        off = r["realtime_offset_usec"]
        events = {vm: sorted((e["t_usec"] - off, e["actual"]) for e in ev) for vm, ev in r["balloon_events"].items()}
        for lat in r["latencies"]:
            sent.append(lat["usec"] / 1000)
            trig = lat["t_usec"] - lat["usec"]
            for d in r["decisions"]:
                ev = events.get(d["vm"], ())
                if d["action"] != "inflate" or not trig <= d["t_usec"] <= lat["t_usec"] + 50000 or \
                        any(trig - 2e6 <= t < trig for t, _ in ev):
                    continue
                after = [(t, a) for t, a in ev if t >= trig]
                if after:
                    first.append((after[0][0] - trig) / 1000)
                hit = next((t for t, a in after if a <= d["target"] + MIB), None)
                if hit is not None:
                    reached.append((hit - trig) / 1000)
    return sent, first, reached


def fmt_reaction(name, values):
    if not values:
        return f"{name}: no events"
    return (f"{name}: {len(values)} events, p50 {percentile(values, 50):.1f} ms, "
            f"p99 {percentile(values, 99):.1f} ms, max {max(values):.1f} ms")


def read_trace(path, start_usec):
    """(t, {vm: (actual, target, memory_high)}) per recorded decision."""
    out = []
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            out.append(((rec["host"]["now_usec"] - start_usec) / 1e6,
                        {v["name"]: (v["actual"], v["target"], v["memory_high"]) for v in rec["vms"]}))
    return out


def plot(run, trace_path, png, title):
    """Guest sizes (actual, target, memory.high, working set), host memory, and pressure over time."""
    samples = run["samples"]
    phases = {vm: g["phases"] + g.get("calm_phases", []) for vm, g in run["guests"].items()}
    calm = run.get("calm")
    marker = (f'set arrow 1 from {calm["start"]}, graph 0 to {calm["start"]}, graph 1 nohead dt 4 lc rgb "#2ca02c"\n'
              f'set label 1 "calm: host limit lifted" at {calm["start"]}, graph 0.95 offset 0.5,0 tc rgb "#2ca02c"'
              if calm else "")

    def ws(vm, t):
        return next((p["chunks"] for p in phases[vm] if p["start"] <= t < (p["end"] or 1e9)), 0)

    def pct(a, b, key):
        dt = b["t"] - a["t"]
        return (key(b) - key(a)) / dt / 1e4 if dt > 0 else 0

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "samples.tsv"
        with open(data, "w") as f:
            for a, b in zip(samples, samples[1:]):
                row = [b["t"]]
                for vm in ("down", "up"):
                    high = b[vm]["memory_high"]
                    row += [b[vm]["actual"] / MIB, (high if high is not None else float("nan")) / MIB, ws(vm, b["t"]),
                            pct(a, b, lambda s: s[vm]["psi"]["some"])]
                row += [b["host"]["current"] / MIB, b["host"]["swap"] / MIB,
                        pct(a, b, lambda s: s["host"]["psi"]["some"]), pct(a, b, lambda s: s["host"]["psi"]["full"]),
                        (b["host"]["vmstat"]["pswpout"] - a["host"]["vmstat"]["pswpout"]) * PAGE / MIB / (b["t"] - a["t"])]
                f.write("\t".join(f"{x:.3f}" for x in row) + "\n")
        targets = Path(tmp) / "targets.tsv"
        with open(targets, "w") as f:
            for t, vms in read_trace(trace_path, run["start_usec"]):
                if t >= 0 and "down" in vms and "up" in vms:
                    f.write(f"{t:.3f}\t{vms['down'][1] / MIB:.3f}\t{vms['up'][1] / MIB:.3f}\n")
        host_mib = int(run["config"]["host_mem"].rstrip("M"))
        xmax = max(s["t"] for s in samples)
        script = f"""
set terminal pngcairo size 900,900 font ",9"
set output '{png}'
set datafile separator "\\t"
set multiplot layout 3,1 title "{title}"
set xrange [0:{xmax:.0f}]
set grid
set key outside right top
set lmargin 10
set rmargin 26
{marker}
set ylabel "guest MiB"
set yrange [0:{GUEST_MIB * 2 + 16}]
plot '{data}' u 1:2 w l lw 2 lc rgb "#1f77b4" t "down actual", \\
     '{targets}' u 1:2 w steps dt 2 lc rgb "#1f77b4" t "down target", \\
     '{data}' u 1:3 w l dt 3 lc rgb "#1f77b4" t "down memory.high", \\
     '{data}' u 1:4 w steps lc rgb "#9ecae1" t "down working set", \\
     '{data}' u 1:6 w l lw 2 lc rgb "#d62728" t "up actual", \\
     '{targets}' u 1:3 w steps dt 2 lc rgb "#d62728" t "up target", \\
     '{data}' u 1:7 w l dt 3 lc rgb "#d62728" t "up memory.high", \\
     '{data}' u 1:8 w steps lc rgb "#fcbba1" t "up working set"
set ylabel "host MiB"
set yrange [0:*]
set y2label "swap-out MiB/s"
set y2tics
plot '{data}' u 1:10 w l lw 2 lc rgb "black" t "host used", \\
     {host_mib} w l dt 2 lc rgb "black" t "host MemoryMax", \\
     '{data}' u 1:11 w l lc rgb "#ff7f0e" t "in swap", \\
     '{data}' u 1:14 axes x1y2 w impulses lc rgb "#8c564b" t "swap-out rate"
unset y2label
unset y2tics
set ylabel "stalled %"
set xlabel "seconds"
set yrange [0:100]
plot '{data}' u 1:12 w l lw 2 lc rgb "black" t "host some", \\
     '{data}' u 1:13 w l lc rgb "#7f7f7f" t "host full", \\
     '{data}' u 1:5 w l lc rgb "#1f77b4" t "down some", \\
     '{data}' u 1:9 w l lc rgb "#d62728" t "up some"
unset multiplot
"""
        subprocess.run(["gnuplot"], input=script, text=True, check=True)


def savings_metrics(run):
    """The savings run's figures: the share of provisioned guest memory in the balloons (returned to
    the host), averaged over the samples, in all and per guest; every guest's stall (PSI some) as a
    share of the run; OOM kills; the workloads' rates against their calibration (steady, growing),
    the bursts' allocation times."""
    mib = GUEST_MIB
    g, ss, el = run["guests"], run["samples"], run["elapsed"]
    m = {"returned": statistics.mean(sum(mib - s[vm]["actual"] / MIB for vm in g) / (mib * len(g)) for s in ss)}
    for vm in g:
        m[f"returned_{vm}"] = statistics.mean(1 - s[vm]["actual"] / MIB / mib for s in ss)
        m[f"stall_{vm}"] = (g[vm]["end"]["psi_some"] - g[vm]["start"]["psi_some"]) / 1e6 / el
    m["stall_max"] = max(m[f"stall_{vm}"] for vm in g)
    m["oom"] = sum(g[vm]["end"]["oom_kill"] - g[vm]["start"]["oom_kill"] for vm in g)
    m["killed"] = sum(not p["done"] for x in g.values() for p in x["phases"]) + sum(not b["ok"] for b in run["bursts"])
    for vm in ("steady", "growing"):
        rates = [phase_rate(p) for p in g[vm]["phases"]]
        base = run["calibration"][vm]["rate"]
        m[f"rate_{vm}"] = statistics.mean(rates) / base if rates and base else None
    m["burst_ms"] = statistics.median(b["alloc_ms"] for b in run["bursts"]) if run["bursts"] else None
    m["swapout"] = delta(run, ("host", "vmstat", "pswpout"))
    return m


SAVINGS_COLUMNS = (
    ("returned", "guest memory returned, average", "{:.1%}"),
    ("returned_each", "returned: idle / bursty / steady / growing", "{:.0%}"),
    ("stall_each", "guest stall, share of the run: idle / bursty / steady / growing", "{:.2%}"),
    ("oom", "guest OOM kills", "{:.0f}"),
    ("rate_steady", "steady records/s / calibration", "{:.2f}"),
    ("rate_growing", "growing records/s / calibration", "{:.2f}"),
    ("burst_ms", "bursty: its allocation took (ms)", "{:.0f}"),
    ("swapout", "host swap-out (pages)", "{:.0f}"),
)
SAVINGS_VMS = ("idle", "bursty", "steady", "growing")


def savings_cell(ms, key, fmt):
    if key.endswith("_each"):
        return " / ".join(spread([m[f"{key[:-5]}_{vm}"] for m in ms], fmt) for vm in SAVINGS_VMS)
    return spread([m.get(key) for m in ms], fmt)


def savings_table(ms):
    lines = ["| policy | runs | " + " | ".join(h for _, h, _ in SAVINGS_COLUMNS) + " |",
             "|---|--:|" + "--:|" * len(SAVINGS_COLUMNS)]
    for policy, pm in ms.items():
        lines.append(f"| {policy} | {len(pm)} | " +
                     " | ".join(savings_cell(pm, k, f) for k, _, f in SAVINGS_COLUMNS) + " |")
    return "\n".join(lines)


def beyond(d):
    return "yes" if d else "no" if d is not None else "n/a (fewer than 2 runs)"


def savings_targets(ms):
    """The issue's targets for the default policy in the savings scenario, with their numbers."""
    if "autoballoon" not in ms:
        return []
    a = ms["autoballoon"]
    med = lambda pm, k: statistics.median(m[k] for m in pm)  # noqa: E731
    lines = [f"returned >= 30% on average: {med(a, 'returned'):.1%} (median of {len(a)} runs; "
             f"{min(m['returned'] for m in a):.1%}–{max(m['returned'] for m in a):.1%}): "
             f"{'met' if med(a, 'returned') >= 0.30 else 'NOT met'}",
             f"0 guest OOM kills: {sum(m['oom'] for m in a)} over {len(a)} runs: "
             f"{'met' if sum(m['oom'] for m in a) == 0 else 'NOT met'}",
             f"each guest's stall < 1% of the run: worst guest of the worst run "
             f"{max(m['stall_max'] for m in a):.2%}: {'met' if max(m['stall_max'] for m in a) < 0.01 else 'NOT met'}"]
    if "proxmox" in ms:
        x = ms["proxmox"]
        more = med(a, "returned") > med(x, "returned")
        less = med(a, "stall_max") < med(x, "stall_max")
        lines.append(f"better than proxmox on memory returned and guest stall at once: returned "
                     f"{med(a, 'returned'):.1%} vs {med(x, 'returned'):.1%}, worst guest's stall "
                     f"{med(a, 'stall_max'):.2%} vs {med(x, 'stall_max'):.2%} (medians): "
                     f"{'met' if more and less else 'NOT met'}; beyond the spread: returned "
                     f"{beyond(differs(ms, 'returned', 'autoballoon', 'proxmox'))}, stall "
                     f"{beyond(differs(ms, 'stall_max', 'autoballoon', 'proxmox'))}")
    return lines


def plot_savings(run, png, title):
    """Each guest's balloon, the host's memory and swap over time."""
    ss = run["samples"]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "samples.tsv"
        with open(data, "w") as f:
            for s in ss:
                f.write("\t".join(f"{x:.3f}" for x in [s["t"]] + [s[vm]["actual"] / MIB for vm in SAVINGS_VMS] +
                                  [s["host"]["current"] / MIB, s["host"]["swap"] / MIB]) + "\n")
        host_mib = int(run["config"]["savings"]["host_mem"].rstrip("M"))
        colors = ("#7f7f7f", "#ff7f0e", "#1f77b4", "#d62728")
        guests = ", \\\n     ".join(f"'{data}' u 1:{i + 2} w l lw 2 lc rgb \"{c}\" t \"{vm}\""
                                     for i, (vm, c) in enumerate(zip(SAVINGS_VMS, colors)))
        script = f"""
set terminal pngcairo size 900,600 font ",9"
set output '{png}'
set datafile separator "\\t"
set multiplot layout 2,1 title "{title}"
set grid
set key outside right top
set lmargin 10
set rmargin 22
set ylabel "balloon actual MiB"
set yrange [0:{GUEST_MIB + 16}]
plot {guests}
set ylabel "host MiB"
set xlabel "seconds"
set yrange [0:*]
plot '{data}' u 1:6 w l lw 2 lc rgb "black" t "host used", \\
     {host_mib} w l dt 2 lc rgb "black" t "host MemoryMax", \\
     '{data}' u 1:7 w l lc rgb "#ff7f0e" t "in swap"
unset multiplot
"""
        subprocess.run(["gnuplot"], input=script, text=True, check=True)


def keep_raw(runs_dir, src):
    """Each run's JSON, xz-compressed, next to the tables (the traces stay in the run directory)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.glob("run-*.json")):
        dst = runs_dir / (p.name + ".xz")
        if not dst.exists():
            dst.write_bytes(lzma.compress(p.read_bytes(), preset=9))


def median_run(rs, ms, key):
    """The run with the median figure (the lower one of an even count) and its metrics."""
    return sorted(zip(rs, ms), key=lambda rm: rm[1][key])[(len(rs) - 1) // 2]


def analyze(run_dir, out_dir):
    bench = run_dir / "collect"
    if not any(bench.glob("run-*.json")):
        bench = run_dir / "out" / "bench"
    runs = sorted((json.loads(p.read_text()) for p in bench.glob("run-*.json")), key=lambda r: r["index"])
    if not runs:
        sys.exit(f"overcommit: no results in {bench}")
    out_dir.mkdir(parents=True, exist_ok=True)
    keep_raw(out_dir / "runs", bench)
    ensure_gnuplot()
    over = [r for r in runs if r.get("scenario", "overcommit") == "overcommit"]
    sav = [r for r in runs if r.get("scenario") == "savings"]
    if over:
        analyze_overcommit(over, bench, out_dir)
    if sav:
        analyze_savings(sav, out_dir)


def analyze_savings(runs, out_dir):
    cfg = runs[0]["config"]
    by_policy = {p: [r for r in runs if r["policy"] == p] for p in POLICIES if any(r["policy"] == p for r in runs)}
    ms = {p: [savings_metrics(r) for r in rs] for p, rs in by_policy.items()}
    for policy, rs in by_policy.items():
        rep, m = median_run(rs, ms[policy], "returned")
        plot_savings(rep, out_dir / f"savings-{policy}.png",
                     f"Policy={policy} (run {rep['index']}): {m['returned']:.1%} returned, worst guest stall "
                     f"{m['stall_max']:.2%}, OOM kills {m['oom']}")
    every = ["| run | policy | returned | " + " | ".join(f"stall {vm}" for vm in SAVINGS_VMS) +
             " | OOM | killed | steady rate | growing rate | burst ms | swap-out |",
             "|--:|---|--:|" + "--:|" * (len(SAVINGS_VMS) + 6)]
    for r in runs:
        m = savings_metrics(r)
        f = lambda v, fmt: "—" if v is None else fmt.format(v)  # noqa: E731
        every.append(f"| {r['index']} | {r['policy']} | {m['returned']:.1%} | " +
                     " | ".join(f"{m[f'stall_{vm}']:.2%}" for vm in SAVINGS_VMS) +
                     f" | {m['oom']} | {m['killed']} | {f(m['rate_steady'], '{:.2f}')} | "
                     f"{f(m['rate_growing'], '{:.2f}')} | {f(m['burst_ms'], '{:.0f}')} | {m['swapout']} |")
    report = [
        "# Savings within a stall budget: results",
        "",
        f"Scenario (TMO's metric, ASPLOS'22): {describe_savings(cfg)}.",
        "",
        "Returned: the balloons' share of the provisioned guest memory (MaxMemory - actual), averaged over the "
        "run's samples. Stall: the guest's PSI memory some total over the run, as a share of the run's time. "
        "Rates: each run's records/s relative to its own calibration before any pressure.",
        "",
        "Median (min–max) over the runs of each policy:",
        "",
        savings_table(ms),
        "",
        "The default policy's targets:",
        "",
    ] + [f"* {t}" for t in savings_targets(ms)] + ["", "Every run:", ""] + every + [""]
    (out_dir / "savings.md").write_text("\n".join(report))
    print("\n".join(report))


def analyze_overcommit(runs, bench, out_dir):
    cfg = runs[0]["config"]
    by_policy = {}
    for r in runs:
        by_policy.setdefault(r["policy"], []).append(r)
    by_policy = {p: by_policy[p] for p in POLICIES if p in by_policy}
    run_metrics = [metrics(r) for r in runs]
    ms = {p: [m for r, m in zip(runs, run_metrics) if r["policy"] == p] for p in by_policy}

    plots = {}
    for policy, rs in by_policy.items():
        rep, m = median_run(rs, ms[policy], "swapout")
        png = out_dir / f"overcommit-{policy}.png"
        plot(rep, bench / f"run-{rep['index']}.trace", png,
             f"Policy={policy} (run {rep['index']}): host swap-out {m['swapout']} pages, "
             f"guest OOM kills {m['oom']}, {m['recs']:.0f} records/s")
        plots[policy] = png

    reaction_path = bench / "reaction.json"
    reaction_runs = [json.loads(reaction_path.read_text())] if reaction_path.exists() else []
    sent, first, reached = reaction(reaction_runs + [r for r in runs if r["policy"] == "autoballoon"])
    calm = any(r.get("calm") for r in runs)
    report = [
        "# Overcommit benchmark: results",
        "",
        f"Scenario: {describe(cfg)}.",
        "",
        "Median (min–max) over the runs of each policy. Records/s under pressure / before it: the mean rate of "
        "the phases that ran into host pressure (the first inflation, host swap-out or host stall) over the "
        "mean rate of the phases that ended before it, in the same run: 1.00 is the run's own speed before "
        "any pressure, whatever the nested machine's speed was then.",
        "",
        table(ms),
        "",
    ]
    if calm:
        report += [
            "The calm phase (the host's limit lifted, a steady load in both guests): memory back is the time from "
            "its start until the balloon was within 4 MiB of where it ended, for a balloon that grew by 16 MiB "
            "(— when it did not); guest caches are QEMU's stat-disk-caches (the guests have no disk: their "
            "page cache is their initramfs, which no balloon takes).",
            "",
            table(ms, CALM_COLUMNS),
            "",
        ]
    report += ["Throughput, beyond the spread: the ranges of the normalised rate of two policies do not overlap: " +
               ", ".join(f"{a} vs {b}: {beyond(d)}"
                         for i, a in enumerate(by_policy) for b in list(by_policy)[i + 1:]
                         for d in [differs(ms, 'norm_rate', a, b)]), ""]
    if reaction_runs or sent:
        report += [
            "Reaction of `Policy=autoballoon` in the lab, host trigger fd readable -> ... (host-triggered "
            "inflations of the runs above, and the reaction run's if there was one):",
            "",
            "* " + fmt_reaction("balloon command sent (the daemon's log)", sent),
            "* " + fmt_reaction("first memory back (first BALLOON_CHANGE)", first),
            "* " + fmt_reaction("balloon at its target", reached),
            "",
        ]
    report += ["Every run:", "", run_table(runs, run_metrics), ""]
    criteria = check_criteria(ms)
    if criteria:
        report[report.index("Every run:"):report.index("Every run:")] = [
            "The success criteria of `Policy=autoballoon` (medians):", ""] + [f"* {c}" for c in criteria] + [""]
    (out_dir / "overcommit.md").write_text("\n".join(report))
    print("\n".join(report))
    for p, png in plots.items():
        print(f"plot {p}: {png}")


def check_criteria(ms):
    """The issue's success criteria for the default policy, one line each, with the numbers of the
    table: the median over the runs of each figure (records/s: of each run's down + up)."""
    if not all(p in ms for p in POLICIES):
        return []

    def med(policy, key):
        return statistics.median(m[key] for m in ms[policy])

    def verdict(ok):
        return "met" if ok else "NOT met"

    lines = []
    swap_a, swap_n = med("autoballoon", "swapout"), med("none", "swapout")
    ratio = swap_n / swap_a if swap_a else float("inf")
    oom = sum(m["oom"] for m in ms["autoballoon"])
    rec_a, rec_n = med("autoballoon", "recs"), med("none", "recs")
    lines.append(f"host swap-out >= 50x lower than none: {ratio:.1f}x ({swap_n:.0f} / {swap_a:.0f} pages): "
                 f"{verdict(ratio >= 50)}")
    lines.append(f"0 guest OOM kills: {oom} over {len(ms['autoballoon'])} runs: {verdict(oom == 0)}")
    lines.append(f"throughput not below none: {rec_a:.0f} vs {rec_n:.0f} records/s "
                 f"({100 * (rec_a - rec_n) / rec_n:+.1f}%): {verdict(rec_a >= rec_n)}")
    for p in ("rfc", "proxmox"):
        swap, stall = med(p, "swapout"), med(p, "guest_some")
        stall_a = med("autoballoon", "guest_some")
        killed = sum(m["killed"] for m in ms[p])
        lines.append(f"better than {p} on host swap-out and guest stall: swap-out {swap_a:.0f} vs {swap:.0f} "
                     f"pages ({verdict(swap_a <= swap)}), guest stall {stall_a:.1f} vs {stall:.1f} s "
                     f"({verdict(stall_a <= stall)}); {p} lost {killed} phases to the OOM killer over "
                     f"{len(ms[p])} runs")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per policy and scenario (default 5)")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--phase-seconds", type=int, default=30)
    ap.add_argument("--calm-seconds", type=int, default=90)
    ap.add_argument("--savings-seconds", type=int, default=200)
    ap.add_argument("--daemon", action="append", default=[], metavar="KEY=VALUE",
                    help="an autoballoon.conf [Daemon] line for every run, e.g. IdleReclaimRate=16M "
                    "(recorded in each run's config)")
    ap.add_argument("--lock", metavar="FILE", help="each run (or --batch runs) in an L1 boot of its own under "
                    "flock FILE")
    ap.add_argument("--batch", type=int, default=1, help="with --lock: runs per L1 boot (default 1)")
    ap.add_argument("--until", metavar="HH:MM", help="with --lock: start no boot that would end after this "
                    "time (UTC, today)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--analyze", type=Path, metavar="RUN_DIR", help="only analyze a finished run directory")
    args = ap.parse_args()

    run_dir = Path(os.environ.get("LAB_RUN_DIR") or
                   Path(os.environ.get("AUTOBALLOON_CACHE", "/var/cache/autoballoon")) / "lab" / "bench")
    if args.analyze:
        analyze(args.analyze, args.out)
        return 0
    if os.geteuid() != 0:
        sys.exit("overcommit: must run as root (the lab)")
    policies, scenarios = args.policies.split(","), args.scenarios.split(",")
    unknown = set(policies) - set(POLICIES) | set(scenarios) - set(SCENARIOS)
    if unknown:
        sys.exit(f"overcommit: unknown policies or scenarios {sorted(unknown)}")
    cfg = scenario(args.phase_seconds, args.calm_seconds, args.savings_seconds)
    if args.daemon:
        cfg["daemon_extra"] = "".join(f"{line}\n" for line in args.daemon)
    collect = run_dir / "collect"
    first = 1 + max((int(p.stem.split("-")[1]) for p in collect.glob("run-*.json")), default=0)
    order = run_order(policies, scenarios, args.runs, first)
    print(f"overcommit: {describe(cfg)}; savings: {describe_savings(cfg)}; {len(order)} runs from run {first} "
          f"(results gathered in {collect})", flush=True)
    ensure_gnuplot()
    if args.lock:
        until = None
        if args.until:
            hh, mm = map(int, args.until.split(":"))
            now = time.gmtime()
            until = calendar.timegm((now.tm_year, now.tm_mon, now.tm_mday, hh, mm, 0))
        rc = run_series(cfg, order, run_dir, args.lock, until, args.batch)
    else:
        rc = run_lab(dict(cfg, runs=order), run_dir)
    if not any(collect.glob("run-*.json")):
        sys.exit(f"overcommit: the lab run failed ({rc}) and left no results")
    if rc != 0:
        print(f"overcommit: the lab run reported failures ({rc}); analyzing what there is", flush=True)
    analyze(run_dir, args.out)
    return rc


if __name__ == "__main__":
    sys.exit(main())

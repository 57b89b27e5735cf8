#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The overcommit benchmark: the 2013 automatic-ballooning RFC's experiment (seed 004), scaled down, in
the lab's systemd + cgroup v2 host (L1), once per policy mode and repetition on one L1 boot; then a
Markdown table (median and spread per mode), one plot per mode and the daemon's reaction. A benchmark:
it prints figures and gates nothing.

    tests/bench/overcommit.py [--runs 3] [--policies none,rfc,proxmox,autoballoon] [--phase-seconds 60]
                              [--out DIR] [--analyze RUN_DIR]

As root; ~7 min per run on a quiet 2-core machine (12 runs: ~85 min). The lab is built and booted by
tests/lab/run.sh with tests/bench/overcommit-lab.py as its payload (in $LAB_RUN_DIR, default
<cache>/lab/bench); the results go to --out (default tests/bench/results). --analyze redoes the table
and plots from a finished run directory without running anything. Installs gnuplot-nox if missing.

The scaled scenario (scenario() below, printed at the start and written next to the results):
  RFC: host 2 GB, two 1.3 GB guests; vm-down runs ebizzy with 1024, 824, 624, 424, 224 chunks of 1 MB,
  60 s each; vm-up the reverse, starting 60 s later.
  Here: two 256 MiB guests; the host is balloon.slice with MemoryMax=532M: the RFC's proportion for
  the guests' memory (256 / 394 = 1.3 / 2) plus QEMU's own ~69 MiB per VM under TCG (see
  QEMU_OVERHEAD_MIB). The chunk counts are the RFC's divided by 6.4, rounded (160, 129, 98, 66, 35):
  1024 chunks are ~82% of what a 1.3 GB guest has available, 160 the same share of our guest's
  ~196 MiB. The working set is scaled more than the guest because a small guest's kernel needs the
  same ~60 MiB as a big one's. 60 s phases after the chunks are filled, vm-up one phase later.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP = HERE.parents[1]
sys.path.insert(0, str(TOP / "tests" / "lib"))
from ab.measure import percentile  # noqa: E402  (nearest rank, as the other benchmarks)
MIB = 1 << 20
PAGE = 4096
POLICIES = ("none", "rfc", "proxmox", "autoballoon")

RFC_HOST_MB, RFC_GUEST_MB, RFC_CHUNKS = 2048, 1331, (1024, 824, 624, 424, 224)
GUEST_MIB = 256
# 1024 chunks are ~82% of what a 1.3 GB guest has available; 160 are 82% of our guest's 196 MiB.
WORKING_SET_DIVISOR = 6.4
# QEMU's own memory per VM under TCG in L1 (its binary and libraries, TCG's buffers): two idle
# restored guests hold 274 MiB in their slices, 2 x 68 MiB of it guest memory. On top of the host's
# memory for guests, so that guest / host memory is the RFC's; a KVM host pays far less of it.
QEMU_OVERHEAD_MIB = 69


def scenario(phase_seconds):
    down = [round(c / WORKING_SET_DIVISOR) for c in RFC_CHUNKS]
    return {
        "variant": f"{GUEST_MIB}-nofpr",
        "host_mem": f"{round(GUEST_MIB * RFC_HOST_MB / RFC_GUEST_MB) + 2 * QEMU_OVERHEAD_MIB}M",
        "down": down,
        "up": down[::-1],
        "phase_seconds": phase_seconds,
        "offset_phases": 1,
        "sample_seconds": 2,
        "reaction_seconds": 240,
    }


def describe(cfg):
    return (f"host: balloon.slice MemoryMax={cfg['host_mem']} with L1's swap (HostPressure=slice); two guests "
            f"of {GUEST_MIB} MiB restored from a saved state (free page reporting off, THP on); vm-down: "
            f"{', '.join(map(str, cfg['down']))} chunks of 1 MiB, vm-up: {', '.join(map(str, cfg['up']))}, "
            f"{cfg['phase_seconds']} s each after filling, vm-up starting {cfg['offset_phases']} phase "
            f"({cfg['offset_phases'] * cfg['phase_seconds']} s) later")


# ---------------------------------------------------------------------------- running

def run_lab(cfg, run_dir):
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "overcommit.json"
    cfg_path.write_text(json.dumps(cfg, indent=1))
    shutil.rmtree(run_dir / "out", ignore_errors=True)
    env = dict(os.environ, LAB_RUN_DIR=str(run_dir), LAB_PAYLOAD=str(HERE / "overcommit-lab.py"),
               LAB_PAYLOAD_FILES=str(cfg_path), LAB_L2_VARIANTS=cfg["variant"],
               LAB_TIMEOUT=str(900 + 720 * len(cfg["runs"])))
    return subprocess.run([str(TOP / "tests" / "lab" / "run.sh")], env=env).returncode


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
)
# Columns showing two figures: the second key of each.
PAIRS = {"host_some": ("host_some", "host_full"),
         "guest_some": ("guest_some", "guest_full"), "elapsed": ("elapsed_down", "elapsed_up"),
         "guest_swap": ("guest_swapin", "guest_swapout")}


def spread(values, fmt):
    """ "median (min-max)" """
    med = statistics.median(values)
    if len(values) == 1 or min(values) == max(values):
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def cell(ms, key, fmt):
    if key in PAIRS:
        a, b = PAIRS[key]
        return f"{spread([m[a] for m in ms], fmt)} / {spread([m[b] for m in ms], fmt)}"
    return spread([m[key] for m in ms], fmt)


def table(by_policy):
    lines = ["| policy | runs | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
             "|---|--:|" + "--:|" * len(COLUMNS)]
    for policy, ms in by_policy.items():
        lines.append(f"| {policy} | {len(ms)} | " + " | ".join(cell(ms, k, f) for k, _, f in COLUMNS) + " |")
    return "\n".join(lines)


def run_table(runs, ms):
    keys = ("swapout", "swapin", "qemu_majflt", "oom", "killed", "recs_down", "recs_up", "host_some",
            "host_full", "guest_some", "guest_full", "elapsed_down", "elapsed_up", "fill", "thp_fallback",
            "daemon_cpu")
    lines = ["| run | policy | " + " | ".join(keys) + " |", "|--:|---|" + "--:|" * len(keys)]
    for r, m in zip(runs, ms):
        lines.append(f"| {r['index']} | {r['policy']} | " +
                     " | ".join(f"{m[k]:.1f}" if isinstance(m[k], float) else str(m[k]) for k in keys) + " |")
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
    phases = {vm: g["phases"] for vm, g in run["guests"].items()}

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


def analyze(run_dir, out_dir):
    bench = run_dir / "out" / "bench"
    runs = sorted((json.loads(p.read_text()) for p in bench.glob("run-*.json")), key=lambda r: r["index"])
    if not runs:
        sys.exit(f"overcommit: no results in {bench}")
    cfg = runs[0]["config"]
    by_policy = {}
    for r in runs:
        by_policy.setdefault(r["policy"], []).append(r)
    by_policy = {p: by_policy[p] for p in POLICIES if p in by_policy}
    run_metrics = [metrics(r) for r in runs]
    ms = {p: [m for r, m in zip(runs, run_metrics) if r["policy"] == p] for p in by_policy}

    out_dir.mkdir(parents=True, exist_ok=True)
    ensure_gnuplot()
    plots = {}
    for policy, rs in by_policy.items():
        # The run with the median host swap-out (the lower one of an even count).
        rep, m = sorted(zip(rs, ms[policy]), key=lambda rm: rm[1]["swapout"])[(len(rs) - 1) // 2]
        png = out_dir / f"overcommit-{policy}.png"
        plot(rep, bench / f"run-{rep['index']}.trace", png,
             f"Policy={policy} (run {rep['index']}): host swap-out {m['swapout']} pages, "
             f"guest OOM kills {m['oom']}, {m['recs']:.0f} records/s")
        plots[policy] = png

    reaction_path = bench / "reaction.json"
    reaction_runs = [json.loads(reaction_path.read_text())] if reaction_path.exists() else []
    sent, first, reached = reaction(reaction_runs + [r for r in runs if r["policy"] == "autoballoon"])
    report = [
        "# Overcommit benchmark: results",
        "",
        f"Scenario: {describe(cfg)}.",
        "",
        "Median (min–max) over the runs of each policy:",
        "",
        table(ms),
        "",
        "Reaction of `Policy=autoballoon` in the lab, host trigger fd readable -> ... (the reaction run: idle "
        "guests, a page-cache hog in balloon.slice just above what it holds, the balloons refilled to full between "
        "rounds; and any host-triggered inflation of the runs above):",
        "",
        "* " + fmt_reaction("balloon command sent (the daemon's log)", sent),
        "* " + fmt_reaction("first memory back (first BALLOON_CHANGE)", first),
        "* " + fmt_reaction("balloon at its target", reached),
        "",
        "Every run:",
        "",
        run_table(runs, run_metrics),
        "",
    ]
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
    ap.add_argument("--runs", type=int, default=3, help="runs per policy (default 3)")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--phase-seconds", type=int, default=60)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--analyze", type=Path, metavar="RUN_DIR", help="only analyze a finished run directory")
    args = ap.parse_args()

    if args.analyze:
        analyze(args.analyze, args.out)
        return 0
    if os.geteuid() != 0:
        sys.exit("overcommit: must run as root (the lab)")
    policies = args.policies.split(",")
    unknown = set(policies) - set(POLICIES)
    if unknown:
        sys.exit(f"overcommit: unknown policies {sorted(unknown)}")
    cfg = scenario(args.phase_seconds)
    # Interleaved, so that a slow stretch of the machine does not fall on one policy only.
    cfg["runs"] = [[p, rep + 1] for rep in range(args.runs) for p in policies]
    print(f"overcommit: {describe(cfg)}; {len(cfg['runs'])} runs", flush=True)
    ensure_gnuplot()
    run_dir = Path(os.environ.get("LAB_RUN_DIR") or
                   Path(os.environ.get("AUTOBALLOON_CACHE", "/var/cache/autoballoon")) / "lab" / "bench")
    rc = run_lab(cfg, run_dir)
    if not (run_dir / "out" / "bench").is_dir():
        sys.exit(f"overcommit: the lab run failed ({rc}) and left no results")
    if rc != 0:
        print(f"overcommit: the lab run reported failures ({rc}); analyzing what there is", flush=True)
    analyze(run_dir, args.out)
    return rc


if __name__ == "__main__":
    sys.exit(main())

# SPDX-License-Identifier: LGPL-2.1-or-later
"""What the tests and benchmarks measure: a process' counters, PSI files, percentiles."""

import os
from pathlib import Path


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


def psi(path):
    """Parses a PSI file: {"some": {"avg10": float, ..., "total": int}, "full": {...}}."""
    result = {}
    with open(path) as f:
        for line in f:
            kind, *fields = line.split()
            values = dict(field.split("=", 1) for field in fields)
            result[kind] = {k: int(v) if k == "total" else float(v) for k, v in values.items()}
    return result


def percentile(values, p):
    """The p-th percentile (nearest rank) of values."""
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]

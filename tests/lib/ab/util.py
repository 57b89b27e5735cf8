# SPDX-License-Identifier: LGPL-2.1-or-later
"""Small helpers every part of the harness uses."""

import os
import re
import tempfile
import time
from pathlib import Path

MiB = 1 << 20


def wait_until(fn, timeout, interval=0.1, what=None):
    """Calls fn() until it returns a true value (returned) or raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or fn}")
        time.sleep(interval)


def parse_size(size):
    """"512M", "1G", "4096" (bytes) or an int -> bytes."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"(\d+)([KMGT]?)i?B?", size.strip(), re.IGNORECASE)
    if not m:
        raise ValueError(f"bad size {size!r}")
    return int(m.group(1)) << (10 * " KMGT".index(m.group(2).upper() or " "))


def make_run_dir(prefix="abt-"):
    """A short directory in /tmp: AF_UNIX socket paths must stay under 108 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def tail(path, lines):
    """The last lines of a log file, or why it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"<{e}>"


def mounts():
    """(mount point, fs type, super options) from /proc/self/mountinfo."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fstype, _source, superopts = post.split()[:3]
            yield pre.split()[4], fstype, superopts.split(",")


def fs_type(path):
    """The type of the file system holding path (longest mount point prefix)."""
    path = os.path.realpath(path)
    best, best_type = "", None
    for mnt, fstype, _ in mounts():
        if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, best_type = mnt, fstype
    return best_type

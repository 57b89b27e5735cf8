# SPDX-License-Identifier: LGPL-2.1-or-later
"""The test's own cgroups, and placing a child process in cgroups before it runs."""

import itertools
import os
import secrets
import signal
import time
from pathlib import Path

from ab.measure import psi
from ab.util import mounts


def join_preexec(paths):
    """A preexec_fn that moves the child into each cgroup.procs file of paths before it execs and
    allocates. The files are checked here: a failing preexec_fn only says "Exception occurred in
    preexec_fn"."""
    paths = [str(p) for p in paths]
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no cgroup.procs file {path}")

    def join():
        for path in paths:
            with open(path, "w") as f:
                f.write(str(os.getpid()))
    return join


class TestCgroup:
    """The test's own cgroup tree, with a memory limit for host pressure and memory.pressure for PSI.

    Hybrid hosts (memory controller on cgroup v1, as on the development and CI machines): a v1
    memory cgroup below our own plus a matching cgroup2 directory below ours. Pure cgroup v2 hosts:
    one cgroup2 tree with the memory controller, below a cgroup delegated to us (run the tests or
    the demo in `systemd-run --scope -p Delegate=yes`, which tests/demo.sh does by itself): our own
    process moves to a "supervisor" leaf of that cgroup so that its children may have controllers.

    Never touches the files of cgroups it did not create or was not delegated.
    Sub-groups ("balloon.slice/balloon-vm1.slice", "hog") are made in every hierarchy.
    """

    __test__ = False  # not a pytest test class
    _counter = itertools.count(1)

    def __init__(self, name=None):
        self.name = name or f"abtest-{os.getpid()}-{next(self._counter)}-{secrets.token_hex(3)}"
        v1_mount = v2_mount = None
        for mnt, fstype, opts in mounts():
            if fstype == "cgroup" and "memory" in opts:
                v1_mount = mnt
            elif fstype == "cgroup2":
                v2_mount = mnt
        own_v1 = own_v2 = None
        with open("/proc/self/cgroup") as f:
            for line in f:
                _hid, controllers, path = line.rstrip("\n").split(":", 2)
                if "memory" in controllers.split(","):
                    own_v1 = path
                elif _hid == "0" and controllers == "":
                    own_v2 = path
        if not v2_mount or own_v2 is None:
            raise RuntimeError("no cgroup2 mount (needed for memory.pressure)")
        self.v2_parent = Path(v2_mount + own_v2.rstrip("/"))
        self.unified_root = self.v2_parent / self.name
        self._created = []  # in creation order: parents before children
        if v1_mount and own_v1 is not None:
            self.v2_only = False
            self.v1_parent = Path(v1_mount + own_v1.rstrip("/"))
            self.v1_root = self.v1_parent / self.name
            self.roots = (self.v1_root, self.unified_root)
        else:
            self.v2_only = True
            self.v1_root = None
            self.roots = (self.unified_root,)
            self._take_delegation()
        try:
            for root in self.roots:
                self._mkdir(root)
        except BaseException:
            self.cleanup()
            raise

    def _take_delegation(self):
        """Pure cgroup v2: the memory controller for our children. A cgroup with processes cannot
        give its children controllers, so ours move to a leaf first."""
        parent = self.v2_parent
        if "memory" not in (parent / "cgroup.controllers").read_text().split():
            raise RuntimeError(f"{parent} has no memory controller: run in a delegated cgroup "
                               "(systemd-run --scope -p Delegate=yes ...)")
        if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
            supervisor = parent / "supervisor"
            supervisor.mkdir(exist_ok=True)
            for pid in (parent / "cgroup.procs").read_text().split():
                try:
                    (supervisor / "cgroup.procs").write_text(pid)
                except ProcessLookupError:
                    pass
            (parent / "cgroup.subtree_control").write_text("+memory")

    def _mkdir(self, path):
        path.mkdir()
        self._created.append(path)
        if self.v2_only:
            # Children have memory.high, memory.max and memory.current only if we pass it on; a
            # leaf that gets processes must not have it (no internal processes).
            parent = path.parent
            if parent in self._created and "memory" not in (parent / "cgroup.subtree_control").read_text():
                (parent / "cgroup.subtree_control").write_text("+memory")

    def sub(self, rel=""):
        """Creates rel (if needed) in every hierarchy; returns (memory dir, cgroup2 dir), the same
        directory twice on a pure cgroup v2 host."""
        rel = rel.strip("/")
        if rel:
            if ".." in rel.split("/"):
                raise ValueError(f"bad sub-group {rel!r}")
            for root in self.roots:
                path = root
                for part in rel.split("/"):
                    path = path / part
                    if not path.is_dir():
                        self._mkdir(path)
        dirs = [root / rel if rel else root for root in self.roots]
        return (dirs[0], dirs[-1])

    def procs_paths(self, sub=""):
        """The cgroup.procs files (v1 memory and cgroup2, or cgroup2 alone) to put a process in sub."""
        return [d / "cgroup.procs" for d in dict.fromkeys(self.sub(sub))]

    def unified(self, sub=""):
        return self.sub(sub)[1]

    def set_limit(self, nbytes, sub=""):
        """The memory limit of sub; -1 lifts it. v1: memory.limit_in_bytes (no swap here: memsw
        needs no limit); v2: memory.max."""
        d = self.sub(sub)[0]
        if self.v2_only:
            (d / "memory.max").write_text("max" if nbytes < 0 else str(int(nbytes)))
        else:
            (d / "memory.limit_in_bytes").write_text(str(int(nbytes)))

    def usage(self, sub=""):
        d = self.sub(sub)[0]
        return int((d / ("memory.current" if self.v2_only else "memory.usage_in_bytes")).read_text())

    def pressure(self, sub="", resource="memory"):
        """psi() of <cgroup2 dir>/<resource>.pressure."""
        return psi(self.sub(sub)[1] / f"{resource}.pressure")

    def pids(self):
        out = set()
        for d in self._created:
            try:
                out.update(int(p) for p in (d / "cgroup.procs").read_text().split())
            except FileNotFoundError:
                pass
        return out

    def cleanup(self, timeout=10):
        """Kills what is left in our groups and removes them, children first."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{self.name}: processes {sorted(pids)} survive SIGKILL")
            time.sleep(0.05)
        for d in reversed(self._created):
            while d.exists():
                try:
                    d.rmdir()
                except FileNotFoundError:
                    break
                except OSError:
                    # A killed task can keep its group busy for a moment.
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.05)
        self._created.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

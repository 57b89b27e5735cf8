# SPDX-License-Identifier: LGPL-2.1-or-later
"""Host memory pressure without anonymous memory (the test hosts have no swap: anonymous pressure
would make the memcg OOM killer shoot QEMU)."""

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from ab.cgroup import join_preexec
from ab.util import MiB, fs_type


class PageCacheHog:
    """Reads a file of size_mb MiB in a loop from inside the given cgroups.

    With the cgroup limited below the file size this thrashes the page cache: reclaim
    and refaults show up as memory stalls in PSI, and no anonymous memory is involved.
    The file lives on a disk file system: on tmpfs it would be unevictable shmem.
    """

    def __init__(self, size_mb, procs_paths, directory=None, readers=2):
        self.size_mb = size_mb
        self.readers = readers
        self.procs_paths = list(procs_paths)
        self.dir = Path(tempfile.mkdtemp(prefix="abt-hog-", dir=directory or self._pick_dir()))
        self.path = self.dir / "data"
        self.proc = None

    @staticmethod
    def _pick_dir():
        for d in (os.environ.get("AUTOBALLOON_HOG_DIR"), "/var/tmp", "/tmp"):
            if d and os.path.isdir(d) and fs_type(d) not in ("tmpfs", "ramfs"):
                return d
        raise RuntimeError("no disk-backed directory for the page-cache hog")

    def start(self):
        block = os.urandom(MiB)
        with open(self.path, "wb") as f:
            for _ in range(self.size_mb):
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
            # Pages cached now are charged to us: the hog must fault them in itself.
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        return self.resume()

    def resume(self):
        """Starts the readers (again, after pause())."""
        # More concurrent readers: more stalled time per second ("some" and "full").
        script = 'i=0; while [ $i -lt $1 ]; do i=$((i+1)); while :; do cat "$2" >/dev/null; done & done; wait'
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", script, "abt-hog", str(self.readers), str(self.path)],
            stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=join_preexec(self.procs_paths))
        return self

    def pause(self):
        """Stops the readers and drops the file's cached pages: the cgroup holds what it held before."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None
        if self.path.exists():
            with open(self.path) as f:
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

    def stop(self):
        self.pause()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

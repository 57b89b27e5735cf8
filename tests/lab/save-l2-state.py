#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""save-l2-state.py ROOTFS OUTPUT [VARIANT]: boots the lab's L2 guest (of l2.py's VARIANT, default the
scenario's) with the QEMU binary of the staged L1 rootfs (chroot in a private mount namespace) on
the host, where it boots in seconds instead of ~2.5 min of nested TCG, and saves its migration
state to OUTPUT. The scenario in L1 restores guests from it with the same binary and command line
(l2.py). A variant without free page reporting has its free memory ballooned out and back first, as
the reporting would have done: the state, and a restored guest's resident memory, then hold what
the guest uses rather than all that booting it touched."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "lib"))
import l2  # noqa: E402
from ab.agent import parse_kv  # noqa: E402
from ab.qmp import QMP  # noqa: E402
from ab.util import wait_until  # noqa: E402

NAME = "save"
BOOT_TIMEOUT = 120
# Let the guest finish what it does after boot (deferred work, first balloon stats) first.
SETTLE_SECONDS = 3
# Left free by the squeeze: past its free memory the balloon makes the guest OOM-kill.
SQUEEZE_LEAVE = 32 << 20


def squeeze(qmp, agent):
    """Balloons the guest's free memory out (QEMU discards those pages) and gives it back."""
    full = qmp.execute("query-balloon")["actual"]
    free = parse_kv(agent.cmd("meminfo"))["MemFree"] << 10
    target = full - max(free - SQUEEZE_LEAVE, 0)
    for value in (target, full):
        qmp.execute("balloon", {"value": value})
        wait_until(lambda: abs(qmp.execute("query-balloon")["actual"] - value) < (1 << 20), 60, 0.2,
                   f"the balloon at {value >> 20} MiB")
    print(f"squeezed: balloon {full >> 20} -> {target >> 20} -> {full >> 20} MiB", flush=True)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: save-l2-state.py ROOTFS OUTPUT [VARIANT]")
    root = Path(sys.argv[1]).resolve()
    output = Path(sys.argv[2])
    spec = sys.argv[3] if len(sys.argv) == 4 else None
    inside = lambda p: root / p.lstrip("/")  # noqa: E731  a chroot path seen from the host
    new_state = l2.STATE + ".new"
    for d in (l2.RUN_DIR, l2.QMP_DIR, os.path.dirname(l2.STATE)):
        inside(d).mkdir(parents=True, exist_ok=True)
    qemu = [l2.QEMU, *l2.qemu_args(NAME, restore=False, spec=spec), *l2.qmp_args(NAME)]
    # /dev and /proc of the host, mounted only in QEMU's own mount namespace.
    script = 'mount --rbind /dev "$1/dev" && mount -t proc proc "$1/proc" && root=$1 && shift && ' \
             'exec chroot "$root" "$@"'
    log_path = inside(l2.RUN_DIR) / f"{NAME}.qemu.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--",
                                 "sh", "-c", script, "sh", str(root), *qemu],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    qmp = agent = None
    try:
        agent = l2.agent(NAME, lambda: proc.poll() is None, root)
        agent.wait_ready(BOOT_TIMEOUT)
        print(f"L2 guest ready after {time.monotonic() - started:.1f} s "
              f"({agent.cmd('meminfo')})", flush=True)
        time.sleep(SETTLE_SECONDS)
        qmp = QMP(inside(f"{l2.RUN_DIR}/{NAME}.hqmp"))
        if not l2.variant(spec)[1]:
            squeeze(qmp, agent)
        # Live, not stopped: a state saved from a paused VM restores paused.
        qmp.execute("migrate", {"uri": f"exec:cat > {new_state}"})
        deadline = time.monotonic() + 120
        while True:
            status = qmp.execute("query-migrate").get("status")
            if status == "completed":
                break
            if status in ("failed", "cancelled") or time.monotonic() > deadline:
                raise RuntimeError(f"migration {status}")
            time.sleep(0.2)
        shutil.move(inside(new_state), output)
        print(f"saved {output.stat().st_size >> 20} MiB in {time.monotonic() - started:.1f} s",
              flush=True)
    except BaseException:
        print(f"QEMU log:\n{log_path.read_text(errors='replace')[-2000:]}", file=sys.stderr)
        print(f"guest console:\n{inside(l2.RUN_DIR).joinpath(NAME + '.console').read_text(errors='replace')[-3000:]}",
              file=sys.stderr)
        raise
    finally:
        for c in (qmp, agent):
            if c is not None:
                c.close()
        proc.kill()
        proc.wait()
        shutil.rmtree(inside(l2.RUN_DIR), ignore_errors=True)
        shutil.rmtree(inside("/run/autoballoon"), ignore_errors=True)


if __name__ == "__main__":
    main()

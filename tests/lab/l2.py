# SPDX-License-Identifier: LGPL-2.1-or-later
"""The L2 guests of the lab: one QEMU command line shared by the state saver on the host
(save_l2_state.py, which runs L1's QEMU binary in a chroot of the lab rootfs) and the scenario
inside L1. A migration state restores only into the same binary with the same devices in the
same order, so both sides build the command line here. Paths are as seen inside L1.

Its agent is the harness' (tests/lib/ab, next to this file in L1; on the host, on PYTHONPATH).

Variants: the scenario's guest (MEM_MIB, free page reporting on) has no name; others are named
"MIB" or "MIB-nofpr" (free page reporting off), each restored from its own saved state.
"""

import os
import sys

from ab.agent import Agent

LAB_LIB = "/usr/lib/autoballoon-lab"
GUEST_DIR = LAB_LIB + "/guest"
STATE_DIR = "/var/lib/autoballoon-lab"
STATE = STATE_DIR + "/l2.state"
RUN_DIR = "/run/lab"           # short: AF_UNIX paths must stay under 108 bytes
QMP_DIR = "/run/autoballoon/qmp"
QEMU = "/usr/bin/qemu-system-x86_64"
MEM_MIB = 384


def variant(spec=None):
    """(memory in MiB, free page reporting) of a variant name; None or "" is the scenario's guest."""
    if not spec:
        return MEM_MIB, True
    mib, sep, opt = spec.partition("-")
    if not mib.isdigit() or int(mib) < 64 or (sep and opt != "nofpr"):
        raise ValueError(f"bad L2 variant {spec!r}: MIB or MIB-nofpr")
    return int(mib), not sep


def state_path(spec=None):
    """Where the saved state of a variant is, inside L1."""
    variant(spec)
    return f"{STATE_DIR}/l2-{spec}.state" if spec else STATE


def qemu_args(name, restore=True, spec=None):
    """The VM's arguments after the QEMU binary; restore: resume the saved state instead of
    booting; spec: the variant. The harness' own QMP monitor is <RUN_DIR>/<name>.hqmp; the
    daemon's is the one autoballoon-run appends (qmp_args(), which the saved state was made with
    too)."""
    mem_mib, fpr = variant(spec)
    args = [
        "-name", name, "-accel", "tcg", "-m", f"{mem_mib}M", "-smp", "1",
        "-nodefaults", "-no-user-config", "-no-reboot",
        "-kernel", f"{GUEST_DIR}/vmlinuz", "-initrd", f"{GUEST_DIR}/initrd.img",
        "-append", "console=ttyS0 quiet panic=1",
        "-display", "none",
        "-serial", f"file:{RUN_DIR}/{name}.console",
        "-qmp", f"unix:{RUN_DIR}/{name}.hqmp,server=on,wait=off",
        "-device", f"virtio-balloon-pci,id=balloon0,free-page-reporting={'on' if fpr else 'off'}",
        "-device", "virtio-serial-pci",
        "-chardev", f"socket,id=ctl,path={RUN_DIR}/{name}.ctl,server=on,wait=off",
        "-device", "virtconsole,chardev=ctl",
    ]
    if restore:
        args += ["-incoming", f"exec:cat {state_path(spec)}"]
    return args


def qmp_args(name):
    """The daemon's QMP monitor, where autoballoond looks for it."""
    return ["-qmp", f"unix:{QMP_DIR}/{name}.sock,server=on,wait=off"]


def agent(name, alive, root="/"):
    """The agent (ab.agent.Agent) of the L2 guest name; alive() says whether its QEMU still runs;
    root: where L1's root is seen from (the state saver's chroot)."""
    def check_alive():
        if not alive():
            raise RuntimeError(f"{name}: QEMU exited")
    return Agent(os.path.join(root, RUN_DIR.lstrip("/"), f"{name}.ctl"), name, check_alive)


def describe(spec=None):
    """What a saved state depends on besides the binary and the guest image (for the stamp)."""
    return " ".join(qemu_args("NAME", spec=spec) + qmp_args("NAME"))


if __name__ == "__main__":
    # For build.sh: "l2.py [VARIANT]" describes a variant (its stamp), "l2.py --state-path VARIANT"
    # says where its state goes in L1.
    if sys.argv[1:2] == ["--state-path"]:
        print(state_path(sys.argv[2]))
    else:
        print(describe(sys.argv[1] if len(sys.argv) > 1 else None))

# SPDX-License-Identifier: LGPL-2.1-or-later
"""The L2 guests of the lab: one QEMU command line shared by the state saver on the host
(save_l2_state.py, which runs L1's QEMU binary in a chroot of the lab rootfs) and the scenario
inside L1. A migration state restores only into the same binary with the same devices in the
same order, so both sides build the command line here. Paths are as seen inside L1.

Variants: the scenario's guest (MEM_MIB, free page reporting on) has no name; others are named
"MIB" or "MIB-nofpr" (free page reporting off), each restored from its own saved state.
"""

import socket
import sys
import time

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


class Agent:
    """abguest on the guest's virtio console (tests/guest-image/README.md), one line per command."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = None
        self.buf = b""
        self.token = 0

    def _connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock

    def _readline(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(min(left, 1.0))
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            if not data:
                raise ConnectionError(f"{self.path}: closed")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode(errors="replace").strip()

    def wait_ready(self, timeout, alive=lambda: True):
        """Pings until the agent answers (earlier lines are dropped); raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while self.sock is None:
            if not alive():
                raise RuntimeError("QEMU exited")
            try:
                self._connect()
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"no agent socket {self.path} after {timeout}s")
                time.sleep(0.2)
        while time.monotonic() < deadline:
            if not alive():
                raise RuntimeError("QEMU exited")
            self.token += 1
            want = f"ok pong t{self.token}"
            self.sock.sendall(f"ping t{self.token}\n".encode())
            attempt = min(deadline, time.monotonic() + 2.0)
            while True:
                line = self._readline(attempt)
                if line is None:
                    break
                if line == want:
                    return
        raise TimeoutError(f"agent on {self.path} not answering after {timeout}s")

    def cmd(self, line, timeout=120):
        """One command; returns the answer line ("ok ..." or "err ...")."""
        self.sock.sendall(line.encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._readline(deadline)
            if reply is None:
                raise TimeoutError(f"no answer to {line!r} in {timeout}s")
            if reply.startswith(("ok", "err")):
                return reply

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


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

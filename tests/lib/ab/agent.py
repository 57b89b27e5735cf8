# SPDX-License-Identifier: LGPL-2.1-or-later
"""The client of abguest, the test guest's agent on its virtio console (tests/guest-image/README.md):
one command a line, one answer line, "ok ..." or "err ..."."""

import itertools
import socket
import time


def parse_kv(reply):
    """"ok A=1 B=2" -> {"A": 1, "B": 2} (values that are not integers stay strings)."""
    if not reply.startswith("ok"):
        raise RuntimeError(f"guest answered {reply!r}")
    out = {}
    for field in reply.split()[1:]:
        k, _, v = field.partition("=")
        out[k] = int(v) if v.isdigit() else v
    return out


def _never_dead():
    pass


class Agent:
    """abguest behind the AF_UNIX socket at path (QEMU's chardev of the virtconsole).

    check_alive() raises when the guest's QEMU is gone: a dead guest fails at once, with what its
    caller knows of why, instead of at the end of a timeout.
    """

    def __init__(self, path, name=None, check_alive=_never_dead):
        self.path = str(path)
        self.name = name or self.path
        self.check_alive = check_alive
        self.sock = None
        self._buf = b""
        self._tokens = itertools.count(1)

    def _connect(self, deadline):
        while True:
            self.check_alive()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
                self.sock = sock
                return
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{self.name}: no agent socket {self.path}")
                time.sleep(0.05)

    def _readline(self, deadline):
        """The next line from the agent, or None at the deadline."""
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(min(left, 1.0))
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                self.check_alive()
                continue
            if not data:
                self.check_alive()
                raise ConnectionError(f"{self.name}: agent socket closed")
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode(errors="replace").strip()

    def wait_ready(self, timeout=60):
        """Waits until abguest answers.

        "abguest ready" is lost when printed before we connect, so this pings with a token until
        the matching answer: that also drops any stale line in between.
        """
        deadline = time.monotonic() + timeout
        if self.sock is None:
            self._connect(deadline)
        while True:
            token = f"sync{next(self._tokens)}"
            self.sock.sendall(f"ping {token}\n".encode())
            attempt_end = min(deadline, time.monotonic() + 1.0)
            while True:
                line = self._readline(attempt_end)
                if line is None or line == "abguest ready":
                    break
                if line == f"ok pong {token}":
                    return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name}: abguest not ready after {timeout}s")

    def cmd(self, line, timeout=60):
        """Sends one command; returns the answer ("ok ..." or "err ...")."""
        if self.sock is None:
            self.wait_ready()
        self.sock.sendall(line.encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._readline(deadline)
            if reply is None:
                raise TimeoutError(f"{self.name}: no answer to {line!r} in {timeout}s")
            if reply.startswith(("ok", "err")):
                return reply
            if reply == "abguest ready":
                # The agent restarted (its workers are gone); the command was lost.
                raise RuntimeError(f"{self.name}: abguest restarted during {line!r}")

    def cmd_ok(self, line, timeout=60):
        """cmd() that raises on "err"; returns what follows "ok"."""
        reply = self.cmd(line, timeout)
        if not reply.startswith("ok"):
            raise RuntimeError(f"{self.name}: {line!r} -> {reply!r}")
        return reply[2:].strip()

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

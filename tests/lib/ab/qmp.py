# SPDX-License-Identifier: LGPL-2.1-or-later
"""A tiny synchronous QMP client."""

import itertools
import json
import socket
import time

from ab.util import wait_until


class QMPError(Exception):
    """QEMU answered {"error": ...}."""


class QMP:
    """A tiny synchronous QMP client: greeting + qmp_capabilities once, then execute()."""

    def __init__(self, path, timeout=30):
        self.path = str(path)
        self.events = []
        self._buf = b""
        self._ids = itertools.count(1)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            wait_until(self._try_connect, timeout, what=f"QMP socket {path}")
            self.sock.settimeout(timeout)
            greeting = self._read_message()
            if "QMP" not in greeting:
                raise QMPError(f"unexpected QMP greeting {greeting}")
            self.execute("qmp_capabilities")
        except BaseException:
            self.sock.close()
            raise

    def _try_connect(self):
        try:
            self.sock.connect(self.path)
            return True
        except (FileNotFoundError, ConnectionRefusedError):
            return False

    def _read_message(self):
        while b"\n" not in self._buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"QMP {self.path}: connection closed")
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def execute(self, command, arguments=None, timeout=30):
        """Runs a command; returns its "return" value, raises QMPError on "error"."""
        msg_id = next(self._ids)
        msg = {"execute": command, "id": msg_id}
        if arguments:
            msg["arguments"] = arguments
        self.sock.settimeout(timeout)
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read_message()
            if "event" in reply:
                self.events.append(reply)
            elif reply.get("id") == msg_id:
                if "error" in reply:
                    raise QMPError(f"{command}: {reply['error'].get('desc', reply['error'])}")
                return reply.get("return")

    def wait_event(self, name, timeout=30):
        """Returns the first event called name, already received or arriving in time."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["event"] == name:
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no QMP event {name} within {timeout}s")
            self.sock.settimeout(left)
            try:
                msg = self._read_message()
            except socket.timeout:
                continue
            if "event" in msg:
                self.events.append(msg)

    def close(self):
        self.sock.close()

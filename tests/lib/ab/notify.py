# SPDX-License-Identifier: LGPL-2.1-or-later
"""The daemon's sd_notify messages as the service manager would get them: a datagram socket to point
NOTIFY_SOCKET at, and its messages as lines."""

import socket
import threading


class Datagrams:
    """An AF_UNIX datagram socket and the messages received on it, in order."""

    def __init__(self, path):
        self.path = str(path)
        self.messages = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            self.messages.append(data)

    def close(self):
        self.sock.close()


def notify_lines(datagrams):
    """sd_notify messages as lines ("READY=1", "STATUS=...")."""
    return [line for m in list(datagrams.messages) for line in m.decode().split("\n") if line]

# SPDX-License-Identifier: LGPL-2.1-or-later
"""A unix socket served from threads, for the tests' stand-ins for a QEMU monitor: a subclass says
what to do with each connection in talk(conn)."""

import os
import socket
import threading


class Listener:
    def __init__(self, path):
        self.path = str(path)
        self.connections = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._guarded, args=(conn,), daemon=True).start()

    def _guarded(self, conn):
        with conn:
            try:
                self.talk(conn)
            except OSError:
                pass

    def talk(self, conn):
        raise NotImplementedError

    def close(self):
        self.sock.close()
        os.unlink(self.path)

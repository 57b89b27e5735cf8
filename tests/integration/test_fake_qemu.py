# SPDX-License-Identifier: LGPL-2.1-or-later
"""tests/bench/fake-qemu, the stand-in for QEMU of the scale benchmarks, against a real QEMU: the
same QMP command sequence gives replies and events of the same shape (keys and value types, down to
the leaves; error classes too). The real QEMU is qemu-system-x86_64 ($AUTOBALLOON_QEMU), 7.2 on
Debian 12; the simulator speaks the version the real one greets with (7.2 or 10.0)."""

import json
import socket
import subprocess
import time

import pytest

from ab.scenario import daemon_binary
from ab.util import MiB, wait_until

BALLOON = "/machine/peripheral/balloon0"
MEM = 512 * MiB


def fake_qemu_binary():
    return daemon_binary().parent.parent / "tests" / "bench" / "fake-qemu"


def shape(v):
    """What a reply looks like without its values: key sets and leaf types, recursively; a list is
    the set of its elements' shapes."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return ["list", sorted({json.dumps(shape(x), sort_keys=True) for x in v})]
    return type(v).__name__


class RawQMP:
    """A QMP client that keeps everything: the greeting, each reply, the events."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        wait_until(lambda: self.sock.connect_ex(str(path)) == 0, 30, what=f"QMP socket {path}")
        self.sock.settimeout(30)
        self.f = self.sock.makefile("rwb", buffering=0)
        self.events = []
        self.greeting = self._read()

    def _read(self):
        line = self.f.readline()
        assert line.endswith(b"\r\n"), line  # QEMU ends every message so
        return json.loads(line)

    def execute(self, command, arguments=None, msg_id=None):
        msg = {"execute": command}
        if arguments is not None:
            msg["arguments"] = arguments
        if msg_id is not None:
            msg["id"] = msg_id
        self.f.write(json.dumps(msg).encode() + b"\n")
        while True:
            m = self._read()
            if "event" in m:
                self.events.append(m)
            else:
                return m

    def wait_event(self, name, timeout=30):
        deadline = time.monotonic() + timeout
        while not any(e["event"] == name for e in self.events):
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            self.events.append(self._read())
        self.sock.settimeout(30)
        return next(e for e in self.events if e["event"] == name)

    def close(self):
        self.f.close()
        self.sock.close()


def session(path):
    """The command sequence: what autoballoond sends, in its order, plus the errors it may meet.
    Returns [(what, message)] and the greeting."""
    q = RawQMP(path)
    out = [("before negotiation", q.execute("query-balloon", msg_id=0)),
           ("qmp_capabilities", q.execute("qmp_capabilities", msg_id=1)),
           ("qmp_capabilities again", q.execute("qmp_capabilities", msg_id=2)),
           ("query-memory-size-summary", q.execute("query-memory-size-summary", msg_id=3)),
           ("qom-list peripheral", q.execute("qom-list", {"path": "/machine/peripheral"}, 4)),
           ("qom-list peripheral-anon", q.execute("qom-list", {"path": "/machine/peripheral-anon"}, 5)),
           ("qom-list missing", q.execute("qom-list", {"path": "/machine/none"}, 6)),
           ("qom-set interval", q.execute("qom-set", {"path": BALLOON, "property": "guest-stats-polling-interval",
                                                      "value": 1}, 7)),
           ("qom-set interval -1", q.execute("qom-set", {"path": BALLOON, "property": "guest-stats-polling-interval",
                                                         "value": -1}, 8)),
           ("qom-get interval", q.execute("qom-get", {"path": BALLOON, "property": "guest-stats-polling-interval"}, 9))]
    # The guest answers the first stats request at once, then every second.
    wait_until(lambda: q.execute("qom-get", {"path": BALLOON, "property": "guest-stats"}, 10)["return"]["last-update"],
               30, 0.2, what="the guest's first stats")
    out += [("qom-get guest-stats", q.execute("qom-get", {"path": BALLOON, "property": "guest-stats"}, 11)),
            ("qom-get missing property", q.execute("qom-get", {"path": BALLOON, "property": "nope"}, 12)),
            ("qom-get missing device", q.execute("qom-get", {"path": "/machine/peripheral/nope",
                                                              "property": "guest-stats"}, 13)),
            ("query-balloon", q.execute("query-balloon", msg_id=14)),
            ("query-balloon without id", q.execute("query-balloon")),
            ("balloon 0", q.execute("balloon", {"value": 0}, 15)),
            ("balloon without value", q.execute("balloon", {}, 16)),
            ("unknown command", q.execute("no-such-command", msg_id=17)),
            ("balloon", q.execute("balloon", {"value": MEM - 64 * MiB}, 18))]
    out.append(("BALLOON_CHANGE", q.wait_event("BALLOON_CHANGE")))
    wait_until(lambda: q.execute("query-balloon", msg_id=19)["return"]["actual"] == MEM - 64 * MiB, 30, 0.2,
               what="the balloon at its target")
    q.close()
    return q.greeting, out


@pytest.fixture
def fake_qemu(run_dir):
    procs = []

    def start(version, *args):
        d = run_dir / "fq"
        d.mkdir(exist_ok=True)
        p = subprocess.Popen([str(fake_qemu_binary()), f"--dir={d}", f"--qemu={version}", *args],
                             stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().startswith("ready")
        return d, p

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


def test_replies_have_real_qemus_shape(guest_factory, fake_qemu):
    g = guest_factory("shape", mem=f"{MEM // MiB}M")
    real_greeting, real = session(g.qmp_path)
    version = real_greeting["QMP"]["version"]["qemu"]
    v = f"{version['major']}.{version['minor']}"
    if v not in ("7.2", "10.0"):
        pytest.skip(f"the simulator speaks QEMU 7.2 and 10.0, not {v}")

    d, _ = fake_qemu(v, "--vms=1", f"--boot={MEM // MiB}M", "--rate=64M")
    fake_greeting, fake = session(d / "vm1.sock")

    assert shape(fake_greeting) == shape(real_greeting)
    assert fake_greeting["QMP"]["version"]["qemu"]["major"] == version["major"]
    assert fake_greeting["QMP"]["capabilities"] == real_greeting["QMP"]["capabilities"]
    for (what, r), (_, f) in zip(real, fake):
        assert shape(f) == shape(r), f"{what}: real {r}, fake {f}"
        if "error" in r:
            assert f["error"]["class"] == r["error"]["class"], what
    # The stats by name (a shape would not tell 10 keys from 16 if the types agree), and the
    # balloon the daemon looks for.
    real_stats, fake_stats = (dict(m)["qom-get guest-stats"]["return"]["stats"] for m in (real, fake))
    assert sorted(fake_stats) == sorted(real_stats)
    assert dict(fake)["qom-list peripheral"]["return"] == \
        [e for e in dict(real)["qom-list peripheral"]["return"] if e["name"] in ("type", "balloon0")]


def test_balloon_moves_at_its_rate_and_stats_follow_the_script(run_dir, fake_qemu):
    """The simulator's own model: the stats a script sets, the balloon stalling at what the guest
    uses, BALLOON_CHANGE at most once a second, the report."""
    script = run_dir / "script"
    script.write_text("vm a boot=1G rate=512M used=300M cache=100M reserved=64M\n"
                      "at 0 a swap-in=4096\n")
    report = run_dir / "report"
    d, p = fake_qemu("7.2", f"--script={script}", f"--report={report}")
    q = RawQMP(d / "a.sock")
    q.execute("qmp_capabilities", msg_id=1)
    q.execute("qom-set", {"path": BALLOON, "property": "guest-stats-polling-interval", "value": 1}, 2)
    stats = q.execute("qom-get", {"path": BALLOON, "property": "guest-stats"}, 3)["return"]["stats"]
    assert stats["stat-total-memory"] == 1024 * MiB - 64 * MiB
    assert stats["stat-available-memory"] == 1024 * MiB - 64 * MiB - 300 * MiB
    assert stats["stat-disk-caches"] == 100 * MiB
    assert stats["stat-swap-in"] == 4096

    # Asked for 128M, the balloon stops at 364M (used + reserved) in about 1.3 s.
    start = time.monotonic()
    q.execute("balloon", {"value": 128 * MiB}, 4)
    wait_until(lambda: q.execute("query-balloon", msg_id=5)["return"]["actual"] == 364 * MiB, 10, 0.05,
               what="the balloon at the guest's floor")
    moved = time.monotonic() - start
    q.wait_event("BALLOON_CHANGE")
    time.sleep(1.2)  # the held-back last event
    q.execute("query-balloon", msg_id=6)
    actuals = [e["data"]["actual"] for e in q.events]
    assert actuals[-1] == 364 * MiB
    assert 2 <= len(actuals) <= moved + 2, actuals
    stats = q.execute("qom-get", {"path": BALLOON, "property": "guest-stats"}, 7)["return"]["stats"]
    assert stats["stat-available-memory"] == 0
    assert stats["stat-disk-caches"] == 0
    q.close()

    p.terminate()
    assert p.wait(10) == 0
    lines = [line.split("\t") for line in report.read_text().splitlines()]
    vm = dict(kv.split("=") for kv in lines[0][2:])
    assert lines[0][1] == "a" and vm["balloons"] == "1" and vm["interval_sec"] == "1"
    assert lines[1][0] == "balloon" and lines[1][2:] == ["a", str(128 * MiB)]

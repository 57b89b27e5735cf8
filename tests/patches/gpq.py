# SPDX-License-Identifier: LGPL-2.1-or-later
"""The guest pressure queue (guest/ and qemu/ patch series, docs/ spec proposal) as the tests and the
bench see it: which kernel on which QEMU, the feature bit on both sides, the queue's index, the
device's counters, guest pressure on demand."""

FEATURE_BIT = 9                 # VIRTIO_BALLOON_F_GUEST_PRESSURE
EVENT = "BALLOON_GUEST_PRESSURE"
LEVELS = ("low", "medium", "critical")
# The features that add a queue before pressureq, in queue order (after inflateq and deflateq).
QUEUE_FEATURES = ("VIRTIO_BALLOON_F_STATS_VQ", "VIRTIO_BALLOON_F_FREE_PAGE_HINT", "VIRTIO_BALLOON_F_REPORTING")


def guest_kwargs(kernels, qemu, kernel, device, **props):
    """Guest.start() arguments for a kernel ("patched", "stock": guest/'s 6.12 kernels with and
    without the series, "cloud": the test image's Debian kernel) on a device ("on": patched QEMU
    with guest-pressure=on, "off": patched QEMU without it, "stock": the same QEMU release
    without the series)."""
    kw = {"kernel": {"patched": kernels.patched, "stock": kernels.stock, "cloud": None}[kernel],
          "qemu": qemu.stock_binary if device == "stock" else qemu.binary, "bios_dir": qemu.bios_dir}
    if device == "on":
        props = {"guest-pressure": "on", **props}
    kw["balloon_props"] = props
    return kw


def feature_bit(status, side, bit=FEATURE_BIT):
    """Whether x-query-virtio-status has the balloon feature bit in side ("host-features":
    offered by the device, "guest-features": accepted by the driver). A QEMU that cannot name
    the bit (stock) puts it in unknown-dev-features."""
    features = status[side]
    return bool(features.get("unknown-dev-features", 0) >> bit & 1) or \
        any("GUEST_PRESSURE" in f for f in features["dev-features"])


def has_feature(status, side, name):
    return any(f.startswith(name + ":") for f in status[side]["dev-features"])


def pressure_queue_index(status):
    """The spec's rule: 2 + the queue-adding features present before pressureq. QEMU counts the
    features it offers; by the index rule the driver accepted the same ones (or no pressureq)."""
    return 2 + sum(has_feature(status, "host-features", f) for f in QUEUE_FEATURES)


def guest_accepted(guest, bit=FEATURE_BIT):
    """Whether the guest's driver accepted the feature bit (sysfs, through abguest)."""
    bits = guest.cmd_ok("balloon-features").strip()
    return bits[bit] == "1"


def counters(guest):
    """The device's (messages, ignored) counters: valid messages and malformed/unknown ones."""
    path = guest.virtio_balloon_path()
    return tuple(guest.qmp("qom-get", {"path": path, "property": f"guest-pressure-{name}"})
                 for name in ("messages", "ignored"))


def check_event(event, ram):
    """The event's data is the new protocol's: a level name and a size within the guest's RAM."""
    data = event["data"]
    assert set(data) == {"level", "size"}, event
    assert data["level"] in LEVELS, event
    assert 0 <= data["size"] <= ram and data["size"] % 4096 == 0, event
    return data


def squeeze(guest, name="squeeze", extra_mb=64, timeout=120):
    """Allocates extra_mb MiB more than the guest has free: with swap (zram in guest/'s kernels)
    the allocation stalls in direct reclaim, which the patched driver reports. Returns the MiB."""
    size = guest.meminfo()["MemFree"] // 1024 + extra_mb
    guest.cmd_ok(f"alloc {name} {size}", timeout=timeout)
    return size


def console_problems(guest):
    """Kernel warnings, oopses and virtio errors on the guest's console."""
    bad = ("WARNING:", "BUG:", "Call Trace", "Oops", "virtio_balloon", "virtio-balloon", "NEEDS_RESET")
    with open(guest.console_log, errors="replace") as f:
        return [line.rstrip() for line in f
                if any(b in line for b in bad) and "insmod" not in line]


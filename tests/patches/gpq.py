# SPDX-License-Identifier: LGPL-2.1-or-later
"""The guest pressure queue (guest/ and qemu/ patch series) as the tests and the bench see it:
which kernel on which QEMU, the feature bit and the queue in x-query-virtio-status, guest pressure
on demand."""

from ab.util import MiB

FEATURE_BIT = 9                 # VIRTIO_BALLOON_F_GUEST_PRESSURE
EVENT = "BALLOON_GUEST_PRESSURE"
STEP = 32 * MiB                 # guest-pressure-step default
ACTIONS = ("cancel", "deflate", "none")
STOCK_QEMU = "/usr/bin/qemu-system-x86_64"


def guest_kwargs(kernels, qemu, kernel, device, **props):
    """Guest.start() arguments for a kernel ("patched", "stock": guest/'s tinyconfig kernels,
    "cloud": the test image's Debian kernel) on a device ("on": patched QEMU with
    guest-pressure=on, "off": patched QEMU without it, "stock": Debian's QEMU)."""
    kw = {"kernel": {"patched": kernels.patched, "stock": kernels.stock, "cloud": None}[kernel]}
    if device == "stock":
        kw["qemu"] = STOCK_QEMU
    else:
        kw.update(qemu=qemu.binary, bios_dir=qemu.bios_dir)
        if device == "on":
            props = {"guest-pressure": "on", **props}
        kw["balloon_props"] = props
    return kw


def feature_bit(status, side, bit=FEATURE_BIT):
    """Whether x-query-virtio-status has the balloon feature bit in side ("host-features":
    offered by the device, "guest-features": negotiated). QEMU 7.2 cannot name bits 6 and up,
    so they land in unknown-dev-features."""
    features = status[side]
    return bool(features.get("unknown-dev-features", 0) >> bit & 1) or \
        any("GUEST_PRESSURE" in f for f in features["dev-features"])


def pressure_queue_index(status):
    """3 + free-page-hint + free-page-reporting, from the features the device offers."""
    offered = " ".join(status["host-features"]["dev-features"])
    return 3 + ("VIRTIO_BALLOON_F_FREE_PAGE_HINT" in offered) + ("VIRTIO_BALLOON_F_REPORTING" in offered)


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

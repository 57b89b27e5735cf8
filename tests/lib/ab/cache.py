# SPDX-License-Identifier: LGPL-2.1-or-later
"""The cached builds in $AUTOBALLOON_CACHE: the test guest image (tests/guest-image), the guest
pressure queue's patched kernels (guest/) and patched QEMU (qemu/). Each build_*() runs its script,
a no-op when its cache is up to date, and raises if it fails."""

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def cache_root():
    return Path(os.environ.get("AUTOBALLOON_CACHE", "/var/cache/autoballoon"))


class GuestImage:
    """The built image: vmlinuz, initrd.img and the manifest (dict of key=value)."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.vmlinuz = self.dir / "vmlinuz"
        self.initrd = self.dir / "initrd.img"
        with open(self.dir / "manifest") as f:
            self.manifest = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)

    @staticmethod
    def cache_dir():
        return cache_root() / "guest"


class Kernels:
    """guest/build-kernel.sh's images: patched (the guest pressure series) and stock (same config)."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.patched = self.dir / "bzImage"
        self.stock = self.dir / "bzImage-stock"


class QemuBuild:
    """qemu/build-qemu.sh's qemu-system-x86_64, patched and stock (same release and options), and
    the firmware directory for -L."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.binary = self.dir / "bin" / "qemu-system-x86_64"
        self.stock_binary = self.dir / "stock" / "bin" / "qemu-system-x86_64"
        self.bios_dir = self.dir / "pc-bios"

    @staticmethod
    def cache_dir():
        """qemu-MAJOR.MINOR, the upstream series of the version qemu/qemu-version pins."""
        pin = next(line.strip() for line in open(REPO / "qemu" / "qemu-version")
                   if line.strip() and not line.startswith("#"))
        return cache_root() / ("qemu-" + ".".join(pin.split(":")[-1].split(".")[:2]))


def _run_build(cmd):
    proc = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout}")


def build_image(force=False):
    """tests/guest-image/build.sh [--force]."""
    _run_build([REPO / "tests" / "guest-image" / "build.sh"] + (["--force"] if force else []))
    return GuestImage(GuestImage.cache_dir())


def build_kernels():
    """guest/build-kernel.sh --stock."""
    _run_build([REPO / "guest" / "build-kernel.sh", "--stock"])
    return Kernels(cache_root() / "kernel")


def build_qemu():
    """qemu/build-qemu.sh --stock."""
    _run_build([REPO / "qemu" / "build-qemu.sh", "--stock"])
    return QemuBuild(QemuBuild.cache_dir())

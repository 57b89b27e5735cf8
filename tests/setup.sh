#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs the Debian packages autoballoon builds, tests and demos with. Idempotent: apt runs only
# when something is missing.
set -euo pipefail

packages=(
        # build
        gcc libc6-dev meson ninja-build pkg-config
        libsystemd-dev libjson-c-dev libcmocka-dev libvirt-dev libxml2-dev
        # the fuzz targets (-Dfuzz=true): clang and its libFuzzer runtime
        clang libclang-rt-dev
        # real parts the tests start
        qemu-system-x86 busybox-static cpio gzip kmod dbus-daemon systemd
        libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
        # the libvirt latency benchmark's own client (tests/bench/libvirt_latency.py)
        python3-libvirt
        python3 python3-pytest
)

. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh" setup

ensure_packages "${packages[@]}"
echo "setup: packages ok"

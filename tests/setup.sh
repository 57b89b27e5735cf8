#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs the Debian packages autoballoon builds, tests and demos with. Idempotent: apt runs only
# when something is missing.
set -euo pipefail

packages=(
        # build
        gcc libc6-dev meson ninja-build pkg-config
        libsystemd-dev libjson-c-dev libinih-dev libcmocka-dev libvirt-dev libxml2-dev
        # real parts the tests start
        qemu-system-x86 busybox-static cpio gzip kmod dbus-daemon systemd
        libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
        # the libvirt latency benchmark's own client (tests/bench/libvirt_latency.py)
        python3-libvirt
        python3 python3-pytest
)

missing=()
for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: installing ${missing[*]}"
        if [ "$(id -u)" != 0 ]; then
                echo "setup: must run as root to install packages (or install them yourself)" >&2
                exit 1
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: packages ok"

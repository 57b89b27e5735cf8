#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Sets up and runs the demo: three real QEMU guests in balloon slices, autoballoond, host pressure
# and then guest pressure, with a live timeline of every decision. Needs root (cgroups).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export AUTOBALLOON_CACHE=${AUTOBALLOON_CACHE:-/var/cache/autoballoon}

tests/setup.sh
[ -d build/ci ] || meson setup build/ci -Dtests=enabled >/dev/null
ninja -C build/ci >/dev/null
tests/guest-image/build.sh
AUTOBALLOON_BUILD="$top/build/ci" exec /usr/bin/python3 tests/demo.py

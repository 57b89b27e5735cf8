#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Sets up and runs the demo: three real QEMU guests in balloon slices, autoballoond, host pressure
# then guest pressure, host pressure again, and memory given back once the host is calm, with a live
# timeline of every decision. Needs root (cgroups).
set -euo pipefail

. "$(dirname "$0")/lib/common.sh" demo
cd "$TOP"

# On a pure cgroup v2 host the demo's memory limits need a cgroup delegated to it (see TestCgroup in
# tests/lib/ab/cgroup.py): systemd makes one.
if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ] && [ -d /run/systemd/system ] &&
        [ -z "${AUTOBALLOON_DELEGATED:-}" ]; then
        AUTOBALLOON_DELEGATED=1 exec systemd-run --scope --quiet --collect -p Delegate=yes "$0" "$@"
fi

tests/setup.sh
[ -d build/ci ] || meson setup build/ci -Dtests=enabled >/dev/null
ninja -C build/ci >/dev/null
tests/guest-image/build.sh
AUTOBALLOON_BUILD="$TOP/build/ci" exec /usr/bin/python3 tests/demo.py

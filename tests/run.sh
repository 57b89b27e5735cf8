#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Sets up and runs the whole test suite, fastest tiers first:
#   1. build with -Werror and the unit tests, also built without libvirt (-Dlibvirt=disabled)
#   2. the unit tests again under ASan+UBSan
#   2b. each libFuzzer target briefly, from its committed corpus (clang, ASan+UBSan)
#   3. the guest image (cached in $AUTOBALLOON_CACHE)
#   4. integration and end-to-end tests on real QEMU guests, real PSI and real cgroups (root)
#   5. the libvirt backend against a real libvirtd (started by the tests, without systemd)
#   6. the labs: a systemd + cgroup v2 host in a VM, with guests inside (tests/lab/README.md), Debian 13
#      (systemd 257, QEMU 10.0, Linux 6.12, libvirt 11) first, then Debian 12 (systemd 252)
#   7. the guest pressure queue: patched kernel and QEMU built (cached), checkpatch, tests
set -euo pipefail

. "$(dirname "$0")/lib/common.sh" run
cd "$TOP"
start=$(date +%s)
tier() { printf '\n=== %s (%ds)\n' "$*" $(($(date +%s) - start)); }

tier "setup"
tests/setup.sh

tier "build (-Werror) and unit tests"
[ -d build/ci ] || meson setup build/ci --werror -Dtests=enabled -Dlibvirt=enabled >/dev/null
ninja -C build/ci >/dev/null
meson test -C build/ci --suite unit --print-errorlogs
# Without the libvirt backend: it builds, and the tests of what differs (Libvirt=, the daemon's core).
[ -d build/ci-nolibvirt ] || meson setup build/ci-nolibvirt --werror -Dtests=enabled -Dlibvirt=disabled >/dev/null
ninja -C build/ci-nolibvirt >/dev/null
meson test -C build/ci-nolibvirt --print-errorlogs config vm manager bus

tier "unit tests under ASan+UBSan"
[ -d build/asan ] || meson setup build/asan --werror -Dtests=enabled -Db_sanitize=address,undefined \
        -Db_lundef=false >/dev/null
ninja -C build/asan >/dev/null
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
        meson test -C build/asan --suite unit --print-errorlogs

tier "fuzz targets under ASan+UBSan, 10 s each (tests/fuzz)"
tests/fuzz/run.sh --max-time 10

tier "guest image"
tests/guest-image/build.sh

tier "integration and end-to-end tests (real guests, real PSI)"
export AUTOBALLOON_BUILD="$TOP/build/ci"
/usr/bin/python3 -m pytest -v -p no:cacheprovider tests/integration tests/e2e

tier "libvirt backend (real libvirtd and TCG domains)"
/usr/bin/python3 -m pytest -v -p no:cacheprovider tests/libvirt

tier "lab, Debian 13: systemd 257 + cgroup v2 host in a VM (cached in \$AUTOBALLOON_CACHE/lab-trixie)"
LAB_RELEASE=trixie tests/lab/run.sh

tier "lab, Debian 12: systemd 252 + cgroup v2 host in a VM (cached in \$AUTOBALLOON_CACHE/lab)"
LAB_RELEASE=bookworm tests/lab/run.sh

tier "guest pressure queue: patched kernel and QEMU (cached in \$AUTOBALLOON_CACHE)"
guest/build-kernel.sh --stock
qemu/build-qemu.sh --stock --test --checkpatch
# checkpatch of each series from the tree it applies to (where build-kernel.sh and build-qemu.sh
# keep them), on absolute paths: from inside a git repository that tracks the patch, the kernel's
# checkpatch would check the .patch file as a source file.
(cd "$AUTOBALLOON_CACHE/kernel/src-6.12" &&
        scripts/checkpatch.pl --strict --quiet "$TOP"/guest/patches/000[1-9]-*.patch)
/usr/bin/python3 -m pytest -v -p no:cacheprovider tests/patches

tier "done"

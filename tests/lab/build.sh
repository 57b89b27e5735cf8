#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds the lab: L1, a Debian VM with systemd and cgroup v2 (LAB_RELEASE: bookworm, the default,
# Debian 12 with systemd 252, or trixie, Debian 13 with systemd 257), with autoballoon built by meson
# in a chroot of L1's rootfs (against that release's libsystemd) and installed, and the test guest
# (L2, the same release's kernel) ready to be restored from a saved state. See README.md.
#
# Cached in ${AUTOBALLOON_CACHE:-/var/cache/autoballoon}/lab (bookworm) or .../lab-RELEASE, each
# part with a stamp:
#   rootfs.tar.zst   mmdebstrap minbase RELEASE + packages      (stamp: packages, mirrors, recipe)
#   l1/vmlinuz, l1/initrd.img   Debian's cloud kernel (the guest image's package) and a busybox
#                    initramfs that loads virtio_blk and mounts /dev/vda
#   l2.state         the L2 guest booted once and saved (QEMU migration state), made with L1's
#                    own QEMU binary in a chroot of the rootfs (stamp: rootfs, guest image,
#                    command line); l2-VARIANT.state the same for each of $LAB_L2_VARIANTS
# Per run (cheap, always rebuilt) in $LAB_RUN_DIR (default <lab cache>/run):
#   root.img         ext4 (mkfs.ext4 -d, no loop mount): rootfs + autoballoon + guest + payload
#   swap.img         swap disk
#
# Environment: LAB_RELEASE (bookworm or trixie). For other payloads than the lab scenario (tests/bench/overcommit.py); unset, the image
# is the lab scenario's:
#   LAB_PAYLOAD        the Python program lab-scenario.service runs (default: scenario.py)
#   LAB_PAYLOAD_FILES  more files for /usr/lib/autoballoon-lab, space-separated
#   LAB_L2_VARIANTS    more saved L2 guests (l2.py's variant names: MIB or MIB-nofpr), space-separated
#   LAB_SWAP_SIZE      the swap disk (default 1G)
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$SRC_DIR/../lib/common.sh" lab-build
force_option "$@"
CACHE_ROOT=${AUTOBALLOON_CACHE:-/var/cache/autoballoon}
SUITE=${LAB_RELEASE:-bookworm}
# The release's own packages besides the common ones; the guest image of the host's release
# (bookworm) is the one every other tier uses, trixie's is built apart (tests/guest-image/build.sh).
case $SUITE in
bookworm)
        LAB=$CACHE_ROOT/lab
        GUEST_RELEASE=
        RELEASE_PACKAGES=()
        ;;
trixie)
        LAB=$CACHE_ROOT/lab-trixie
        GUEST_RELEASE=trixie
        # systemd.pc moved to systemd-dev; libvirtd run by systemd, with machined for its
        # <partition> placement, for the libvirt phase.
        RELEASE_PACKAGES=(systemd-dev systemd-container libvirt-daemon-system libvirt-daemon-driver-qemu
                          libvirt-clients)
        ;;
*)
        die "LAB_RELEASE=$SUITE: bookworm or trixie"
        ;;
esac
GUEST=$CACHE_ROOT/guest${GUEST_RELEASE:+-$GUEST_RELEASE}
RUN=${LAB_RUN_DIR:-$LAB/run}
# Seen as /src/build/lab-RELEASE from the chroot it is built in.
BUILD_DIR=build/lab-$SUITE
IMAGE_SIZE=3G
SWAP_SIZE=${LAB_SWAP_SIZE:-1G}
PAYLOAD=${LAB_PAYLOAD:-$SRC_DIR/scenario.py}
read -r -a PAYLOAD_FILES <<<"${LAB_PAYLOAD_FILES:-}"
read -r -a L2_VARIANTS <<<"${LAB_L2_VARIANTS:-}"

MIRRORS=(
        "deb http://deb.debian.org/debian $SUITE main"
        "deb http://deb.debian.org/debian $SUITE-updates main"
        "deb http://deb.debian.org/debian-security $SUITE-security main"
)
# L1's packages: systemd as PID 1, QEMU for the guests, python3 for the scenario, the libraries
# autoballoond links and what builds it there (install_autoballoon).
ROOTFS_PACKAGES=(systemd systemd-sysv udev dbus kmod procps iproute2 util-linux e2fsprogs
                 qemu-system-x86 python3 libsystemd0 libjson-c5 libinih1 libvirt0 libxml2
                 meson ninja-build pkg-config gcc libc6-dev
                 libsystemd-dev libjson-c-dev libinih-dev libvirt-dev libxml2-dev "${RELEASE_PACKAGES[@]}")
HOST_PACKAGES=(mmdebstrap zstd e2fsprogs busybox-static cpio gzip kmod qemu-system-x86
               util-linux python3)
# Loaded by L1's initramfs (their dependencies come along).
L1_MODULES=(virtio_pci virtio_blk)

# Runs a command, showing its output only if it fails.
quiet() {
        local out rc=0
        out=$("$@" 2>&1) || rc=$?
        ((rc == 0)) || printf '%s\n' "$out" | tail -n 30 >&2
        return $rc
}

sha() {
        sha256sum | cut -d' ' -f1
}

# l2.py on the host, where the harness it imports is in the source tree.
l2() {
        PYTHONPATH=$TOP/tests/lib /usr/bin/python3 "$SRC_DIR/l2.py" "$@"
}

# ---------------------------------------------------------------------------- rootfs

rootfs_recipe() {
        # The hooks: what systemd needs to boot the image headless from /dev/vda.
        local include
        include=$(IFS=,; echo "${ROOTFS_PACKAGES[*]}")
        mmdebstrap --variant=minbase --include="$include" \
                --aptopt='APT::Install-Recommends "false"' \
                --dpkgopt='path-exclude=/usr/share/man/*' \
                --dpkgopt='path-exclude=/usr/share/doc/*' \
                --dpkgopt='path-include=/usr/share/doc/*/copyright' \
                --dpkgopt='path-exclude=/usr/share/locale/*' \
                --customize-hook='rm -f "$1"/var/cache/apt/*.bin "$1"/var/lib/apt/lists/*_Packages' \
                "$SUITE" "$1" "${MIRRORS[@]}"
}

build_rootfs() {
        local stamp tmp
        stamp=$(printf '%s\n' "${ROOTFS_PACKAGES[@]}" "${MIRRORS[@]}" "$(declare -f rootfs_recipe)" |
                sha)
        ROOTFS_STAMP=$stamp
        if stamp_ok "$LAB/rootfs.stamp" "$stamp" && [[ -f $LAB/rootfs.tar.zst ]]; then
                log "rootfs cached: $LAB/rootfs.tar.zst ($(du -h "$LAB/rootfs.tar.zst" | cut -f1))"
                return 0
        fi
        log "building the rootfs with mmdebstrap ($SUITE, ${#ROOTFS_PACKAGES[@]} packages + deps; ~1-3 min)"
        rm -f "$LAB/rootfs.stamp"
        tmp=$LAB/.rootfs.tar.zst
        rm -f "$tmp"
        # mmdebstrap's own I: lines are the progress.
        rootfs_recipe "$tmp" 2>&1 | sed -u 's/^/lab-build:   /' ||
                die "mmdebstrap failed"
        [[ -s $tmp ]] || die "mmdebstrap wrote no $tmp"
        mv "$tmp" "$LAB/rootfs.tar.zst"
        echo "$stamp" >"$LAB/rootfs.stamp"
        log "rootfs built: $(du -h "$LAB/rootfs.tar.zst" | cut -f1)"
}

# ---------------------------------------------------------------------------- L1 kernel + initramfs

guest_manifest() {
        sed -n "s/^$1=//p" "$GUEST/manifest"
}

build_l1_boot() {
        local kpkg kver deb stamp w kroot krel m
        kpkg=$(guest_manifest kernel_package)
        kver=$(guest_manifest kernel_version)
        [[ -n $kpkg && -n $kver ]] || die "no kernel in $GUEST/manifest"
        deb=
        for f in "$GUEST/debs/${kpkg}"_*.deb; do
                [[ -e $f && $(dpkg-deb -f "$f" Version) == "$kver" ]] && deb=$f
        done
        [[ -n $deb ]] || die "no $kpkg $kver package in $GUEST/debs (tests/guest-image/build.sh keeps it)"
        stamp=$(printf '%s\n' "$kpkg=$kver" "busybox=$(pkg_version busybox-static)" "${L1_MODULES[*]}" \
                "$(sha <"$SRC_DIR/initramfs-init")" "$(declare -f build_l1_boot)" | sha)
        if stamp_ok "$LAB/l1/stamp" "$stamp" && [[ -f $LAB/l1/vmlinuz && -f $LAB/l1/initrd.img ]]; then
                log "L1 kernel and initramfs cached ($kpkg $kver)"
                return 0
        fi
        log "L1 kernel and initramfs from ${deb##*/}"
        w=$(mktemp -d "$LAB/.l1.XXXXXX")
        dpkg-deb -x "$deb" "$w/k"
        # The modules are in /lib/modules up to bookworm, /usr/lib/modules from trixie on.
        kroot=$w/k
        [[ -d $kroot/lib/modules ]] || kroot=$w/k/usr
        krel=$(basename "$(ls -d "$kroot"/lib/modules/*)")
        depmod -b "$kroot" "$krel"
        mkdir -p "$w"/initramfs/{bin,dev,proc,sys,etc,lib/modules}
        cp /bin/busybox "$w/initramfs/bin/busybox"
        mknod -m 600 "$w/initramfs/dev/console" c 5 1
        install -m 755 "$SRC_DIR/initramfs-init" "$w/initramfs/init"
        : >"$w/initramfs/etc/modules"
        # modprobe --show-depends lists "insmod PATH" in load order, dependencies first.
        while read -r _ m _; do
                local base=${m##*/}
                base=${base%%.ko*}.ko
                grep -qx "$base" "$w/initramfs/etc/modules" && continue
                case $m in
                *.ko.xz) xz -dc "$m" >"$w/initramfs/lib/modules/$base" ;;
                *.ko) cp "$m" "$w/initramfs/lib/modules/$base" ;;
                *) die "unknown module format: $m" ;;
                esac
                echo "$base" >>"$w/initramfs/etc/modules"
        done < <(for m in "${L1_MODULES[@]}"; do
                # "builtin NAME" for one built in (6.12's virtio_pci): nothing to load.
                modprobe -d "$kroot" -S "$krel" --show-depends "$m" | { grep '^insmod ' || true; }
        done)
        log "L1 initramfs modules: $(tr '\n' ' ' <"$w/initramfs/etc/modules")"
        (cd "$w/initramfs" && find . -print0 | LC_ALL=C sort -z |
                cpio --null -o -H newc -R 0:0 --quiet) | gzip -9 -n >"$w/initrd.img"
        rm -rf "$LAB/l1"
        mkdir -p "$LAB/l1"
        cp "$w/k/boot/vmlinuz-$krel" "$LAB/l1/vmlinuz"
        mv "$w/initrd.img" "$LAB/l1/initrd.img"
        echo "$stamp" >"$LAB/l1/stamp"
        rm -rf "$w"
}

# ---------------------------------------------------------------------------- per-run image

stage_rootfs() {
        log "extracting the rootfs into $STAGE"
        rm -rf "$STAGE"
        mkdir -p "$STAGE"
        tar -C "$STAGE" --zstd -xpf "$LAB/rootfs.tar.zst"
}

install_guest_files() {
        install -D -m 644 "$GUEST/vmlinuz" "$STAGE/usr/lib/autoballoon-lab/guest/vmlinuz"
        install -D -m 644 "$GUEST/initrd.img" "$STAGE/usr/lib/autoballoon-lab/guest/initrd.img"
        install -D -m 644 "$GUEST/manifest" "$STAGE/usr/lib/autoballoon-lab/guest/manifest"
        install -D -m 644 "$SRC_DIR/l2.py" "$STAGE/usr/lib/autoballoon-lab/l2.py"
}

# The state must come from the QEMU that restores it: L1's, run in a chroot of the staged rootfs.
# $1: the variant (l2.py), empty for the scenario's guest.
build_l2_state() {
        local v=${1:-} name=l2${1:+-$1} stamp
        stamp=$(printf '%s\n' "$ROOTFS_STAMP" "$(<"$GUEST/stamp")" "$(l2 ${v:+"$v"})" \
                "$(sha <"$SRC_DIR/save-l2-state.py")" | sha)
        if stamp_ok "$LAB/$name.stamp" "$stamp" && [[ -f $LAB/$name.state ]]; then
                log "L2 state ${v:+of $v }cached ($(du -h "$LAB/$name.state" | cut -f1))"
                return 0
        fi
        log "booting L2 ${v:+($v) }once with L1's QEMU (chroot) to save its state"
        rm -f "$LAB/$name.stamp"
        /usr/bin/python3 "$SRC_DIR/save-l2-state.py" "$STAGE" "$LAB/.$name.state" ${v:+"$v"} 2>&1 |
                sed -u 's/^/lab-build:   /'
        ((PIPESTATUS[0] == 0)) || die "saving the L2 state ${v:+of $v }failed"
        mv "$LAB/.$name.state" "$LAB/$name.state"
        echo "$stamp" >"$LAB/$name.stamp"
        log "L2 state ${v:+of $v }saved ($(du -h "$LAB/$name.state" | cut -f1))"
}

# Runs a shell command in a chroot of the staged rootfs, the tree at /src, in a private mount
# namespace (nothing stays mounted on the host).
in_stage() {
        mkdir -p "$STAGE/src"
        unshare --mount --propagation private -- sh -c \
                'mount --bind "$2" "$1/src" && mount --rbind /dev "$1/dev" && mount -t proc proc "$1/proc" &&
                 exec chroot "$1" sh -c "$3"' sh "$STAGE" "$TOP" "$1"
}

# Built in L1's own rootfs: compiled against its release's libsystemd (252 or 257) and the unit
# made for its systemd (slices/meson.build); the build directory stays in the tree, so it is
# incremental across runs.
install_autoballoon() {
        log "building autoballoon in a chroot of the $SUITE rootfs (meson, $BUILD_DIR) and installing it there"
        quiet in_stage "cd /src && { [ -f $BUILD_DIR/build.ninja ] ||
                meson setup $BUILD_DIR --prefix=/usr --sysconfdir=/etc --localstatedir=/var -Dtests=disabled; } &&
                nice ninja -C $BUILD_DIR && meson install -C $BUILD_DIR --no-rebuild" ||
                die "building or installing autoballoon in the $SUITE chroot failed"
        rmdir "$STAGE/src"
        local f
        for f in usr/sbin/autoballoond usr/lib/systemd/system/autoballoond.service usr/bin/autoballoon-run \
                usr/lib/tmpfiles.d/autoballoon.conf; do
                [[ -e $STAGE/$f ]] || die "meson install put no /$f into the image"
        done
        # Runs only if every library it links is in the image.
        chroot "$STAGE" /usr/sbin/autoballoond --version >/dev/null ||
                die "autoballoond does not run in the image (missing library?)"
}

configure_image() {
        local etc=$STAGE/etc lib=$STAGE/usr/lib/autoballoon-lab f v
        install -m 755 "$SRC_DIR/scenario.py" "$lib/scenario.py"
        install -d "$lib/ab"
        install -m 644 "$TOP"/tests/lib/ab/*.py "$lib/ab/"
        install -m 644 "$SRC_DIR/lab-scenario.service" "$etc/systemd/system/lab-scenario.service"
        if [[ $(realpath "$PAYLOAD") != $(realpath "$SRC_DIR/scenario.py") ]]; then
                install -m 755 "$PAYLOAD" "$lib/${PAYLOAD##*/}"
                mkdir -p "$etc/systemd/system/lab-scenario.service.d"
                printf '[Service]\nExecStart=\nExecStart=/usr/bin/python3 %s\n' "/usr/lib/autoballoon-lab/${PAYLOAD##*/}" \
                        >"$etc/systemd/system/lab-scenario.service.d/payload.conf"
        fi
        for f in "${PAYLOAD_FILES[@]}"; do
                install -m 644 "$f" "$lib/${f##*/}"
        done
        # As a package would: enabled through their [Install] sections.
        systemctl --root="$STAGE" --quiet enable autoballoond.service lab-scenario.service
        install -D -m 644 "$SRC_DIR/lab.conf" "$etc/autoballoon/autoballoon.conf.d/50-lab.conf"
        install -D -m 644 "$LAB/l2.state" "$STAGE/var/lib/autoballoon-lab/l2.state"
        for v in "${L2_VARIANTS[@]}"; do
                install -m 644 "$LAB/l2-$v.state" "$STAGE$(l2 --state-path "$v")"
        done
        mkdir -p "$STAGE/var/lib/autoballoon-lab/out"

        echo lab >"$etc/hostname"
        # Not a first boot: systemd-firstboot would prompt on the console.
        tr -d - </proc/sys/kernel/random/uuid >"$etc/machine-id"
        cat >"$etc/fstab" <<EOF
/dev/vda        /       ext4    rw,errors=remount-ro    0 1
LABEL=labswap   none    swap    sw                      0 0
EOF
        passwd -R "$STAGE" -d root >/dev/null
        # Nothing periodic during a run; no getty on a VGA console that does not exist.
        systemctl --root="$STAGE" --quiet mask apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
                e2scrub_all.timer e2scrub_reap.service fstrim.timer getty@tty1.service
        # `run.sh --shell`: root shell on the serial console.
        mkdir -p "$etc/systemd/system/serial-getty@ttyS0.service.d"
        cat >"$etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 - $TERM
EOF
}

make_disks() {
        log "writing $RUN/root.img ($IMAGE_SIZE, mkfs.ext4 -d)"
        rm -f "$RUN/root.img" "$RUN/swap.img"
        mkfs.ext4 -q -F -L labroot -d "$STAGE" "$RUN/root.img" "$IMAGE_SIZE" >/dev/null ||
                die "mkfs.ext4 -d failed"
        # A disk to L1 (not a swap file): sparse is fine, mkswap's warnings about holes are not.
        truncate -s "$SWAP_SIZE" "$RUN/swap.img"
        mkswap -L labswap "$RUN/swap.img" >/dev/null 2>&1 || die "mkswap failed"
        cp "$LAB/l1/vmlinuz" "$LAB/l1/initrd.img" "$RUN/"
}

main() {
        need_root "mmdebstrap, chroot, device nodes in the image"
        # run.sh holds the lock already when it runs this script.
        [[ -n ${AUTOBALLOON_LAB_LOCKED:-} ]] || lock_cache "$LAB"
        mkdir -p "$LAB" "$RUN"
        ensure_packages "${HOST_PACKAGES[@]}"
        log "guest image (tests/guest-image/build.sh${GUEST_RELEASE:+, $GUEST_RELEASE})"
        GUEST_RELEASE=$GUEST_RELEASE "$TOP/tests/guest-image/build.sh" 2>&1 | sed -u 's/^/lab-build:   /'
        ((PIPESTATUS[0] == 0)) || die "the guest image build failed"

        build_rootfs
        build_l1_boot

        STAGE=$RUN/stage
        trap 'rm -rf "$STAGE"' EXIT
        stage_rootfs
        install_guest_files
        build_l2_state
        for v in "${L2_VARIANTS[@]}"; do
                build_l2_state "$v"
        done
        install_autoballoon
        configure_image
        make_disks
        log "done: $RUN/root.img"
}

main

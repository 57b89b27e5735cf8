#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds the small test guest: Debian's cloud kernel plus a busybox initramfs whose
# /init loads the virtio modules and runs abguest on the virtio console /dev/hvc0.
#
# Output in ${AUTOBALLOON_CACHE:-/var/cache/autoballoon}/guest: vmlinuz, initrd.img,
# manifest; with GUEST_RELEASE=NAME (e.g. trixie) the kernel is that Debian release's, fetched with
# a private apt configuration (tests/lib/debian.sh), into .../guest-NAME. The build is skipped when the stamp (package versions + hash of the files
# in this directory) is unchanged; --force rebuilds anyway.
set -euo pipefail

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RELEASE=${GUEST_RELEASE:-}
CACHE=${AUTOBALLOON_CACHE:-/var/cache/autoballoon}/guest${RELEASE:+-$RELEASE}
KERNEL_META=linux-image-cloud-amd64
MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
         virtio_balloon virtio_console virtio_blk)
# busybox-static (not busybox): the initramfs has no libc.
PACKAGES=(busybox-static cpio gzip gcc libc6-dev kmod xz-utils)

. "$SRC_DIR/../lib/common.sh" guest-image
force_option "$@"

# apt on the kernel's release: the host's, or GUEST_RELEASE's through a private configuration.
kapt() {
        if [[ -n $RELEASE ]]; then
                suite_apt "$RELEASE" "$@"
        else
                "$@"
        fi
}

kapt_update() {
        if [[ -n $RELEASE ]]; then
                ((apt_updated)) || suite_apt "$RELEASE" update
                apt_updated=1
        else
                apt_update
        fi
}

# The meta package depends on the real image package of the current ABI, "(= version)".
resolve_kernel() {
        local info dep
        info=$(kapt apt-cache show --no-all-versions "$KERNEL_META" 2>/dev/null || true)
        if [[ -z $info ]]; then
                kapt_update
                info=$(kapt apt-cache show --no-all-versions "$KERNEL_META" 2>/dev/null) ||
                        die "no package $KERNEL_META"
        fi
        dep=$(sed -n 's/^Depends: *\(linux-image-[^,]*\).*/\1/p' <<<"$info" | head -n1)
        [[ $dep =~ ^(linux-image-[^ ]+)\ \(=\ ([^\)]+)\)$ ]] ||
                die "cannot parse the dependency of $KERNEL_META: '$dep'"
        KPKG=${BASH_REMATCH[1]}
        KVER=${BASH_REMATCH[2]}
}

sources_hash() {
        (cd "$SRC_DIR" && find . -type f ! -name '*.sw?' ! -name '*~' -print0 |
                LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

make_stamp() {
        cat <<EOF
kernel_package=$KPKG
kernel_version=$KVER
busybox_static=$(pkg_version busybox-static)
gcc=$(pkg_version gcc)
libc6_dev=$(pkg_version libc6-dev)
modules=${MODULES[*]}
sources_sha256=$(sources_hash)
EOF
}

fetch_kernel() {
        local debs=$CACHE/debs f
        mkdir -p "$debs"
        for f in "$debs/${KPKG}"_*.deb; do
                [[ -e $f ]] || continue
                if [[ $(dpkg-deb -f "$f" Version) == "$KVER" ]]; then
                        log "kernel package cached: ${f##*/}"
                        DEB=$f
                        return 0
                fi
                rm -f "$f"
        done
        log "downloading $KPKG=$KVER"
        (cd "$debs" && kapt apt-get download -qq -o APT::Sandbox::User=root "$KPKG=$KVER") || return 1
        DEB=$(ls "$debs/${KPKG}"_*.deb)
}

# Module load order: dependencies first (depth-first over modules.dep).
declare -A VISITED=()
ORDER=()
visit_module() {
        local path=$1 line dep
        [[ -n ${VISITED[$path]:-} ]] && return 0
        VISITED[$path]=1
        line=$(awk -F: -v p="$path" '$1 == p { print; exit }' "$MODDIR/modules.dep")
        [[ -n $line ]] || die "$path not in modules.dep"
        for dep in ${line#*:}; do
                visit_module "$dep"
        done
        ORDER+=("$path")
}

module_path() {
        local name=${1//-/_} p base
        while IFS=: read -r p _; do
                base=${p##*/}
                base=${base%%.ko*}
                if [[ ${base//-/_} == "$name" ]]; then
                        echo "$p"
                        return 0
                fi
        done <"$MODDIR/modules.dep"
        # Built into the kernel (6.12's cloud kernel has virtio_ring, virtio and virtio_pci in it).
        while read -r p; do
                base=${p##*/}
                base=${base%%.ko*}
                [[ ${base//-/_} == "$name" ]] && return 0
        done <"$MODDIR/modules.builtin"
        die "module $1 not found in $KPKG"
}

install_module() {
        local src=$MODDIR/$1 base=${1##*/} dst
        dst=$INITRAMFS/lib/modules/${base%%.ko*}.ko
        case $base in
        *.ko) cp "$src" "$dst" ;;
        *.ko.xz) xz -dc "$src" >"$dst" ;;
        *.ko.gz) gzip -dc "$src" >"$dst" ;;
        *) die "unknown module format: $base" ;;
        esac
        echo "${base%%.ko*}.ko" >>"$INITRAMFS/etc/modules"
}

main() {
        need_root "installs packages, writes $CACHE"
        lock_cache "$CACHE"

        ensure_packages "${PACKAGES[@]}"
        resolve_kernel
        local stamp
        stamp=$(make_stamp)
        if stamp_ok "$CACHE/stamp" "$stamp" &&
                [[ -f $CACHE/vmlinuz && -f $CACHE/initrd.img && -f $CACHE/manifest ]]; then
                log "up to date in $CACHE ($KPKG $KVER)"
                return 0
        fi

        log "building in $CACHE"
        WORK=$(mktemp -d "$CACHE/.build.XXXXXX")
        trap 'rm -rf "$WORK"' EXIT
        if ! fetch_kernel; then
                # Stale package lists name a version the mirror no longer has.
                ((!apt_updated)) || die "apt-get download $KPKG=$KVER failed"
                kapt_update
                resolve_kernel
                stamp=$(make_stamp)
                fetch_kernel || die "apt-get download $KPKG=$KVER failed"
        fi

        log "extracting ${DEB##*/}"
        dpkg-deb -x "$DEB" "$WORK/kernel"
        local kdir krel
        for kdir in "$WORK"/kernel/lib/modules/* "$WORK"/kernel/usr/lib/modules/*; do
                [[ -d $kdir ]] && break
        done
        [[ -d $kdir ]] || die "no modules directory in ${DEB##*/}"
        krel=${kdir##*/}
        [[ -f $WORK/kernel/boot/vmlinuz-$krel ]] || die "no vmlinuz-$krel in ${DEB##*/}"
        # The package ships no modules.dep (depmod runs at install time).
        depmod -b "${kdir%/lib/modules/*}" "$krel"
        MODDIR=$kdir

        INITRAMFS=$WORK/initramfs
        mkdir -p "$INITRAMFS"/{bin,sbin,dev,etc,proc,sys,tmp,run,lib/modules}
        cp /bin/busybox "$INITRAMFS/bin/busybox"
        # The kernel opens /dev/console before /init mounts devtmpfs.
        mknod -m 600 "$INITRAMFS/dev/console" c 5 1
        install -m 755 "$SRC_DIR/init" "$INITRAMFS/init"

        log "compiling abguest"
        gcc -static -O2 -std=gnu11 -Wall -Wextra -Werror -o "$INITRAMFS/sbin/abguest" "$SRC_DIR/abguest.c"

        local m
        local path
        for m in "${MODULES[@]}"; do
                path=$(module_path "$m")
                [[ -z $path ]] || visit_module "$path"
        done
        : >"$INITRAMFS/etc/modules"
        for m in "${ORDER[@]}"; do
                install_module "$m"
        done
        log "modules: $(tr '\n' ' ' <"$INITRAMFS/etc/modules")"

        log "packing initramfs"
        (cd "$INITRAMFS" && find . -print0 | LC_ALL=C sort -z |
                cpio --null -o -H newc -R 0:0 --quiet) | gzip -9 -n >"$WORK/initrd.img"
        cp "$WORK/kernel/boot/vmlinuz-$krel" "$WORK/vmlinuz"
        {
                echo "$stamp"
                echo "kernel_release=$krel"
                echo "module_order=$(tr '\n' ' ' <"$INITRAMFS/etc/modules" | sed 's/ $//')"
                echo "initrd_bytes=$(stat -c %s "$WORK/initrd.img")"
                echo "vmlinuz_bytes=$(stat -c %s "$WORK/vmlinuz")"
                echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        } >"$WORK/manifest"

        # The stamp goes last: a build interrupted half-way is redone next time.
        rm -f "$CACHE/stamp"
        mv "$WORK/vmlinuz" "$WORK/initrd.img" "$WORK/manifest" "$CACHE/"
        echo "$stamp" >"$CACHE/stamp"
        log "done: $CACHE/vmlinuz $CACHE/initrd.img ($krel, initrd $(stat -c %s "$CACHE/initrd.img") bytes)"
}

main

#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Build qemu-system-x86_64 with the virtio-balloon guest pressure series: Debian's qemu source
# at the version pinned in qemu/qemu-version (with Debian's own patches, as dpkg-source -x
# applies them), plus qemu/patches applied with git am.
#
# Cache (AUTOBALLOON_CACHE, default /var/cache/autoballoon) under qemu/:
#   bin/qemu-system-x86_64   the patched binary (finds Debian's firmware by itself)
#   pc-bios/                 the firmware it needs, for -L on a host without those packages
#   src/                     apt-get source download; src/pristine: the Debian tree, a git
#                            repo whose tag "pristine" the series applies to
#   tree/                    clone of src/pristine with the series applied (branch autoballoon)
#   build/                   meson build directory; build.log, configure.log, test.log
#   stamp                    inputs of the cached binary: pin, compiler, hash of qemu/
# A run whose inputs match the stamp only checks the apt pin and returns.
#
# --force rebuilds even if the stamp matches; --test also builds tests/qtest/qos-test and runs
# the guest pressure qtests against the cached binary.
set -euo pipefail

usage() {
        echo "usage: $0 [--force] [--test]" >&2
        exit 2
}

force=0
run_tests=0
for arg in "$@"; do
        case $arg in
        --force) force=1 ;;
        --test) run_tests=1 ;;
        *) usage ;;
        esac
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${AUTOBALLOON_CACHE:-/var/cache/autoballoon}/qemu
deps=(gcc libc6-dev make ninja-build meson pkg-config python3 libglib2.0-dev libpixman-1-dev
      libslirp-dev libfdt-dev zlib1g-dev dpkg-dev xz-utils git
      seabios qemu-system-data ipxe-qemu)
firmware=(bios-256k.bin vgabios-stdvga.bin kvmvapic.bin linuxboot_dma.bin pvh.bin
          efi-e1000.rom efi-virtio.rom)
firmware_dirs=(/usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu)
src_sources=/etc/apt/sources.list.d/autoballoon-deb-src.sources
qtest_prefix=/x86_64/pc/i440FX-pcihost/pci-bus-pc/pci-bus/virtio-balloon-pci
qtest_prefix+=/virtio-balloon-pci-tests/guest-pressure

. "$here/../tests/lib/common.sh" build-qemu

# Runs "$@" with its output in log file $1 (shifted); on failure shows the tail and dies.
logged() {
        local logfile=$1
        shift
        if ! "$@" >>"$logfile" 2>&1; then
                tail -n 40 "$logfile" >&2
                die "'$*' failed, full log: $logfile"
        fi
}

pin=$(grep -v '^[[:space:]]*\(#\|$\)' "$here/qemu-version" | head -n1 | tr -d '[:space:]')
[[ -n $pin ]] || die "no version in $here/qemu-version"
upstream=${pin#*:}                      # dsc names drop the epoch
mapfile -t patches < <(find "$here/patches" -name '[0-9][0-9][0-9][0-9]-*.patch' \
                       ! -name '0000-*' | sort)
((${#patches[@]})) || die "no patches in $here/patches"

need_root "installs packages, writes $cache"
lock_cache "$cache"

# --- tools ------------------------------------------------------------------------------------
ensure_packages "${deps[@]}"

# --- the pin ----------------------------------------------------------------------------------
# (Not "apt-cache ... | grep -q": with pipefail, grep's early exit fails the pipe.)
has_qemu_source() {
        local info
        info=$(apt-cache showsrc qemu 2>/dev/null) || return 1
        grep -q '^Package: qemu$' <<<"$info"
}

# deb-src lines for bookworm, in a file of our own.
ensure_deb_src() {
        has_qemu_source && return 0
        if [[ ! -f $src_sources ]]; then
                log "adding bookworm deb-src lines in $src_sources"
                cat >"$src_sources" <<EOF
# Added by autoballoon qemu/build-qemu.sh: Debian's qemu source package.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        fi
        # Again even if the package install above updated: the lists must include the new file.
        apt_update again
        has_qemu_source || die "no qemu source package in apt even with $src_sources"
}

newest_source() {
        local v newest=
        while read -r v; do
                if [[ -z $newest ]] || dpkg --compare-versions "$v" gt "$newest"; then
                        newest=$v
                fi
        done < <(apt-cache showsrc qemu 2>/dev/null |
                 awk '/^Package: / { p = $2 } /^Version: / && p == "qemu" { print $2 }')
        echo "$newest"
}

check_pin() {
        local newest
        ensure_deb_src
        newest=$(newest_source)
        if [[ $newest != "$pin" ]] && ((!apt_updated)); then
                apt_update
                newest=$(newest_source)
        fi
        [[ $newest == "$pin" ]] || die "apt offers qemu source ${newest:-nothing}, qemu/qemu-version" \
                "pins $pin: check that qemu/patches apply to $newest (git am on its tree) and" \
                "update the pin"
}
check_pin

# --- up to date? ------------------------------------------------------------------------------
inputs_hash() {
        (cd "$here" && find . -type f ! -name '*.md' ! -name '*.sw?' ! -name '*~' -print0 |
                LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}
stamp="qemu=$pin
gcc=$(pkg_version gcc)
inputs_sha256=$(inputs_hash)"

installed() {
        local f
        [[ -x $cache/bin/qemu-system-x86_64 ]] || return 1
        for f in "${firmware[@]}"; do
                [[ -f $cache/pc-bios/$f ]] || return 1
        done
}

if installed && stamp_ok "$cache/stamp" "$stamp"; then
        log "up to date: $cache/bin/qemu-system-x86_64 (qemu $pin + ${#patches[@]} patches)"
else
        # --- Debian's source, pristine ------------------------------------------------------------
        pristine=$cache/src/pristine
        if [[ $(cat "$pristine/.git/autoballoon-pin" 2>/dev/null) != "$pin" ]]; then
                log "fetching qemu $pin source with apt-get source"
                rm -rf "$cache/src" "$cache/tree" "$cache/build"
                mkdir -p "$cache/src"
                (cd "$cache/src" &&
                 apt-get source -qq --download-only -o APT::Sandbox::User=root "qemu=$pin" \
                        >/dev/null) || die "apt-get source qemu=$pin failed"
                log "unpacking with Debian's patches (dpkg-source -x)"
                logged "$cache/src/dpkg-source.log" \
                        dpkg-source -x "$cache/src/qemu_$upstream.dsc" "$pristine"
                logged "$cache/src/dpkg-source.log" git -C "$pristine" init -q
                # -f: QEMU's .gitignore hides files of the tree (*.patch in debian/patches).
                logged "$cache/src/dpkg-source.log" git -C "$pristine" add -A -f .
                logged "$cache/src/dpkg-source.log" git -C "$pristine" \
                        -c user.name=autoballoon -c user.email=autoballoon@localhost \
                        commit -q -m "Debian qemu $pin (dpkg-source -x)"
                git -C "$pristine" tag -f pristine >/dev/null
                echo "$pin" >"$pristine/.git/autoballoon-pin"
        fi

        # --- the series ---------------------------------------------------------------------------
        # Re-applied only when the series changed: rewriting the files makes ninja rebuild.
        tree=$cache/tree
        series_key=$(cat "${patches[@]}" | sha256sum | cut -d' ' -f1)
        [[ -d $tree/.git ]] || logged "$cache/src/dpkg-source.log" git clone -q "$pristine" "$tree"
        if [[ $(cat "$tree/.git/autoballoon-series" 2>/dev/null) != "$series_key" ||
              -n $(git -C "$tree" status --porcelain) ]]; then
                log "applying ${#patches[@]} patches with git am"
                rm -f "$tree/.git/autoballoon-series"
                git -C "$tree" am --abort >/dev/null 2>&1 || true
                git -C "$tree" checkout -q -f -B autoballoon pristine
                git -C "$tree" clean -q -f -d
                if ! git -C "$tree" -c user.name=autoballoon -c user.email=autoballoon@localhost \
                        am -q "${patches[@]}" >"$cache/am.log" 2>&1; then
                        cat "$cache/am.log" >&2
                        git -C "$tree" am --abort >/dev/null 2>&1 || true
                        die "qemu/patches do not apply to qemu $pin"
                fi
                echo "$series_key" >"$tree/.git/autoballoon-series"
        fi

        # --- configure ----------------------------------------------------------------------------
        # --without-default-features turns off every optional feature (gtk, sdl, vnc, spice,
        # opengl, virglrenderer, xen, docs, tools, guest agent, ...) whatever -dev packages the
        # host has; only what the tests need is turned back on. The firmware path is Debian's.
        conf=(--target-list=x86_64-softmmu --without-default-features
              --enable-kvm --enable-tcg --enable-slirp --enable-fdt=system --disable-user
              --enable-werror --disable-install-blobs --with-git-submodules=ignore
              --firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu
              "--with-pkgversion=autoballoon $pin")
        build=$cache/build
        conf_key=$(printf '%s\n' "${conf[@]}" | sha256sum | cut -d' ' -f1)
        if [[ ! -f $build/build.ninja || $(cat "$build/.autoballoon-conf" 2>/dev/null) != "$conf_key" ]]
        then
                log "configuring (log: $build/configure.log)"
                rm -rf "$build"
                mkdir -p "$build"
                (cd "$build" && logged "$build/configure.log" "$tree/configure" "${conf[@]}")
                echo "$conf_key" >"$build/.autoballoon-conf"
        fi

        # --- build --------------------------------------------------------------------------------
        log "building qemu-system-x86_64 (log: $build/build.log)"
        : >"$build/build.log"
        ninja -C "$build" qemu-system-x86_64 >"$build/build.log" 2>&1 &
        ninja_pid=$!
        ticks=0
        while kill -0 "$ninja_pid" 2>/dev/null; do
                sleep 1
                ((++ticks % 15)) && continue
                progress=$(grep -o '^\[[0-9]*/[0-9]*\]' "$build/build.log" | tail -n1)
                [[ -z $progress ]] || log "  ninja $progress"
        done
        if ! wait "$ninja_pid"; then
                tail -n 40 "$build/build.log" >&2
                die "build failed, full log: $build/build.log"
        fi

        # --- install into the cache ---------------------------------------------------------------
        mkdir -p "$cache/bin" "$cache/pc-bios"
        cp "$build/qemu-system-x86_64" "$cache/bin/.qemu-system-x86_64.new"
        mv -f "$cache/bin/.qemu-system-x86_64.new" "$cache/bin/qemu-system-x86_64"
        for f in "${firmware[@]}"; do
                for d in "${firmware_dirs[@]}" ""; do
                        [[ -n $d ]] || die "firmware $f not found in ${firmware_dirs[*]}"
                        if [[ -e $d/$f ]]; then
                                cp -L "$d/$f" "$cache/pc-bios/$f"
                                break
                        fi
                done
        done
        echo "$stamp" >"$cache/stamp"
        log "built $cache/bin/qemu-system-x86_64 ($("$cache/bin/qemu-system-x86_64" --version |
                head -n1))"
fi

# --- qtests -----------------------------------------------------------------------------------
if ((run_tests)); then
        build=$cache/build
        [[ -f $build/build.ninja ]] || die "no build directory: run with --force"
        log "building tests/qtest/qos-test"
        logged "$build/test.log" ninja -C "$build" tests/qtest/qos-test
        mapfile -t names < <(QTEST_QEMU_BINARY=$cache/bin/qemu-system-x86_64 \
                "$build/tests/qtest/qos-test" -l | grep "^$qtest_prefix/")
        ((${#names[@]})) || die "no guest pressure qtests in qos-test"
        args=()
        for n in "${names[@]}"; do
                args+=(-p "$n")
        done
        log "running ${#names[@]} guest pressure qtests (log: $build/test.log)"
        : >"$build/test.log"
        if ! QTEST_QEMU_BINARY=$cache/bin/qemu-system-x86_64 \
                "$build/tests/qtest/qos-test" --tap "${args[@]}" >>"$build/test.log" 2>&1; then
                grep -E '^(ok|not ok)|ERROR|Bail' "$build/test.log" >&2 || tail -n 40 "$build/test.log" >&2
                die "qtests failed, full log: $build/test.log"
        fi
        log "qtests: $(grep -c '^ok ' "$build/test.log") passed"
fi
log "done"

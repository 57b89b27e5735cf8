#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Build qemu-system-x86_64 with the virtio-balloon guest pressure series: Debian 13 (trixie)'s
# qemu source at the version pinned in qemu/qemu-version (with Debian's own patches, as
# dpkg-source -x applies them), plus qemu/patches applied with git am. With --stock, also the
# same source without the series, for "patched guest on stock QEMU" tests.
#
# Cache (AUTOBALLOON_CACHE, default /var/cache/autoballoon) under qemu-MAJOR.MINOR/ (qemu-10.0/;
# a directory per upstream series, so that builds of another series never share or wipe it):
#   bin/qemu-system-x86_64         the patched binary (finds Debian's firmware by itself)
#   stock/bin/qemu-system-x86_64   the stock binary (--stock)
#   pc-bios/                       the firmware they need, for -L on a host without those packages
#   tools/                         meson from trixie (QEMU 10.0 needs meson >= 1.5, bookworm has
#                                  1.0) in a python venv, never installed on the host
#   src/                           apt-get source download; src/pristine: the Debian tree, a git
#                                  repo whose tag "pristine" the series applies to
#   tree/, build/                  clone with the series applied (branch autoballoon), its build
#   stock/tree/, stock/build/      clone at tag pristine, its build (same relative layout as
#                                  tree/ and build/, so ccache serves the stock build from the
#                                  patched one's objects)
#   ccache/                        the compiler cache both builds share
#   stamp, stock/stamp             inputs of each cached binary: pin, compiler, hash of qemu/
# A run whose inputs match the stamps only checks the apt pin and returns.
#
# --force rebuilds even if the stamps match; --test also builds the qtest virtio-balloon-test
# and runs it against the patched binary; --checkpatch runs QEMU's scripts/checkpatch.pl on the
# series (without the sign-off check: whoever posts the series adds their own).
set -euo pipefail

usage() {
        echo "usage: $0 [--force] [--stock] [--test] [--checkpatch]" >&2
        exit 2
}

force=0
stock=0
run_tests=0
checkpatch=0
for arg in "$@"; do
        case $arg in
        --force) force=1 ;;
        --stock) stock=1 ;;
        --test) run_tests=1 ;;
        --checkpatch) checkpatch=1 ;;
        *) usage ;;
        esac
done

release=trixie
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
deps=(gcc libc6-dev make ninja-build pkg-config python3 python3-venv libglib2.0-dev
      libpixman-1-dev libslirp-dev libfdt-dev zlib1g-dev dpkg-dev xz-utils git ccache
      seabios qemu-system-data ipxe-qemu)
firmware=(bios-256k.bin vgabios-stdvga.bin kvmvapic.bin linuxboot_dma.bin pvh.bin
          efi-e1000.rom efi-virtio.rom)
firmware_dirs=(/usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu)

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
[[ $upstream =~ ^([0-9]+\.[0-9]+)\. ]] || die "cannot read the QEMU series from $pin"
cache=$AUTOBALLOON_CACHE/qemu-${BASH_REMATCH[1]}
mapfile -t patches < <(find "$here/patches" -name '[0-9][0-9][0-9][0-9]-*.patch' \
                       ! -name '0000-*' | sort)

need_root "installs packages, writes $cache"
lock_cache "$cache"

# --- tools ------------------------------------------------------------------------------------
ensure_packages "${deps[@]}"
suite_updated=0
suite_update() {
        ((suite_updated)) && return 0
        suite_apt "$release" update
        suite_updated=1
}

# --- the pin ----------------------------------------------------------------------------------
# (Not "apt-cache ... | grep -q": with pipefail, grep's early exit fails the pipe.)
newest_source() {
        local v newest=
        while read -r v; do
                if [[ -z $newest ]] || dpkg --compare-versions "$v" gt "$newest"; then
                        newest=$v
                fi
        done < <(suite_apt "$release" apt-cache showsrc qemu 2>/dev/null |
                 awk '/^Package: / { p = $2 } /^Version: / && p == "qemu" { print $2 }')
        echo "$newest"
}

check_pin() {
        local newest
        newest=$(newest_source)
        if [[ $newest != "$pin" ]]; then
                suite_update
                newest=$(newest_source)
        fi
        [[ $newest == "$pin" ]] || die "$release's apt offers qemu source ${newest:-nothing}," \
                "qemu/qemu-version pins $pin: check that qemu/patches apply to $newest (git am" \
                "on its tree) and update the pin"
}
check_pin

# --- meson ------------------------------------------------------------------------------------
# QEMU 10.0's configure takes meson from its python (pyvenv, made with the system site packages
# of the python it runs under) when it is new enough; Debian's source drops the meson wheel it
# would install instead. So configure runs under a venv of our own that has trixie's meson.
ensure_meson() {
        local deb version site
        version=$(cat "$cache/tools/meson-version" 2>/dev/null) && [[ -x $cache/tools/venv/bin/python3 ]] &&
                return 0
        rm -rf "$cache/tools"
        mkdir -p "$cache/tools/deb"
        suite_update
        (cd "$cache/tools/deb" && suite_apt "$release" apt-get download -qq meson) ||
                die "apt-get download meson ($release) failed"
        deb=$(echo "$cache"/tools/deb/meson_*_all.deb)
        version=$(dpkg-deb -f "$deb" Version)
        dpkg-deb -x "$deb" "$cache/tools/deb/root"
        python3 -m venv --system-site-packages --without-pip "$cache/tools/venv"
        site=$("$cache/tools/venv/bin/python3" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
        cp -a "$cache/tools/deb/root/usr/lib/python3/dist-packages/." "$site/"
        "$cache/tools/venv/bin/python3" -m mesonbuild.mesonmain --version >/dev/null ||
                die "meson $version from $release does not run"
        echo "$version" >"$cache/tools/meson-version"
        log "meson $version ($release) in $cache/tools/venv"
}
ensure_meson
meson_version=$(cat "$cache/tools/meson-version")

# --- Debian's source, pristine ----------------------------------------------------------------
pristine=$cache/src/pristine
ensure_pristine() {
        [[ $(cat "$pristine/.git/autoballoon-pin" 2>/dev/null) == "$pin" ]] && return 0
        log "fetching qemu $pin source ($release) with apt-get source"
        rm -rf "$cache/src" "$cache/tree" "$cache/build" "$cache/stock"
        mkdir -p "$cache/src"
        suite_update
        (cd "$cache/src" && suite_apt "$release" apt-get source -qq --download-only "qemu=$pin" \
                >/dev/null) || die "apt-get source qemu=$pin failed"
        log "unpacking with Debian's patches (dpkg-source -x)"
        logged "$cache/src/dpkg-source.log" dpkg-source -x "$cache/src/qemu_$upstream.dsc" "$pristine"
        logged "$cache/src/dpkg-source.log" git -C "$pristine" init -q
        # -f: QEMU's .gitignore hides files of the tree (*.patch in debian/patches).
        logged "$cache/src/dpkg-source.log" git -C "$pristine" add -A -f .
        logged "$cache/src/dpkg-source.log" git -C "$pristine" \
                -c user.name=autoballoon -c user.email=autoballoon@localhost \
                commit -q -m "Debian qemu $pin (dpkg-source -x)"
        git -C "$pristine" tag -f pristine >/dev/null
        echo "$pin" >"$pristine/.git/autoballoon-pin"
}

# --- the trees --------------------------------------------------------------------------------
# A clone of the pristine tree at tag pristine plus the patches $2... (none: stock), re-made only
# when they changed: rewriting the files makes ninja rebuild.
prepare_tree() {
        local tree=$1 key
        shift
        key=$(cat /dev/null "$@" | sha256sum | cut -d' ' -f1)
        [[ -d $tree/.git ]] || logged "$cache/src/dpkg-source.log" git clone -q "$pristine" "$tree"
        [[ $(cat "$tree/.git/autoballoon-series" 2>/dev/null) == "$key" &&
           -z $(git -C "$tree" status --porcelain) ]] && return 0
        log "checking out $tree with $# patches (git am)"
        rm -f "$tree/.git/autoballoon-series"
        git -C "$tree" am --abort >/dev/null 2>&1 || true
        git -C "$tree" checkout -q -f -B autoballoon pristine
        git -C "$tree" clean -q -f -d
        if (($#)) && ! git -C "$tree" -c user.name=autoballoon -c user.email=autoballoon@localhost \
                am -q "$@" >"$cache/am.log" 2>&1; then
                cat "$cache/am.log" >&2
                git -C "$tree" am --abort >/dev/null 2>&1 || true
                die "qemu/patches do not apply to qemu $pin"
        fi
        echo "$key" >"$tree/.git/autoballoon-series"
}

# --- configure and build ----------------------------------------------------------------------
# --without-default-features turns off every optional feature (gtk, sdl, vnc, spice, opengl,
# virglrenderer, xen, docs, tools, guest agent, rust, ...) whatever -dev packages the host has;
# only what the tests need is turned back on. The firmware path is Debian's. Both builds get the
# same options, version string included (it is in config-host.h, which every object includes):
# otherwise ccache could not share their objects.
conf=(--target-list=x86_64-softmmu --without-default-features
      --enable-kvm --enable-tcg --enable-slirp --enable-fdt=system --disable-user
      --enable-werror --disable-install-blobs
      --disable-download --python="$cache/tools/venv/bin/python3" --cc="ccache gcc"
      --firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu
      "--with-pkgversion=autoballoon $pin")
export CCACHE_DIR=$cache/ccache CCACHE_BASEDIR=$cache CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE=4G

# Configures (if its options changed) and builds ninja target $3 in build directory $1 of tree $2.
build_target() {
        local build=$1 tree=$2 target=$3 key ticks=0 progress ninja_pid
        key=$(printf '%s\n' "${conf[@]}" "meson=$meson_version" | sha256sum | cut -d' ' -f1)
        if [[ ! -f $build/build.ninja || $(cat "$build/.autoballoon-conf" 2>/dev/null) != "$key" ]]
        then
                log "configuring $build (log: $build/configure.log)"
                rm -rf "$build"
                mkdir -p "$build"
                (cd "$build" && logged "$build/configure.log" "$tree/configure" "${conf[@]}")
                echo "$key" >"$build/.autoballoon-conf"
        fi
        log "building $target in $build (log: $build/build.log)"
        : >"$build/build.log"
        nice ninja -C "$build" "$target" >"$build/build.log" 2>&1 &
        ninja_pid=$!
        while kill -0 "$ninja_pid" 2>/dev/null; do
                sleep 1
                ((++ticks % 30)) && continue
                progress=$(grep -o '^\[[0-9]*/[0-9]*\]' "$build/build.log" | tail -n1)
                [[ -z $progress ]] || log "  ninja $progress"
        done
        if ! wait "$ninja_pid"; then
                tail -n 40 "$build/build.log" >&2
                die "build failed, full log: $build/build.log"
        fi
}

# Installs the binary of build directory $1 as $2/bin/qemu-system-x86_64.
install_binary() {
        mkdir -p "$2/bin"
        cp "$1/qemu-system-x86_64" "$2/bin/.qemu-system-x86_64.new"
        mv -f "$2/bin/.qemu-system-x86_64.new" "$2/bin/qemu-system-x86_64"
}

install_firmware() {
        local f d
        mkdir -p "$cache/pc-bios"
        for f in "${firmware[@]}"; do
                for d in "${firmware_dirs[@]}" ""; do
                        [[ -n $d ]] || die "firmware $f not found in ${firmware_dirs[*]}"
                        if [[ -e $d/$f ]]; then
                                cp -L "$d/$f" "$cache/pc-bios/$f"
                                break
                        fi
                done
        done
}

# --- up to date? ------------------------------------------------------------------------------
inputs_hash() {
        (cd "$here" && find . -type f ! -name '*.md' ! -name '*.sw?' ! -name '*~' -print0 |
                LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}
stamp="qemu=$pin
gcc=$(pkg_version gcc)
meson=$meson_version
inputs_sha256=$(inputs_hash)"
stock_stamp="qemu=$pin
gcc=$(pkg_version gcc)
meson=$meson_version
script_sha256=$(sha256sum "$here/build-qemu.sh" | cut -d' ' -f1)"

installed() {
        local f
        [[ -x $1/bin/qemu-system-x86_64 ]] || return 1
        for f in "${firmware[@]}"; do
                [[ -f $cache/pc-bios/$f ]] || return 1
        done
}

if ((stock)); then
        if installed "$cache/stock" && stamp_ok "$cache/stock/stamp" "$stock_stamp"; then
                log "up to date: $cache/stock/bin/qemu-system-x86_64 (qemu $pin)"
        else
                ensure_pristine
                prepare_tree "$cache/stock/tree"
                build_target "$cache/stock/build" "$cache/stock/tree" qemu-system-x86_64
                install_binary "$cache/stock/build" "$cache/stock"
                install_firmware
                echo "$stock_stamp" >"$cache/stock/stamp"
                log "built $cache/stock/bin/qemu-system-x86_64 (stock, ccache:" \
                        "$(ccache -s 2>/dev/null | grep -i 'hits:' | head -n1 | tr -s ' ')"
        fi
fi

if installed "$cache" && stamp_ok "$cache/stamp" "$stamp"; then
        log "up to date: $cache/bin/qemu-system-x86_64 (qemu $pin + ${#patches[@]} patches)"
else
        ((${#patches[@]})) || die "no patches in $here/patches"
        ensure_pristine
        prepare_tree "$cache/tree" "${patches[@]}"
        build_target "$cache/build" "$cache/tree" qemu-system-x86_64
        install_binary "$cache/build" "$cache"
        install_firmware
        echo "$stamp" >"$cache/stamp"
        log "built $cache/bin/qemu-system-x86_64 ($("$cache/bin/qemu-system-x86_64" --version |
                head -n1))"
fi

# --- checkpatch --------------------------------------------------------------------------------
# From the patched tree (its checkpatch, its MAINTAINERS), on absolute paths.
if ((checkpatch)); then
        log "scripts/checkpatch.pl on ${#patches[@]} patches"
        (cd "$cache/tree" && scripts/checkpatch.pl --no-signoff "${patches[@]}") ||
                die "checkpatch found errors in qemu/patches"
fi

# --- qtests -----------------------------------------------------------------------------------
if ((run_tests)); then
        build_target "$cache/build" "$cache/tree" tests/qtest/virtio-balloon-test
        log "running tests/qtest/virtio-balloon-test (log: $cache/build/test.log)"
        : >"$cache/build/test.log"
        if ! QTEST_QEMU_BINARY=$cache/bin/qemu-system-x86_64 \
                "$cache/build/tests/qtest/virtio-balloon-test" --tap >>"$cache/build/test.log" 2>&1
        then
                grep -E '^(ok|not ok)|ERROR|Bail' "$cache/build/test.log" >&2 ||
                        tail -n 40 "$cache/build/test.log" >&2
                die "qtests failed, full log: $cache/build/test.log"
        fi
        log "qtests: $(grep -c '^ok ' "$cache/build/test.log") passed"
fi
log "done"

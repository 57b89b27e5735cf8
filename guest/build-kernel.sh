#!/bin/bash
# Build the small x86_64 guest test kernel: Debian 13 (trixie)'s linux-source-6.12 at the version
# pinned in guest/linux-version, with the guest/patches series applied, configured as tinyconfig
# plus guest/config-fragment. With --stock, also the same kernel without the series. The package
# comes from trixie through a private apt configuration (suite_apt in tests/lib/debian.sh): the
# host's own apt sources are never touched.
#
# Cache (AUTOBALLOON_CACHE, default /var/cache/autoballoon) under kernel/:
#   bzImage, bzImage.config              patched kernel and its .config
#   bzImage-stock, bzImage-stock.config  stock kernel (--stock)
#   src-6.12/  git repo of the pristine tree (tag pristine-VERSION); branch autoballoon = + series,
#           left checked out (checkpatch runs from there)
#   out-6.12/  the make O= directory both kernels are built in, build-*.log their logs: the stock
#           kernel is the patched tree checked out at the pristine tag, so make rebuilds only what
#           the series touches
# A run whose inputs (pin + hash of the guest/ files that go into the kernel) match the stamps
# of the cached images only checks the apt pin and returns. The 6.12 tree and objects live apart
# from a 6.1 cache (src/, out/), which this script leaves alone.
set -euo pipefail

usage() {
        echo "usage: $0 [--stock]" >&2
        exit 2
}

stock=0
for arg in "$@"; do
        case $arg in
        --stock) stock=1 ;;
        *) usage ;;
        esac
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${AUTOBALLOON_CACHE:-/var/cache/autoballoon}/kernel
release=trixie
kver=6.12
pkg=linux-source-$kver
deps=(bc bison flex libelf-dev libssl-dev build-essential xz-utils git)

. "$here/../tests/lib/common.sh" build-kernel

pin=$(grep -v '^[[:space:]]*\(#\|$\)' "$here/linux-version" | head -n1 | tr -d '[:space:]')
[[ -n $pin ]] || die "no version in $here/linux-version"
mapfile -t patches < <(find "$here/patches" -name '[0-9][0-9][0-9][0-9]-*.patch' \
                       ! -name '0000-*' | sort)
((${#patches[@]})) || die "no patches in $here/patches"

lock_cache "$cache"

# --- tools ------------------------------------------------------------------------------------
ensure_packages "${deps[@]}"

# --- the pin ----------------------------------------------------------------------------------
# The pin must be one of the versions trixie offers (the security suite keeps older point
# releases for a while, so a new one does not break the build at once).
versions() { suite_apt "$release" apt-cache madison "$pkg" 2>/dev/null | awk -F' *[|] *' '{print $2}'; }
check_pin() {
        local have
        have=$(versions)
        # Nothing: lists never fetched (once per script is enough); a failed download: stale ones.
        if [[ ${1:-} == update || -z $have ]]; then
                suite_apt "$release" update
                have=$(versions)
        fi
        grep -qxF -- "$pin" <<<"$have" || die "$release offers $pkg" \
                "$(head -n1 <<<"$have" || true), guest/linux-version pins $pin: check that the" \
                "series applies to it and update the pin"
}
check_pin

# --- up to date? ------------------------------------------------------------------------------
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
base_key=$(printf '%s\n' "$pin" | cat - "$here/build-kernel.sh" "$here/config-fragment" |
           sha256sum | cut -d' ' -f1)
patched_key=$(printf '%s\n' "$base_key" | cat - "${patches[@]}" | sha256sum | cut -d' ' -f1)
stock_key=$base_key
fresh() { [[ -f $cache/$1 ]] && stamp_ok "$cache/$1.stamp" "$2"; }
if fresh bzImage "$patched_key" && { ((!stock)) || fresh bzImage-stock "$stock_key"; }; then
        log "up to date: $cache/bzImage$( ((stock)) && echo " $cache/bzImage-stock")"
        exit 0
fi

# --- pristine tree, once per pinned version ---------------------------------------------------
src=$cache/src-$kver
out=$cache/out-$kver
tag=pristine-$pin
export GIT_AUTHOR_NAME=autoballoon GIT_AUTHOR_EMAIL=autoballoon@localhost
export GIT_COMMITTER_NAME=autoballoon GIT_COMMITTER_EMAIL=autoballoon@localhost
if ! git -C "$src" rev-parse -q --verify "refs/tags/$tag" >/dev/null 2>&1; then
        deb=$cache/${pkg}_${pin}_all.deb
        if [[ ! -f $deb ]]; then
                log "downloading $pkg $pin"
                rm -f "$cache"/"${pkg}"_*.deb
                if ! (cd "$cache" && suite_apt "$release" apt-get download "$pkg=$pin") >"$cache/download.log" 2>&1; then
                        check_pin update
                        (cd "$cache" && suite_apt "$release" apt-get download "$pkg=$pin") >"$cache/download.log" 2>&1 ||
                                { tail -n 5 "$cache/download.log"; die "cannot download $pkg $pin"; }
                fi
        fi
        log "unpacking into $src and making it a git repo (once per version)"
        rm -rf "$src" "$out"
        mkdir -p "$src"
        dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/src/$pkg.tar.xz" |
                tar -xJ --strip-components=1 -C "$src"
        git -C "$src" init -q
        git -C "$src" config gc.auto 0
        # Debian's .gitignore ignores the whole top level: -f.
        git -C "$src" add -A -f .
        git -C "$src" commit -q -m "$pkg $pin"
        git -C "$src" tag "$tag"
        rm -f "$deb"
fi

# --- the series -------------------------------------------------------------------------------
series_key=$(hash_of "${patches[@]}")
if [[ "$(cat "$cache/series-$kver.key" 2>/dev/null)" != "$series_key" ||
      "$(git -C "$src" symbolic-ref -q --short HEAD)" != autoballoon ]]; then
        log "applying ${#patches[@]} patches with git am"
        rm -f "$cache/series-$kver.key"
        git -C "$src" am --abort >/dev/null 2>&1 || true
        git -C "$src" checkout -q -f -B autoballoon "$tag"
        if ! git -C "$src" am -q "${patches[@]}" >"$cache/am.log" 2>&1; then
                cat "$cache/am.log" >&2
                git -C "$src" am --abort >/dev/null 2>&1 || true
                die "the series does not apply to $pkg $pin"
        fi
        echo "$series_key" >"$cache/series-$kver.key"
fi

# --- build ------------------------------------------------------------------------------------
# build REF NAME KEY IMAGE: configure and build the tree checked out at REF into out/, cache the
# image as $cache/$IMAGE. Checking out only rewrites the files that differ, and make rebuilds what
# depends on them.
tree=$src
build() {
        local ref=$1 name=$2 key=$3 image=$4
        local blog=$cache/build-$name.log line

        fresh "$image" "$key" && return 0
        git -C "$src" checkout -q -f "$ref"
        mkdir -p "$out"
        : >"$blog"
        log "configuring $name kernel (tinyconfig + config-fragment)"
        [[ -f $out/.config ]] && cp -p "$out/.config" "$out/.config.prev"
        {
                make -C "$tree" O="$out" tinyconfig &&
                "$tree/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" \
                        "$here/config-fragment" &&
                make -C "$tree" O="$out" olddefconfig
        } >>"$blog" 2>&1 || { tail -n 30 "$blog"; die "configuring the $name kernel failed"; }
        while read -r line; do
                if [[ $line == "# CONFIG_"*" is not set" ]]; then
                        ! grep -q "^${line:2:-11}=" "$out/.config" || die "$name: $line did not hold"
                elif [[ $line == CONFIG_* ]]; then
                        grep -qx -- "$line" "$out/.config" || die "$name: $line did not hold"
                fi
        done <"$here/config-fragment"
        # An unchanged .config keeps its old time, so make does not rebuild for nothing.
        if [[ -f $out/.config.prev ]] && cmp -s "$out/.config" "$out/.config.prev"; then
                touch -r "$out/.config.prev" "$out/.config"
        fi
        rm -f "$out/.config.prev"

        log "building $name kernel (make -j2 bzImage, log: $blog)"
        if ! make -C "$tree" O="$out" -j2 bzImage >>"$blog" 2>&1; then
                tail -n 40 "$blog"
                die "building the $name kernel failed, log: $blog"
        fi
        cp "$out/arch/x86/boot/bzImage" "$cache/$image.tmp"
        cp "$out/.config" "$cache/$image.config"
        mv "$cache/$image.tmp" "$cache/$image"
        echo "$key" >"$cache/$image.stamp"
        log "$name kernel: $cache/$image ($(stat -c %s "$cache/$image") bytes)"
}

build autoballoon patched "$patched_key" bzImage
((stock)) && build "$tag" stock "$stock_key" bzImage-stock
git -C "$src" checkout -q -f autoballoon
log "done"

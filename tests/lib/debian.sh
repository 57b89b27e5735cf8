# SPDX-License-Identifier: LGPL-2.1-or-later
# Debian packages for the setup and build scripts, through tests/lib/common.sh, which defines the
# log MESSAGE and die MESSAGE this file uses.

apt_updated=0

# apt-get update, once per script; "apt_update again" also after it ran (new sources, stale lists).
apt_update() {
        [[ ${1:-} == again ]] && apt_updated=0
        ((apt_updated)) && return 0
        log "apt-get update"
        apt-get update -qq >/dev/null || die "apt-get update failed"
        apt_updated=1
}

# The version of an installed package, or nothing.
pkg_version() {
        dpkg-query -W -f='${Version}' "$1" 2>/dev/null
}

# Installs those of the packages that are missing.
ensure_packages() {
        local missing=() p
        for p; do
                [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] ||
                        missing+=("$p")
        done
        ((${#missing[@]})) || return 0
        [[ $EUID == 0 ]] || die "missing packages ${missing[*]}: run as root to install them"
        log "installing ${missing[*]}"
        apt_update
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
                >/dev/null || die "apt-get install ${missing[*]} failed"
}

# apt-get or apt-cache ($2...) on another Debian release ($1, e.g. trixie) than the host's, with a
# private configuration: its sources and lists live under $AUTOBALLOON_CACHE/apt/RELEASE and the
# host's own sources, lists and package cache are never touched. "suite_apt RELEASE update" once
# per script (then again only for stale lists). Source packages too (apt-get source): one list for
# everyone, so that no script's update drops another's indexes.
suite_apt() {
        local release=$1 tool=$2 dir=${AUTOBALLOON_CACHE:-/var/cache/autoballoon}/apt/$1
        shift 2
        local opts=(-o Dir::Etc::sourcelist="$dir/sources.list" -o Dir::Etc::sourceparts=-
                    -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache" -o APT::Sandbox::User=root)
        if [[ $tool == update ]]; then
                mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
                cat >"$dir/sources.list" <<SOURCES
deb http://deb.debian.org/debian $release main
deb http://deb.debian.org/debian $release-updates main
deb http://deb.debian.org/debian-security $release-security main
deb-src http://deb.debian.org/debian $release main
deb-src http://deb.debian.org/debian $release-updates main
deb-src http://deb.debian.org/debian-security $release-security main
SOURCES
                log "apt-get update ($release, private lists in $dir)"
                apt-get "${opts[@]}" update -qq >/dev/null || die "apt-get update of $release failed"
                return 0
        fi
        "$tool" "${opts[@]}" "$@"
}

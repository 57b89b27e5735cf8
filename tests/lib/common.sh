# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
# The prelude the setup, build and run scripts share. Source it with the name their lines start with:
#   . "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh" NAME
# It sets TOP (the top of the source tree) and AUTOBALLOON_CACHE (exported, default
# /var/cache/autoballoon), and defines:
#   log MESSAGE               "NAME: [ 12s] MESSAGE", the seconds since the script started
#   die MESSAGE               "NAME: error: MESSAGE" on stderr, exit 1
#   need_root WHY             die unless run as root
#   lock_cache DIR            makes DIR and holds DIR/.lock until the script exits: one build of a
#                             cache at a time, whichever script or test asks for it
#   force_option "$@"         the build scripts' one option: --force (force=1) rebuilds what is cached
#   stamp_ok FILE STAMP       FILE holds STAMP (the inputs of a cached output), unless force=1
# and Debian's packages through tests/lib/debian.sh (apt_update, pkg_version, ensure_packages).

LOG_NAME=${1:?usage: . common.sh NAME}
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export AUTOBALLOON_CACHE=${AUTOBALLOON_CACHE:-/var/cache/autoballoon}

log() {
        printf '%s: [%3ds] %s\n' "$LOG_NAME" "$SECONDS" "$*"
}

die() {
        printf '%s: error: %s\n' "$LOG_NAME" "$*" >&2
        exit 1
}

need_root() {
        [[ $EUID == 0 ]] || die "must run as root ($*)"
}

lock_cache() {
        mkdir -p "$1"
        exec 9>"$1/.lock"
        flock 9
}

force_option() {
        force=0
        case $#:${1:-} in
        0:) ;;
        1:--force) force=1 ;;
        *)
                echo "usage: $0 [--force]   (--force rebuilds what is cached)" >&2
                exit 2
                ;;
        esac
}

stamp_ok() {
        ((!${force:-0})) && [[ -f $1 && $(<"$1") == "$2" ]]
}

# shellcheck source=debian.sh
. "$TOP/tests/lib/debian.sh"

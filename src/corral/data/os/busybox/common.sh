# Corral busybox OS: shared by the OS scripts (sourced, not executed).
# shellcheck shell=sh disable=SC2034  # variables used by the scripts sourcing this
#
# The scripts run with the environment Ganeti's OS API gives (everything
# else cleared, PATH=/sbin:/bin:/usr/sbin:/usr/bin, cwd = this directory)
# and use only /bin/busybox (package busybox-static) and e2fsprogs.

BB=/bin/busybox
OS_DIR=$(cd "$(dirname "$0")" && pwd)
MIN_DISK_BYTES=$((16 * 1048576))

die() {
    echo "busybox OS: $*" >&2
    exit 1
}

[ -x "$BB" ] || die "$BB not found: install the busybox-static package"

# Size in bytes of a regular file or block device.
disk_size() {
    if [ -b "$1" ]; then
        $BB blockdev --getsize64 "$1"
    else
        $BB stat -L -c %s "$1"
    fi
}

# Checks the OS parameters given as OSP_* variables; dies on bad values.
# Known: OSP_ROOT_PASSWORD, OSP_DHCP, OSP_IP_PREFIX.
check_parameters() {
    for var in $($BB env | $BB sed -n 's/^\(OSP_[A-Za-z0-9_]*\)=.*/\1/p'); do
        case "$var" in
            OSP_ROOT_PASSWORD|OSP_DHCP|OSP_IP_PREFIX) ;;
            *) die "unknown OS parameter: $(echo "${var#OSP_}" | $BB tr 'A-Z_' 'a-z-')" ;;
        esac
    done
    case "${OSP_DHCP:-no}" in
        yes|no|true|false) ;;
        *) die "invalid value '$OSP_DHCP' for parameter dhcp (yes or no)" ;;
    esac
    case "${OSP_IP_PREFIX:-24}" in
        ''|*[!0-9]*) die "invalid value '$OSP_IP_PREFIX' for parameter ip_prefix (0-32)" ;;
    esac
    [ "${OSP_IP_PREFIX:-24}" -le 32 ] ||
        die "invalid value '$OSP_IP_PREFIX' for parameter ip_prefix (0-32)"
    case "${OSP_ROOT_PASSWORD:-}" in
        *"
"*) die "invalid value for parameter root_password (no newlines)" ;;
    esac
    return 0
}

# The variant to install: OS_VARIANT, or the default.
os_variant() {
    case "${OS_VARIANT:-default}" in
        default|tick) echo "${OS_VARIANT:-default}" ;;
        *) die "unknown variant '$OS_VARIANT' (default, tick)" ;;
    esac
}

# The disk the script works on (first disk), checked to exist.
first_disk() {
    [ "${DISK_COUNT:-0}" -ge 1 ] || die "the instance needs at least one disk"
    [ -n "${DISK_0_PATH:-}" ] || die "DISK_0_PATH is not set"
    [ -e "$DISK_0_PATH" ] || die "disk $DISK_0_PATH does not exist"
    echo "$DISK_0_PATH"
}

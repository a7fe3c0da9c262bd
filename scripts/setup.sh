#!/usr/bin/env bash
# Installs everything Corral needs on a fresh Debian machine (idempotent):
# Debian packages (qemu, the noop OS, tools) and a Python venv in .venv.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PKGS=(qemu-system-x86 qemu-utils ganeti-os-noop socat busybox-static e2fsprogs
      iproute2 cpio zstd gzip lzop ganeti-htools python3-ganeti-rapi
      man-db groff-base zsh)
missing=()
for p in "${PKGS[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if (( ${#missing[@]} )); then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    python3 -m venv "$ROOT/.venv"
fi
"$ROOT/.venv/bin/pip" install -q --disable-pip-version-check -e "$ROOT[test]"
# Man pages (section 8) where man finds them when .venv/bin is on PATH.
"$ROOT/.venv/bin/python" -m corral.cli.manpages "$ROOT/.venv/share/man" >/dev/null
# Shell completion: share/corral/completion.{bash,zsh} to source, and
# share/bash-completion/completions/<tool> for bash-completion (XDG_DATA_DIRS).
"$ROOT/.venv/bin/python" -m corral.cli.completion "$ROOT/.venv/share" >/dev/null
echo "setup: done (venv: $ROOT/.venv)"

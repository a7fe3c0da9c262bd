#!/usr/bin/env bash
# README command 1: on a fresh machine, install what Corral needs, start a
# one-node cluster, create a KVM instance with the busybox OS, wait for its
# login prompt on the serial console and show it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${CORRAL_DEMO_DIR:-/tmp/corral-demo}
BASE=${CORRAL_DEMO_BASE:-127.0.1}
BIN="$ROOT/.venv/bin"
start=$(date +%s)

"$ROOT/scripts/setup.sh"

if [ -e "$DIR/devcluster.json" ]; then
    echo "demo: removing the previous demo cluster in $DIR"
    "$BIN/corral" dev-cluster down --dir "$DIR" --purge
fi
echo "demo: starting a one-node cluster in $DIR (kvm, node1 on $BASE.1)"
"$BIN/corral" dev-cluster up --nodes 1 --dir "$DIR" --base "$BASE" --hypervisors kvm

export CORRAL_ROOT="$DIR/node1"
echo "demo: creating instance demo1"
"$BIN/gnt-instance" add -t file -o busybox+default -s 256M -B memory=128M \
    --no-name-check --no-ip-check -n node1 demo1

echo "demo: waiting for the login prompt on demo1's serial console"
"$BIN/gnt-instance" console demo1 --until 'login:' --timeout 180 >/dev/null

echo
"$BIN/gnt-instance" list
echo
echo "Last lines of demo1's console:"
"$BIN/gnt-instance" console demo1 --lines 8
echo
echo "demo: done in $(( $(date +%s) - start )) s."
echo "Try:      export CORRAL_ROOT=$DIR/node1 PATH=$BIN:\$PATH; gnt-instance console demo1"
echo "Clean up: $BIN/corral dev-cluster down --dir $DIR --purge"

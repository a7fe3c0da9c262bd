#!/usr/bin/env bash
# Sets up a fresh machine (scripts/setup.sh) and runs the whole test suite,
# integration and qemu tests included. Extra arguments go to pytest.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/scripts/setup.sh"
cd "$ROOT"
# pytest exits 5 when it collected no test: that is a failure here too.
exec "$ROOT/.venv/bin/pytest" -q "$@"

#!/usr/bin/env bash
# Fails when scripts/debian-packages.txt misses a package that the build, the
# scripts or the Python code use (see scripts/check_deps.py for what is
# collected). Usage: scripts/check-deps.sh [--packages FILE] [--build-dir DIR]...
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
if [[ ! -x /usr/bin/python3 ]]; then
  echo "check-deps: /usr/bin/python3 is missing; run scripts/install-deps.sh" >&2
  exit 2
fi
exec /usr/bin/python3 "$HERE/check_deps.py" "$@"

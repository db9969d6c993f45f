#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through ctest.
# Exits non-zero on any failure. Usage: scripts/test.sh [ctest arguments, e.g. -L unit]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${ENHANCE_BUILD_DIR:-$root/build}"

"$root/scripts/install-deps.sh"
start=$(date +%s)
"$root/scripts/build.sh"
built=$(date +%s)
echo "build: $((built - start)) s"

cd "$build"
ctest --output-on-failure --parallel "$(nproc)" --timeout 900 "$@"
echo "tests: $(($(date +%s) - built)) s"

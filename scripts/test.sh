#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through ctest.
# Exits non-zero on any failure. Usage: scripts/test.sh [ctest arguments, e.g. -L unit]
# ENHANCE_FUZZ_SECONDS (default 20): how long ctest's "fuzz" test runs each fuzz target;
# 0 leaves the clang build and the fuzz test out.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${ENHANCE_BUILD_DIR:-$root/build}"

"$root/scripts/install-deps.sh"
start=$(date +%s)
fuzz_seconds="${ENHANCE_FUZZ_SECONDS:-20}"
"$root/scripts/build.sh" -DENHANCE_FUZZ_SECONDS="$fuzz_seconds"
# The fuzz targets build with clang in a folder of their own; ctest's "fuzz" test runs them.
if [[ "$fuzz_seconds" != 0 ]] && command -v clang++-14 >/dev/null; then
  ENHANCE_FUZZ_BUILD_DIR="$build-fuzz" "$root/scripts/fuzz.sh" --build-only
fi
built=$(date +%s)
echo "build: $((built - start)) s"

cd "$build"
ctest --output-on-failure --parallel "$(nproc)" --timeout 900 "$@"
echo "tests: $(($(date +%s) - built)) s"

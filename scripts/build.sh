#!/usr/bin/env bash
# Configures and builds Orthanc Enhance into build/ (Release, Ninja, ccache when present).
# Usage: scripts/build.sh [extra cmake arguments]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${ENHANCE_BUILD_DIR:-$root/build}"
jobs="${ENHANCE_JOBS:-$(nproc)}"

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Release}" "$@" >/dev/null
cmake --build "$build" --parallel "$jobs"

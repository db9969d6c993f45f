#!/usr/bin/env bash
# Builds the unit tests (tests/unit) with AddressSanitizer, LeakSanitizer and UBSan (gcc)
# in a build folder of their own and runs them. Any finding fails the run: UBSan does not
# recover, ASan stops at the first error. LibTorch, DCMTK and the rest leave nothing for
# LeakSanitizer to report, so no suppression is needed.
#
# Usage: scripts/sanitize.sh [gtest arguments, e.g. --gtest_filter='DicomSeriesReader*']
# Environment: ENHANCE_SANITIZE_BUILD_DIR (default: build-sanitize next to build/),
#              ENHANCE_JOBS (default: all cores).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${ENHANCE_SANITIZE_BUILD_DIR:-${ENHANCE_BUILD_DIR:-$root/build}-sanitize}"
jobs="${ENHANCE_JOBS:-$(nproc)}"
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# GCC 12 reports std::regex internals as maybe-uninitialized under ASan (false positives).
flags+=" -Wno-maybe-uninitialized"

start=$(date +%s)
# -O1 keeps the tests fast enough while stack traces stay exact.
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DENHANCE_BUILD_MODEL_TOOLS=OFF >/dev/null
binaries=(tests/unit/enhance_core_tests)
if [[ -f "$build/build.ninja" ]] && grep -q "enhance_plugin_tests" "$build/build.ninja"; then
  binaries+=(tests/unit/enhance_plugin_tests)
fi
targets=()
for binary in "${binaries[@]}"; do targets+=("$(basename "$binary")"); done
nice cmake --build "$build" --parallel "$jobs" --target "${targets[@]}"
built=$(date +%s)
echo "sanitize: build $((built - start)) s"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
for binary in "${binaries[@]}"; do
  log="$build/$(basename "$binary").log"
  echo "sanitize: $binary (log: $log)"
  if ! (cd "$build/tests/unit" && "$build/$binary" "$@") >"$log" 2>&1; then
    status=1
    echo "sanitize: $binary FAILED; the end of its log follows" >&2
    tail -n 80 "$log" >&2
  fi
  grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$log" || true
done
echo "sanitize: tests $(($(date +%s) - built)) s"
exit "$status"

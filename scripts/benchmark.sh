#!/usr/bin/env bash
# Inference benchmark: every built-in model and every model under models/ (or the
# folders given with --models) on 512x512 CT phantom slices, with the machine's matrix-
# multiply rate measured in the same run. Prints a Markdown table (medians, min-max).
#   scripts/benchmark.sh [enhance-benchmark options, e.g. --slices 32 --repeats 5 --device cuda]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${ENHANCE_BUILD_DIR:-$root/build}"
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" >/dev/null
args=("$@")
if [[ ! " ${args[*]} " =~ " --models " ]]; then
  for manifest in "$root"/models/*/manifest.json; do
    [[ -e "$manifest" ]] && { args+=(--models "$root/models"); break; }
  done
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$build/tools/enhance-benchmark" "${args[@]}"

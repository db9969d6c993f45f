#!/usr/bin/env bash
# Trains the shipped models from scratch and writes their folders (model.pt and
# manifest.json; MODEL_CARD.md is kept). Needs the build (scripts/build.sh or the
# cmake/ninja lines in docs/models.md) and the mricron-data package for the MR models.
# Usage: models/train_all.sh [BUILD_DIR] [MODEL...]   (default: build, all models)
# Runs at low priority: the training machines are shared.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
shift || true
models=("$@")
if [[ ${#models[@]} -eq 0 ]]; then
  models=(ct-denoise ct-denoise-gan mr-denoise ct-superres-x2 mr-superres-x2 ct-superres-z2 mr2ct
          mr2ct-diffusion)
fi
for model in "${models[@]}"; do
  echo "== $model"
  if [[ "$model" == mr2ct-diffusion ]]; then
    # The diffusion model is trained in Python (Debian's python3-torch) on mr2ct's data.
    data="$(mktemp -t mr2ct-data-XXXXXX.pt)"
    "$build/models/enhance-train" mr2ct --export-data "$data"
    time nice -n 15 /usr/bin/python3 "$root/models/tools/train_diffusion.py" "$model" \
      --data "$data" --out "$root/models/$model" --threads 2
    rm -f "$data"
    continue
  fi
  time nice -n 15 "$build/models/enhance-train" "$model" --out "$root/models/$model"
done

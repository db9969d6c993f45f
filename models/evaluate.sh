#!/usr/bin/env bash
# Evaluates the shipped models on their held-out test sets and prints the markdown
# tables quoted in the model cards and docs/models.md.
# Usage: models/evaluate.sh [BUILD_DIR] [MODEL...]   (default: build, every model folder)
#        models/evaluate.sh build domain-ct domain-mr   (the domain checks)
#        ENHANCE_EVALUATE_PRECISION=float,bf16 models/evaluate.sh build ct-denoise
#          (the learned models in float and bf16 side by side, without the baselines)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
shift || true
models=("$@")
if [[ ${#models[@]} -eq 0 ]]; then
  for manifest in "$root"/models/*/manifest.json; do models+=("$(basename "$(dirname "$manifest")")"); done
fi
for model in "${models[@]}"; do
  echo "== $model"
  if [[ "$model" == domain-* ]]; then
    # A domain check: domain-ct, domain-mr (docs/models.md, "The shipped domain checks").
    nice -n 15 "$build/models/enhance-domain" evaluate "${model#domain-}" --models "$root/models"
    continue
  fi
  nice -n 15 "$build/models/enhance-evaluate" "$model" --models "$root/models" \
    --precision "${ENHANCE_EVALUATE_PRECISION:-float}"
done

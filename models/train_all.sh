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
          mr2ct-diffusion domain-ct domain-ct-x2 domain-mr domain-mr-x2)
fi
# The series the domain checks are calibrated and evaluated on, simulated once for all four,
# and the autoencoder both MR checks share, trained once.
cache="$(mktemp -d -t enhance-domain-sets-XXXXXX)"
trap 'rm -rf "$cache"' EXIT
for model in "${models[@]}"; do
  echo "== $model"
  if [[ "$model" == domain-* ]]; then
    # The domain checks: a variational autoencoder per training distribution, trained in
    # Python on the CT models' (ct-denoise's) or the MR models' (mr-denoise's and mr2ct's)
    # inputs, at the acquisition's resolution (CT) or at half of it (the CT in-plane
    # super-resolution model's, and the MR ones), then calibrated and written into the model
    # folders.
    work="$(mktemp -d -t enhance-domain-XXXXXX)"
    distribution="${model#domain-}"
    vae="$work/domain.pt"
    # One autoencoder for both MR checks: the small network at half the resolution (2x2
    # means), trained 6,000 steps, once per run. The MR check scores the 2x2 means of the
    # slices (--downsample 2 below), the MR-x2 check mr-superres-x2's inputs, already at
    # that resolution, as they are. The wide network tells ghosting apart better on the
    # broader look, at twice the cost, over the target on 8-slice series where the MR
    # models run fastest (docs/models.md).
    if [[ "$distribution" == mr* ]]; then
      mkdir -p "$cache/mr-autoencoder"
      vae="$cache/mr-autoencoder/domain.pt"
    fi
    if [[ ! -f "$vae" ]]; then
      if [[ "$distribution" == ct* ]]; then
        "$build/models/enhance-train" ct-denoise --export-data "$work/ct-denoise.pt"
        # The small network: as good as the wide one on every CT set, at 40% of its cost.
        options=(--data "$work/ct-denoise.pt" --normalisation window --held-out 0:40-48
                 --flips hv --network small)
      else
        "$build/models/enhance-train" mr-denoise --export-data "$work/mr-denoise.pt"
        "$build/models/enhance-train" mr2ct --export-data "$work/mr2ct.pt"
        # Held out: slices near the models' own held-out blocks (train_vae.py's docstring).
        options=(--data "$work/mr-denoise.pt" "$work/mr2ct.pt" --normalisation slice-percentile
                 --slabs 12 10 --held-out 0:60-84 1:40-60 1:150-160 1:250-260
                 --exclude 1:140-150 1:160-170 1:240-250 1:260-270)
      fi
      case "$distribution" in
        ct-x2) options+=(--downsample 2 --steps 1200 --threads 1) ;;
        mr*) options+=(--network small --downsample 2 --steps 6000 --threads 2) ;;
        *) options+=(--threads 2) ;;
      esac
      time nice -n 15 /usr/bin/python3 "$root/models/tools/train_vae.py" "${options[@]}" \
        --out "$vae"
    fi
    # How each check scores (docs/models.md, "The shipped domain checks"): one slice in 8,
    # at least 4 for CT (calibrated on series of 4 slices) and 6 for MR (of 8, for the
    # check's share of the MR models' time on short series), 4 for MR-x2 (the in-plane
    # super-resolution model costs least per slice); the full-resolution CT check on
    # the central 256 x 256 pixels and the MR check on the 2x2 means of the slices, for
    # their cost; the MR checks by the distance to the nearest reference series (several
    # heads and effects; for MR-x2 also mr-superres-x2's own noise-free inputs), with the
    # mean intensity (contrast changes) and the residual correlation (kernel changes) as
    # fourth and fifth features.
    case "$distribution" in
      ct) scoring=(--crop 256 --slice-step 8 --min-slices 4) ;;
      ct-x2) scoring=(--slice-step 8 --min-slices 4) ;;
      mr) scoring=(--score nearest --downsample 2 --slice-step 8 --min-slices 6 --intensity on
                   --correlation on) ;;
      *) scoring=(--score nearest --slice-step 8 --min-slices 4 --intensity on
                  --correlation on) ;;
    esac
    time nice -n 15 "$build/models/enhance-domain" calibrate "$distribution" \
      --vae "$vae" --models "$root/models" --cache "$cache" "${scoring[@]}"
    rm -rf "$work"
    continue
  fi
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

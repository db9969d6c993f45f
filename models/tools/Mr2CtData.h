// SPDX-License-Identifier: GPL-3.0-or-later
//
// MR / CT pairs for the mr2ct model, built from one real T1-weighted head MR (ch2.nii.gz
// of the mricron-data package, 1 mm, with its brain-extracted version ch2bet.nii.gz) by
// segmentation: no CT of that head exists, so the CT is a pseudo-CT in HU derived from
// tissue classes of the MR itself:
//
//   outside the head (per-slice filled mask of the MR above 25% of the brain's 99th
//   percentile)                            air      -1000 HU
//   brain (ch2bet), dark (CSF)                        10 HU
//   brain, grey to white matter            40 HU to 28 HU, linear in the T1 intensity
//   rest of the head, dark in T1           bone      900 HU (also sinuses, eyes, CSF
//                                                    outside the brain mask)
//   rest of the head, bright in T1         fat       -80 HU
//   rest of the head, in between           soft tissue 45 HU
//
// then blurred by 0.5 px for partial volumes. The MR inputs are the real image with
// random acquisition effects: a smooth multiplicative bias field, a gamma change of
// contrast and Rician noise. Training uses axial slices outside a held-out block; the
// test set is that block (with margins never used in training), with fixed effects.
// Deterministic for a seed; thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "enhance/base/Volume.h"

namespace enhance::models {

struct Mr2CtPair {
  std::string label;
  Volume mr;  // T1-like intensities, [0, 1] by the source's maximum, with effects
  Volume ct;  // HU
};

struct MrEffects {
  double bias = 0.0;   // largest relative amplitude of the bias field
  double gamma = 1.0;  // intensity -> intensity^gamma
  double noise = 0.0;  // Rician sigma, fraction of the maximum
};

Volume ApplyMrEffects(const Volume& mr, const MrEffects& effects, uint64_t seed);

// The effects of one training slab, drawn from `rng`: bias up to 40%, gamma from 1/1.3 to
// 1.3 (log-uniform), Rician noise up to 4%.
MrEffects RandomTrainingEffects(std::mt19937_64& rng);

// The segmentation described above; `brain` is ch2bet on the same grid.
Volume PseudoCtFromT1(const Volume& t1, const Volume& brain);

std::vector<Mr2CtPair> Mr2CtTrainingSet(const std::filesystem::path& templates);
std::vector<Mr2CtPair> Mr2CtTestSet(const std::filesystem::path& templates);

// Baseline: a two-class pseudo-CT from thresholds of the MR alone. Inside the filled
// head mask (above `headLevel` of the 99.5th percentile), voxels darker than
// `darkLevel` become `darkHu` (bone), the others `softHu`; outside, -1000 HU.
Volume ThresholdPseudoCt(const Volume& mr, double headLevel, double darkLevel, double darkHu,
                         double softHu);

}  // namespace enhance::models

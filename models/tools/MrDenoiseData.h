// SPDX-License-Identifier: GPL-3.0-or-later
//
// Noisy / clean MR pairs from real T1-weighted head volumes (the mricron-data package):
// intensities are scaled to [0, 1] by the volume's maximum, then Rician noise is added
// (the magnitude of the image plus complex Gaussian noise of standard deviation sigma,
// a fraction of the maximum), as in magnitude MR images.
//
// Training uses axial slabs of ch2better.nii.gz outside a held-out block; testing uses
// that block and a second volume never used in training (inia19-t1-brain.nii.gz). The
// in-plane super-resolution pairs use the same split, and add to training a second human
// head (jhu189.nii.gz) in three orientations, with random changes of contrast and
// sharpness.
// Deterministic for a seed; thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "enhance/base/Volume.h"

namespace enhance::models {

// Where Debian's mricron-data installs its volumes.
constexpr const char* kMricronTemplates = "/usr/share/mricron/templates";

struct MrPair {
  std::string label;
  double sigma = 0;  // fraction of the maximum
  Volume clean;      // [0, 1]
  Volume noisy;
};

// Reads a NIfTI volume and scales it to [0, 1] by its maximum.
Volume LoadMrReference(const std::filesystem::path& path);

// The slices [first, first + count) of a volume.
Volume SliceRange(const Volume& volume, int64_t first, int64_t count);

Volume AddRicianNoise(const Volume& clean, double sigma, uint64_t seed);

// The engine's "percentile" input normalisation with low 0, high 99.5 (docs/models.md):
// the bounds of the voxels inside the head. Returns {low, high} in the volume's units.
std::pair<double, double> PercentileWindow(const Volume& volume, double highPercent);

std::vector<MrPair> MrDenoiseTrainingSet(const std::filesystem::path& templates);
std::vector<MrPair> MrDenoiseTestSet(const std::filesystem::path& templates);

// The volume resliced along its rows (axis 1) or columns (axis 2), superior at the top;
// axis 0 returns it unchanged. Positions are a plain stack along the new slice axis.
Volume Reslice(const Volume& volume, int axis);

// In-plane super-resolution pairs: `clean` is the high-resolution slab (cropped to even
// sizes), `noisy` its 2x2 means (an acquisition with pixels twice as large, same field
// of view and geometry conventions as the engine's upsampling); sigma is 0.
Volume Downsample2(const Volume& high);
// The random change of contrast (intensity^gamma, gamma 0.71-1.4) and of sharpness
// (Gaussian blur of 0.3-1.2 px, or none) of each of mr-superres-x2's training slabs (voxels
// in [0, 1]), drawn from `rng`.
void AugmentMrSuperRes(Volume& clean, std::mt19937_64& rng);
std::vector<MrPair> MrSuperResTrainingSet(const std::filesystem::path& templates);
std::vector<MrPair> MrSuperResTestSet(const std::filesystem::path& templates);

}  // namespace enhance::models

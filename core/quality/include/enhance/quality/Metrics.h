// SPDX-License-Identifier: GPL-3.0-or-later
//
// Image-quality figures between a reference volume and a test volume of the same
// geometry, in physical units: PSNR, SSIM (Gaussian window 11, sigma 1.5, K1 0.01,
// K2 0.03, as Wang et al. 2004; the 5-pixel border where the window does not fit is
// left out, as scikit-image does), MAE and RMSE. Optionally both volumes are clipped
// to a window (e.g. [-160, 240] HU for low-dose CT) whose width is then the data range,
// and the figures are restricted to a body mask (reference above a threshold, largest
// 6-connected component). Computed with LibTorch in double precision.
// Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "enhance/base/Volume.h"

namespace enhance {

struct MetricOptions {
  std::optional<double> windowLow;  // both set: clip to [low, high], data range = high - low
  std::optional<double> windowHigh;
  std::optional<double> dataRange;  // otherwise reference max - min
  bool bodyMask = false;
  std::optional<double> bodyThreshold;  // default: -500 for HU, else 10% of the 99th percentile
};

struct QualityFigures {
  double psnr = 0;  // dB; infinite when the volumes are identical
  double ssim = 0;
  double mae = 0;  // physical units
  double rmse = 0;
  int64_t voxels = 0;  // voxels that entered MAE, RMSE and PSNR
};

struct QualityReport {
  QualityFigures overall;
  std::vector<QualityFigures> slices;
  double dataRange = 0;
};

// Throws Error(kBadInput) when the volumes differ in size or geometry (positions more
// than 1% of a pixel apart), naming what differs.
QualityReport CompareVolumes(const Volume& reference, const Volume& test,
                             const MetricOptions& options);

// Reference above the threshold, largest 6-connected component. Exposed for tests.
std::vector<uint8_t> BodyMask(const Volume& reference, double threshold);

// A tissue class by thresholds in physical units: the voxels above `above` and below
// `below` (at least one given), e.g. bone above 250 HU, air below -400 HU.
struct TissueClass {
  std::string name;
  std::optional<double> above;
  std::optional<double> below;
};

struct ClassOverlap {
  std::string name;
  int64_t reference = 0;  // voxels of the class in the reference
  int64_t test = 0;       // in the test volume
  int64_t both = 0;       // in both
  // 2 |R n T| / (|R| + |T|) and |R n T| / |R u T|; NaN when the class is in neither.
  double dice = 0;
  double iou = 0;
};

// Dice and IoU of each class between the reference and the test volume (same geometry,
// else Error(kBadInput) as CompareVolumes), on the values as stored (not clipped to the
// window), inside the body mask when options.bodyMask, else over every voxel. The usual
// check of a synthetic CT's bone. Throws Error(kBadInput) for a class without threshold.
std::vector<ClassOverlap> CompareClasses(const Volume& reference, const Volume& test,
                                         const std::vector<TissueClass>& classes,
                                         const MetricOptions& options);

// Spearman's rank correlation between two volumes of the same geometry (else
// Error(kBadInput) as CompareVolumes) over the voxels where `mask` is non-zero (every
// voxel when it is empty; else one entry per voxel): the Pearson correlation of their
// ranks, tied values sharing their mean rank. NaN with fewer than two voxels or when
// either volume is constant there. For example how well an uncertainty map ranks the
// voxels by their actual error.
double SpearmanCorrelation(const Volume& a, const Volume& b, const std::vector<uint8_t>& mask);

// The area under the ROC curve of a score that should be higher for `positives` than for
// `negatives`: the probability that a positive drawn at random scores above a negative
// drawn at random, ties counting one half (the Mann-Whitney U statistic over the number of
// pairs). 1: every positive above every negative; 0.5: no better than chance. NaN when
// either list is empty or holds a NaN. For example how well a domain check's score tells
// out-of-distribution series (positives) from in-distribution ones.
double AreaUnderRoc(const std::vector<double>& positives, const std::vector<double>& negatives);

}  // namespace enhance
